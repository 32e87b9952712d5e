// Training's BatchNorm2d (batch statistics), 2x2 max pooling and ReLU over a
// channels-last activation as one autograd function. libtorch runs them as five passes
// over the full-resolution tensor forward (two for the statistics, the normalisation's
// read and write, the pooling's read) and five backward (ReLU's, the pooling's zero fill
// and scatter, BatchNorm's two); here the forward reads it twice (statistics; normalise,
// pool and activate, writing only the pooled quarter) and the backward twice (BatchNorm's
// sums at each window's winner, recomputed from the input; the input gradient, written
// once). Only the input and the per-channel constants are kept for the backward.
//
// Arithmetic in float32 for both float32 and bf16 activations; the result is rounded to
// the activation's kind once. Max pooling's choice among equal values follows torch's
// (the first in the window), and ReLU keeps NaN, so a diverged network's NaN reaches
// the loss.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "model/fast/batch_norm_args.h"
#include "model/fast/bn_batch_stats.h"
#include "model/fast/cpu_kernel.h"
#include "shim_error.h"
#include "shim_openmp.h"

using flarecast_shim::message;

namespace {

using flarecast_kernel::load;
using flarecast_kernel::store;

// One window's four inputs normalised (x * scale + shift): their maximum, and which of
// them max pooling takes (0..3, row-major, as a float so the channel loops vectorise) in
// torch's order, where a later value wins only if greater. NaN needs no case of its own:
// one NaN in a channel makes its batch mean, so every value of the channel, NaN.
FC_INLINE float winner(float a0, float a1, float a2, float a3, float s, float t, float& max) {
  const float v0 = a0 * s + t, v1 = a1 * s + t, v2 = a2 * s + t, v3 = a3 * s + t;
  float m = v0, k = 0.0f;
  k = v1 > m ? 1.0f : k;
  m = v1 > m ? v1 : m;
  k = v2 > m ? 2.0f : k;
  m = v2 > m ? v2 : m;
  k = v3 > m ? 3.0f : k;
  m = v3 > m ? v3 : m;
  max = m;
  return k;
}

// One pooled row: the window's maximum through ReLU. The backward recomputes
// which value won from the same inputs and constants, so nothing else is stored.
template <typename T>
FC_INLINE void pool_row_impl(const T* top, const T* bottom, int64_t OW, int64_t C,
                             const float* scale, const float* shift, T* out) {
  for (int64_t ow = 0; ow < OW; ++ow) {
    const T* x0 = top + 2 * ow * C;
    const T* x1 = x0 + C;
    const T* x2 = bottom + 2 * ow * C;
    const T* x3 = x2 + C;
    T* o = out + ow * C;
    #pragma GCC ivdep
    for (int64_t c = 0; c < C; ++c) {
      float m;
      winner(load(x0, c), load(x1, c), load(x2, c), load(x3, c), scale[c], shift[c], m);
      // ReLU that keeps NaN, as torch's.
      store(o, c, m < 0.0f ? 0.0f : m);
    }
  }
}

// One pooled row's share of BatchNorm's backward sums: sum(dy) and sum(dy * (x - mean))
// over the windows' winners ReLU passed, dy the pooled gradient.
template <typename T>
FC_INLINE void grad_sums_row_impl(const T* top, const T* bottom, const T* grad, int64_t OW,
                                  int64_t C, const float* scale, const float* shift,
                                  const float* mean, float* a, float* b) {
  for (int64_t ow = 0; ow < OW; ++ow) {
    const T* x0 = top + 2 * ow * C;
    const T* x1 = x0 + C;
    const T* x2 = bottom + 2 * ow * C;
    const T* x3 = x2 + C;
    const T* g = grad + ow * C;
    #pragma GCC ivdep
    for (int64_t c = 0; c < C; ++c) {
      const float a0 = load(x0, c), a1 = load(x1, c), a2 = load(x2, c), a3 = load(x3, c);
      float m;
      const float k = winner(a0, a1, a2, a3, scale[c], shift[c], m);
      const float gv = load(g, c);
      const float dy = m > 0.0f ? gv : 0.0f;
      float x = a0;
      x = k == 1.0f ? a1 : x;
      x = k == 2.0f ? a2 : x;
      x = k == 3.0f ? a3 : x;
      a[c] += dy;
      b[c] += dy * (x - mean[c]);
    }
  }
}

// One pooled row's input gradient: dx = coef * dy + slope * (x - mean) + offset at the
// window's four positions (dy zero but at the winner ReLU passed).
template <typename T>
FC_INLINE void grad_input_row_impl(const T* top, const T* bottom, const T* grad, int64_t OW,
                                   int64_t C, const float* scale, const float* shift,
                                   const float* mean, const float* coef, const float* slope,
                                   const float* offset, T* dtop, T* dbottom) {
  for (int64_t ow = 0; ow < OW; ++ow) {
    const int64_t base = 2 * ow * C;
    const T* __restrict x0 = top + base;
    const T* __restrict x1 = x0 + C;
    const T* __restrict x2 = bottom + base;
    const T* __restrict x3 = x2 + C;
    T* __restrict d0 = dtop + base;
    T* __restrict d1 = d0 + C;
    T* __restrict d2 = dbottom + base;
    T* __restrict d3 = d2 + C;
    const T* __restrict g = grad + ow * C;
    #pragma GCC ivdep
    for (int64_t c = 0; c < C; ++c) {
      const float a0 = load(x0, c), a1 = load(x1, c);
      const float a2 = load(x2, c), a3 = load(x3, c);
      float max;
      const float k = winner(a0, a1, a2, a3, scale[c], shift[c], max);
      // Select, then multiply: a multiply under the condition does not vectorise.
      const float gv = load(g, c);
      const float dy = (max > 0.0f ? gv : 0.0f) * coef[c];
      const float m = mean[c], sl = slope[c], of = offset[c];
      const float e0 = k == 0.0f ? dy : 0.0f;
      const float e1 = k == 1.0f ? dy : 0.0f;
      const float e2 = k == 2.0f ? dy : 0.0f;
      const float e3 = k == 3.0f ? dy : 0.0f;
      store(d0, c, sl * (a0 - m) + of + e0);
      store(d1, c, sl * (a1 - m) + of + e1);
      store(d2, c, sl * (a2 - m) + of + e2);
      store(d3, c, sl * (a3 - m) + of + e3);
    }
  }
}

// Positions no window covers (the last row or column of an odd side): dy is zero.
template <typename T>
FC_INLINE void grad_uncovered_impl(const T* x, int64_t n, int64_t C, const float* mean,
                                   const float* slope, const float* offset, T* dx) {
  for (int64_t r = 0; r < n; ++r) {
    #pragma GCC ivdep
    for (int64_t c = 0; c < C; ++c) {
      store(dx + r * C, c, slope[c] * (load(x + r * C, c) - mean[c]) + offset[c]);
    }
  }
}

// The clones: one overload per element type, each inlining its kernel.
#define FC_KERNELS(T)                                                                        \
  FC_CLONES void pool_row(const T* top, const T* bottom, int64_t OW, int64_t C,              \
                          const float* scale, const float* shift, T* out) {                  \
    pool_row_impl(top, bottom, OW, C, scale, shift, out);                                    \
  }                                                                                          \
  FC_CLONES void grad_sums_row(const T* top, const T* bottom, const T* grad, int64_t OW,     \
                               int64_t C, const float* scale, const float* shift,            \
                               const float* mean, float* a, float* b) {                      \
    grad_sums_row_impl(top, bottom, grad, OW, C, scale, shift, mean, a, b);                  \
  }                                                                                          \
  FC_CLONES void grad_input_row(const T* top, const T* bottom, const T* grad, int64_t OW,    \
                                int64_t C, const float* scale, const float* shift,           \
                                const float* mean, const float* coef, const float* slope,    \
                                const float* offset, T* dtop, T* dbottom) {                  \
    grad_input_row_impl(top, bottom, grad, OW, C, scale, shift, mean, coef, slope, offset,   \
                        dtop, dbottom);                                                      \
  }                                                                                          \
  FC_CLONES void grad_uncovered(const T* x, int64_t n, int64_t C, const float* mean,         \
                                const float* slope, const float* offset, T* dx) {            \
    grad_uncovered_impl(x, n, C, mean, slope, offset, dx);                                   \
  }

FC_KERNELS(float)
FC_KERNELS(c10::BFloat16)

struct Shape {
  int64_t N, C, H, W, OH, OW;
  explicit Shape(const at::Tensor& x)
      : N(x.size(0)), C(x.size(1)), H(x.size(2)), W(x.size(3)), OH(x.size(2) / 2),
        OW(x.size(3) / 2) {}
  int64_t positions() const { return N * H * W; }
};

// Forward: batch statistics (updating the running ones as BatchNorm2d does), then the
// pooled, activated output.
template <typename T>
std::pair<at::Tensor, Stats> forward_kernel(const at::Tensor& x, const at::Tensor& gamma,
                                            const at::Tensor& beta, at::Tensor& running_mean,
                                            at::Tensor& running_var, double momentum,
                                            double eps) {
  const Shape s(x);
  const T* xp = x.const_data_ptr<T>();
  const int64_t C = s.C;
  Stats st = batch_stats<T>(x, gamma, beta, running_mean, running_var, momentum, eps);
  const float* sc = st.scale.const_data_ptr<float>();
  const float* sh = st.shift.const_data_ptr<float>();
  at::Tensor out = at::empty({s.N, C, s.OH, s.OW},
                             x.options().memory_format(at::MemoryFormat::ChannelsLast));
  T* op = out.data_ptr<T>();
  at::parallel_for(0, s.N * s.OH, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / s.OH, oh = r % s.OH;
      const T* top = xp + ((n * s.H + 2 * oh) * s.W) * C;
      pool_row(top, top + s.W * C, s.OW, C, sc, sh, op + r * s.OW * C);
    }
  });
  return {out, st};
}

