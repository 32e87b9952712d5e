// What training's fused BatchNorm2d functions (bn_pool_relu.cpp, bn_act.cpp) share:
// a channels-last activation's batch statistics (the running ones updated as
// BatchNorm2d updates them), and the per-channel constants of BatchNorm's backward from
// the two gradient sums. Arithmetic in float32 per position, sums flushed into double.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "model/fast/cpu_kernel.h"

namespace {

// Sums of (x - shift) and its square over `rows` positions of C channels.
template <typename T>
FC_INLINE void sum_rows_impl(const T* x, int64_t rows, int64_t C, const float* shift, float* s1,
                             float* s2) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * C;
    #pragma GCC ivdep
    for (int64_t c = 0; c < C; ++c) {
      float d = flarecast_kernel::load(row, c) - shift[c];
      s1[c] += d;
      s2[c] += d * d;
    }
  }
}

FC_CLONES void sum_rows(const float* x, int64_t rows, int64_t C, const float* shift, float* s1,
                        float* s2) {
  sum_rows_impl(x, rows, C, shift, s1, s2);
}
FC_CLONES void sum_rows(const c10::BFloat16* x, int64_t rows, int64_t C, const float* shift,
                        float* s1, float* s2) {
  sum_rows_impl(x, rows, C, shift, s1, s2);
}

// Per-thread partial sums over [0, items): `body(begin, end, s1, s2)` adds its items into
// float sums that are flushed into double every `flush` items, so a channel's total
// keeps double's precision over a whole batch. Returns the two double totals.
template <typename F>
std::pair<std::vector<double>, std::vector<double>> reduce_channels(int64_t items, int64_t C,
                                                                     int64_t flush, F body) {
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), items));
  std::vector<double> t1(threads * C, 0.0), t2(threads * C, 0.0);
  at::parallel_for(0, threads, 1, [&](int64_t t0, int64_t tend) {
    std::vector<float> s1(C), s2(C);
    for (int64_t t = t0; t < tend; ++t) {
      const int64_t begin = items * t / threads, end = items * (t + 1) / threads;
      for (int64_t i = begin; i < end; i += flush) {
        std::fill(s1.begin(), s1.end(), 0.0f);
        std::fill(s2.begin(), s2.end(), 0.0f);
        body(i, std::min(end, i + flush), s1.data(), s2.data());
        for (int64_t c = 0; c < C; ++c) {
          t1[t * C + c] += s1[c];
          t2[t * C + c] += s2[c];
        }
      }
    }
  });
  std::vector<double> r1(C, 0.0), r2(C, 0.0);
  for (int64_t t = 0; t < threads; ++t) {
    for (int64_t c = 0; c < C; ++c) {
      r1[c] += t1[t * C + c];
      r2[c] += t2[t * C + c];
    }
  }
  return {r1, r2};
}

// The per-channel constants of one batch: its mean and 1/sqrt(var + eps), and the
// normalisation as x * scale + shift.
struct Stats {
  at::Tensor mean, invstd, scale, shift;
};

// The batch statistics of `x` (channels-last, M = N*H*W positions of C channels), the
// running statistics updated in place as BatchNorm2d updates them (momentum, the
// unbiased variance).
template <typename T>
Stats batch_stats(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
                  at::Tensor& running_mean, at::Tensor& running_var, double momentum,
                  double eps) {
  const int64_t C = x.size(1), M = x.numel() / C;
  const T* xp = x.const_data_ptr<T>();
  // Shifting by the first position's values keeps the sums of squares free of
  // cancellation where a channel's mean is large against its spread.
  std::vector<float> first(C);
  for (int64_t c = 0; c < C; ++c) first[c] = flarecast_kernel::load(xp, c);
  auto [s1, s2] = reduce_channels(M, C, 64, [&](int64_t b, int64_t e, float* a1, float* a2) {
    sum_rows(xp + b * C, e - b, C, first.data(), a1, a2);
  });
  auto opts = gamma.options();
  Stats st{at::empty({C}, opts), at::empty({C}, opts), at::empty({C}, opts),
           at::empty({C}, opts)};
  const float* g = gamma.const_data_ptr<float>();
  const float* bt = beta.const_data_ptr<float>();
  float* mp = st.mean.data_ptr<float>();
  float* ip = st.invstd.data_ptr<float>();
  float* sc = st.scale.data_ptr<float>();
  float* sh = st.shift.data_ptr<float>();
  float* rm = running_mean.data_ptr<float>();
  float* rv = running_var.data_ptr<float>();
  for (int64_t c = 0; c < C; ++c) {
    const double d = s1[c] / double(M);
    const double var = std::max(0.0, s2[c] / double(M) - d * d);
    const double mu = double(first[c]) + d;
    mp[c] = float(mu);
    ip[c] = float(1.0 / std::sqrt(var + eps));
    sc[c] = g[c] * ip[c];
    sh[c] = bt[c] - mp[c] * sc[c];
    const double unbiased = M > 1 ? var * double(M) / double(M - 1) : var;
    rm[c] = float(momentum * mu + (1.0 - momentum) * rm[c]);
    rv[c] = float(momentum * unbiased + (1.0 - momentum) * rv[c]);
  }
  return st;
}

// BatchNorm's backward per channel, from sum(dy) and sum(dy * (x - mean)) over the M
// positions (dy the gradient at BatchNorm's output): gamma's and beta's gradients, and
// dx = coef * dy + slope * (x - mean) + offset.
struct BackwardCoefs {
  at::Tensor dgamma, dbeta;
  std::vector<float> coef, slope, offset;

  BackwardCoefs(const std::vector<double>& sum_dy, const std::vector<double>& sum_dy_xmu,
                const at::Tensor& gamma, const Stats& st, int64_t M)
      : dgamma(at::empty({gamma.numel()}, gamma.options())),
        dbeta(at::empty({gamma.numel()}, gamma.options())),
        coef(gamma.numel()),
        slope(gamma.numel()),
        offset(gamma.numel()) {
    const float* ip = st.invstd.const_data_ptr<float>();
    const float* gm = gamma.const_data_ptr<float>();
    float* dg = dgamma.data_ptr<float>();
    float* db = dbeta.data_ptr<float>();
    for (int64_t c = 0; c < gamma.numel(); ++c) {
      // dgamma = sum(dy * xhat), dbeta = sum(dy);
      // dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)).
      const double inv = ip[c];
      const double dyxhat = sum_dy_xmu[c] * inv;
      dg[c] = float(dyxhat);
      db[c] = float(sum_dy[c]);
      const double k = double(gm[c]) * inv;
      coef[c] = float(k);
      slope[c] = float(-k * inv * dyxhat / double(M));
      offset[c] = float(-k * sum_dy[c] / double(M));
    }
  }
};

}  // namespace