// Backward: {dx, dgamma, dbeta} from the pooled output's gradient.
template <typename T>
std::vector<at::Tensor> backward_kernel(const at::Tensor& x, const at::Tensor& gamma,
                                        const at::Tensor& grad_in, const Stats& st) {
  const Shape s(x);
  const int64_t C = s.C, M = s.positions();
  const at::Tensor grad = grad_in.to(x.scalar_type()).contiguous(at::MemoryFormat::ChannelsLast);
  const T* xp = x.const_data_ptr<T>();
  const T* gp = grad.const_data_ptr<T>();
  const float* mp = st.mean.const_data_ptr<float>();
  const float* sc = st.scale.const_data_ptr<float>();
  const float* sh = st.shift.const_data_ptr<float>();
  auto [sum_dy, sum_dy_xmu] =
      reduce_channels(s.N * s.OH, C, 1, [&](int64_t b, int64_t e, float* a, float* bb) {
        for (int64_t r = b; r < e; ++r) {
          const int64_t n = r / s.OH, oh = r % s.OH;
          const T* top = xp + ((n * s.H + 2 * oh) * s.W) * C;
          grad_sums_row(top, top + s.W * C, gp + r * s.OW * C, s.OW, C, sc, sh, mp, a, bb);
        }
      });
  const BackwardCoefs k(sum_dy, sum_dy_xmu, gamma, st, M);
  at::Tensor dx = at::empty_like(x, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  T* dp = dx.data_ptr<T>();
  at::parallel_for(0, s.N * s.OH, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / s.OH, oh = r % s.OH;
      const int64_t base = ((n * s.H + 2 * oh) * s.W) * C;
      grad_input_row(xp + base, xp + base + s.W * C, gp + r * s.OW * C, s.OW, C, sc, sh, mp,
                     k.coef.data(), k.slope.data(), k.offset.data(), dp + base, dp + base + s.W * C);
      if (s.W % 2 == 1) {
        for (int64_t h = 0; h < 2; ++h) {
          const int64_t last = base + (h * s.W + s.W - 1) * C;
          grad_uncovered(xp + last, 1, C, mp, k.slope.data(), k.offset.data(), dp + last);
        }
      }
    }
  });
  if (s.H % 2 == 1) {
    at::parallel_for(0, s.N, 1, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) {
        const int64_t last = ((n * s.H + s.H - 1) * s.W) * C;
        grad_uncovered(xp + last, s.W, C, mp, k.slope.data(), k.offset.data(), dp + last);
      }
    });
  }
  return {dx, k.dgamma, k.dbeta};
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct BnPoolRelu : public torch::autograd::Function<BnPoolRelu> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& gamma,
                            const at::Tensor& beta, at::Tensor running_mean,
                            at::Tensor running_var, double momentum, double eps) {
    auto [out, st] =
        x.scalar_type() == at::kFloat
            ? forward_kernel<float>(x, gamma, beta, running_mean, running_var, momentum, eps)
            : forward_kernel<c10::BFloat16>(x, gamma, beta, running_mean, running_var,
                                            momentum, eps);
    ctx->save_for_backward({x, gamma});
    ctx->saved_data["mean"] = st.mean;
    ctx->saved_data["invstd"] = st.invstd;
    ctx->saved_data["scale"] = st.scale;
    ctx->saved_data["shift"] = st.shift;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& gamma = saved[1];
    const Stats st{ctx->saved_data["mean"].toTensor(), ctx->saved_data["invstd"].toTensor(),
                   ctx->saved_data["scale"].toTensor(), ctx->saved_data["shift"].toTensor()};
    auto r = x.scalar_type() == at::kFloat
                 ? backward_kernel<float>(x, gamma, grads[0], st)
                 : backward_kernel<c10::BFloat16>(x, gamma, grads[0], st);
    return {r[0], r[1], r[2], at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

void check(const at::Tensor& x) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 4, "bn_pool_relu: a 4-d CPU tensor");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16,
              "bn_pool_relu: float32 or bf16 activations");
  TORCH_CHECK(x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "bn_pool_relu: channels-last activations");
  TORCH_CHECK(x.size(2) >= 2 && x.size(3) >= 2, "bn_pool_relu: sides of at least 2");
}

}  // namespace

extern "C" {

// relu(max_pool2d(batch_norm(x, training), 2)) with autograd; `running_mean` and
// `running_var` are updated in place. Returns a new tensor, or null with *err set.
void* fc_bn_pool_relu(const void* x, const FcBatchNorm* bn, char** err) {
  try {
    const auto& xt = *static_cast<const at::Tensor*>(x);
    check(xt);
    const flarecast_shim::BatchNormTensors t(*bn, xt.size(1), "bn_pool_relu");
    return new at::Tensor(BnPoolRelu::apply(xt, t.gamma, t.beta, t.running_mean, t.running_var,
                                            bn->momentum, bn->eps));
  } catch (const std::exception& e) {
    *err = message(e);
  } catch (...) {
    *err = strdup("unknown C++ exception");
  }
  return nullptr;
}

}  // extern "C"
