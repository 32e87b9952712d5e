// The paper's first block, the 3x3 convolution (padding 1) of the one-channel image,
// BatchNorm, 2x2 max pooling and ReLU, computed without its full-resolution activation.
// oneDNN runs a convolution of one input channel far below its speed on the others (nine
// multiply-adds per output value, so the 64-channel output it writes, and BatchNorm and
// pooling then read, is the cost); here each pooled value's four convolution outputs are
// summed in registers from the 4x4 input patch under its window, and only the pooled
// output is written.
//
// - Inference (`fc_first_block`): BatchNorm folded into the weight and bias by the caller.
// - Training (`fc_first_block_train`, an autograd function, batch statistics): the
//   convolution is linear in its 3x3 input patches, so the batch's mean and variance of
//   every channel, and the weight's gradient, follow from the patches' 9x9 covariance and
//   the gradient's sums at the windows' winners; the backward pass reads the input and
//   the pooled gradient only. The input takes no gradient (it is the image).
//
// Arithmetic in float32 for float32 and bf16 inputs (sums over the batch in double), the
// bias first and then the taps in row-major order; the output is rounded to the input's
// kind once. Max pooling and ReLU keep NaN, as torch's do.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "model/fast/batch_norm_args.h"
#include "model/fast/cpu_kernel.h"
#include "shim_error.h"
#include "shim_openmp.h"

using flarecast_shim::message;

namespace {

using flarecast_kernel::load;
using flarecast_kernel::store;

// Output channels summed together: four windows' positions of 16 channels stay in
// registers (eight AVX2 vectors) while each tap's 16 weights are loaded once.
constexpr int64_t kChannels = 16;
constexpr int kTaps = 9;

// A window's 4x4 input patch (`rows` as below, the window at column 2 * ow).
FC_INLINE void patch_at(const float* rows, int64_t stride, int64_t ow, float (&p)[4][4]) {
  for (int r = 0; r < 4; ++r) {
    for (int k = 0; k < 4; ++k) p[r][k] = rows[r * stride + 2 * ow + k];
  }
}

// The convolution at a window's four positions (row-major) for channels c0..c0+16:
// bias, then the taps in row-major order. Forward and backward both sum here, so the
// backward finds the forward's winners.
FC_INLINE void window_values(const float (&p)[4][4], const float* w, const float* bias,
                             int64_t C, int64_t c0, float (&a)[4][kChannels]) {
  for (int j = 0; j < kChannels; ++j) a[0][j] = a[1][j] = a[2][j] = a[3][j] = bias[c0 + j];
  for (int ky = 0; ky < 3; ++ky) {
    for (int kx = 0; kx < 3; ++kx) {
      const float* wk = w + (ky * 3 + kx) * C + c0;
      const float v0 = p[ky][kx], v1 = p[ky][kx + 1];
      const float v2 = p[ky + 1][kx], v3 = p[ky + 1][kx + 1];
      for (int j = 0; j < kChannels; ++j) {
        a[0][j] += v0 * wk[j];
        a[1][j] += v1 * wk[j];
        a[2][j] += v2 * wk[j];
        a[3][j] += v3 * wk[j];
      }
    }
  }
}

// One pooled row. `rows` holds the four input rows under it (float32, padded by one
// column each side, `stride` apart), `w` the taps as [9][C], `bias` [C].
template <typename T>
FC_INLINE void pooled_row_impl(const float* rows, int64_t stride, int64_t OW, int64_t C,
                               const float* w, const float* bias, T* out) {
  for (int64_t ow = 0; ow < OW; ++ow) {
    float p[4][4];
    patch_at(rows, stride, ow, p);
    T* o = out + ow * C;
    for (int64_t c0 = 0; c0 < C; c0 += kChannels) {
      float a[4][kChannels];
      window_values(p, w, bias, C, c0, a);
      for (int j = 0; j < kChannels; ++j) {
        // torch's max pooling: a later value wins if greater, and NaN wins.
        float m = a[0][j];
        m = (a[1][j] > m || a[1][j] != a[1][j]) ? a[1][j] : m;
        m = (a[2][j] > m || a[2][j] != a[2][j]) ? a[2][j] : m;
        m = (a[3][j] > m || a[3][j] != a[3][j]) ? a[3][j] : m;
        store(o, c0 + j, m < 0.0f ? 0.0f : m);
      }
    }
  }
}

// One pooled row's share of the backward sums, `grad` the pooled gradient: for each
// channel, sum(dz) and, per tap, sum(dz * patch value at the winner), dz the gradient
// where ReLU passed the window's maximum (torch's winner: the first of equal values).
template <typename T>
FC_INLINE void grad_row_impl(const float* rows, int64_t stride, int64_t OW, int64_t C,
                             const float* w, const float* bias, const T* grad, float* sum_dz,
                             float* sum_dz_patch /* [9][C] */) {
  for (int64_t ow = 0; ow < OW; ++ow) {
    float p[4][4];
    patch_at(rows, stride, ow, p);
    const T* g = grad + ow * C;
    for (int64_t c0 = 0; c0 < C; c0 += kChannels) {
      float a[4][kChannels];
      window_values(p, w, bias, C, c0, a);
      float dz[kChannels], k[kChannels];
      for (int j = 0; j < kChannels; ++j) {
        float m = a[0][j], kk = 0.0f;
        kk = a[1][j] > m ? 1.0f : kk;
        m = a[1][j] > m ? a[1][j] : m;
        kk = a[2][j] > m ? 2.0f : kk;
        m = a[2][j] > m ? a[2][j] : m;
        kk = a[3][j] > m ? 3.0f : kk;
        m = a[3][j] > m ? a[3][j] : m;
        const float gv = load(g, c0 + j);
        dz[j] = m > 0.0f ? gv : 0.0f;
        k[j] = kk;
        sum_dz[c0 + j] += dz[j];
      }
      for (int ky = 0; ky < 3; ++ky) {
        for (int kx = 0; kx < 3; ++kx) {
          float* e = sum_dz_patch + (ky * 3 + kx) * C + c0;
          const float v0 = p[ky][kx], v1 = p[ky][kx + 1];
          const float v2 = p[ky + 1][kx], v3 = p[ky + 1][kx + 1];
          for (int j = 0; j < kChannels; ++j) {
            float v = v0;
            v = k[j] == 1.0f ? v1 : v;
            v = k[j] == 2.0f ? v2 : v;
            v = k[j] == 3.0f ? v3 : v;
            e[j] += dz[j] * v;
          }
        }
      }
    }
  }
}

// One output row's share of the patches' sums: sum(q_j * q_k) for the 45 tap pairs
// j <= k and sum(q_k), q the patch values of `rows` (three rows, `stride` apart) at the
// row's W positions. Eight lanes each, so the loops vectorise without reordering a sum.
FC_INLINE void gram_row_impl(const float* rows, int64_t stride, int64_t W, float* pairs,
                             float* sums) {
  const float* tap[kTaps];
  for (int t = 0; t < kTaps; ++t) tap[t] = rows + (t / 3) * stride + t % 3;
  int pair = 0;
  for (int j = 0; j < kTaps; ++j) {
    for (int k = j; k < kTaps; ++k, ++pair) {
      float lane[8] = {};
      int64_t x = 0;
      for (; x + 8 <= W; x += 8) {
        for (int l = 0; l < 8; ++l) lane[l] += tap[j][x + l] * tap[k][x + l];
      }
      float total = 0.0f;
      for (; x < W; ++x) total += tap[j][x] * tap[k][x];
      for (int l = 0; l < 8; ++l) total += lane[l];
      pairs[pair] += total;
    }
    float total = 0.0f;
    for (int64_t x = 0; x < W; ++x) total += tap[j][x];
    sums[j] += total;
  }
}

#define FC_KERNELS(T)                                                                       \
  FC_CLONES void pooled_row(const float* rows, int64_t stride, int64_t OW, int64_t C,       \
                            const float* w, const float* bias, T* out) {                   \
    pooled_row_impl(rows, stride, OW, C, w, bias, out);                                     \
  }                                                                                         \
  FC_CLONES void grad_row(const float* rows, int64_t stride, int64_t OW, int64_t C,         \
                          const float* w, const float* bias, const T* grad, float* sum_dz,  \
                          float* sum_dz_patch) {                                            \
    grad_row_impl(rows, stride, OW, C, w, bias, grad, sum_dz, sum_dz_patch);                \
  }
FC_KERNELS(float)
FC_KERNELS(c10::BFloat16)
#undef FC_KERNELS

FC_CLONES void gram_row(const float* rows, int64_t stride, int64_t W, float* pairs,
                        float* sums) {
  gram_row_impl(rows, stride, W, pairs, sums);
}

constexpr int kPairs = kTaps * (kTaps + 1) / 2;

// Input rows top..top+count of image n as float32 minus `shift`, each padded by one column
// each side; rows outside the image, and the padding, are the convolution's zero padding
// (so -shift).
template <typename T>
void fill_rows(const T* x, int64_t n, int64_t top, int64_t count, int64_t H, int64_t W,
               float shift, float* dst) {
  const int64_t stride = W + 2;
  for (int64_t i = 0; i < count; ++i) {
    float* row = dst + i * stride;
    const int64_t ih = top + i;
    if (ih < 0 || ih >= H) {
      std::fill(row, row + stride, -shift);
      continue;
    }
    const T* src = x + (n * H + ih) * W;
    row[0] = -shift;
    for (int64_t iw = 0; iw < W; ++iw) row[iw + 1] = load(src, iw) - shift;
    row[W + 1] = -shift;
  }
}

struct Shape {
  int64_t N, C, H, W, OH, OW;
  Shape(const at::Tensor& x, const at::Tensor& weight)
      : N(x.size(0)), C(weight.size(0)), H(x.size(2)), W(x.size(3)), OH(x.size(2) / 2),
        OW(x.size(3) / 2) {}
  int64_t positions() const { return N * H * W; }
  int64_t stride() const { return W + 2; }
};

// The pooled output: the convolution of the input minus `shift` (padding included) with
// taps `w` [9][C] and `bias` [C], ReLU and max pooling.
template <typename T>
at::Tensor pooled_output(const at::Tensor& x, const Shape& s, float shift, const float* w,
                         const float* bias) {
  at::Tensor out =
      at::empty({s.N, s.C, s.OH, s.OW}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const T* xp = x.const_data_ptr<T>();
  T* op = out.data_ptr<T>();
  at::parallel_for(0, s.N * s.OH, 1, [&](int64_t r0, int64_t r1) {
    std::vector<float> rows(4 * s.stride());
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / s.OH, oh = r % s.OH;
      fill_rows(xp, n, 2 * oh - 1, 4, s.H, s.W, shift, rows.data());
      pooled_row(rows.data(), s.stride(), s.OW, s.C, w, bias, op + r * s.OW * s.C);
    }
  });
  return out;
}

// A weight [C, 1, 3, 3] as float32 taps [9][C] (each tap's channels contiguous, as the
// output's are).
at::Tensor taps_of(const at::Tensor& weight) {
  return weight.to(at::kFloat).reshape({weight.size(0), kTaps}).t().contiguous();
}

template <typename T>
at::Tensor first_block(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  const Shape s(x, weight);
  const at::Tensor taps = taps_of(weight);
  const at::Tensor b = bias.to(at::kFloat).contiguous();
  return pooled_output<T>(x, s, 0.0f, taps.const_data_ptr<float>(), b.const_data_ptr<float>());
}

// Per-thread double sums over `items`, each thread's float sums flushed every item.
template <typename F>
std::vector<double> reduce(int64_t items, int64_t width, F body) {
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), items));
  std::vector<double> partial(threads * width, 0.0);
  at::parallel_for(0, threads, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> local(width);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t begin = items * t / threads, end = items * (t + 1) / threads;
      for (int64_t i = begin; i < end; ++i) {
        std::fill(local.begin(), local.end(), 0.0f);
        body(i, local.data());
        for (int64_t k = 0; k < width; ++k) partial[t * width + k] += local[k];
      }
    }
  });
  std::vector<double> total(width, 0.0);
  for (int64_t t = 0; t < threads; ++t) {
    for (int64_t k = 0; k < width; ++k) total[k] += partial[t * width + k];
  }
  return total;
}

// What the training forward keeps for the backward (x, the weight and gamma aside).
struct Saved {
  double shift;            // the input's batch mean, subtracted from every patch value
  at::Tensor taps;         // [9][C] float: the weight times gamma * invstd
  at::Tensor bias;         // [C] float: beta - u_mean * gamma * invstd
  at::Tensor u_mean;       // [C] double: the mean of the weight's response to the patches
  at::Tensor invstd;       // [C] double
  at::Tensor covariance;   // [9][9] double: the patches' covariance times the positions
  at::Tensor patch_sums;   // [9] double: the shifted patches' sums
};

template <typename T>
std::pair<at::Tensor, Saved> train_forward(const at::Tensor& x, const at::Tensor& weight,
                                           const at::Tensor& bias, const at::Tensor& gamma,
                                           const at::Tensor& beta, at::Tensor& running_mean,
                                           at::Tensor& running_var, double momentum,
                                           double eps) {
  const Shape s(x, weight);
  const int64_t C = s.C, M = s.positions();
  const T* xp = x.const_data_ptr<T>();
  // The input's mean, so the patches' sums of products are free of cancellation.
  const std::vector<double> total = reduce(s.N * s.H, 1, [&](int64_t r, float* acc) {
    const T* row = xp + r * s.W;
    for (int64_t i = 0; i < s.W; ++i) acc[0] += load(row, i);
  });
  const double shift = total[0] / double(M);
  const float fshift = float(shift);
  // Sums over every output position of the shifted patches and their products.
  const std::vector<double> sums =
      reduce(s.N * s.H, kPairs + kTaps, [&](int64_t r, float* acc) {
        thread_local std::vector<float> rows;
        rows.resize(3 * s.stride());
        const int64_t n = r / s.H, h = r % s.H;
        fill_rows(xp, n, h - 1, 3, s.H, s.W, fshift, rows.data());
        gram_row(rows.data(), s.stride(), s.W, acc, acc + kPairs);
      });
  auto dopts = gamma.options().dtype(at::kDouble);
  at::Tensor cov = at::empty({kTaps, kTaps}, dopts), psum = at::empty({kTaps}, dopts);
  double* cv = cov.data_ptr<double>();
  double* ps = psum.data_ptr<double>();
  for (int k = 0; k < kTaps; ++k) ps[k] = sums[kPairs + k];
  for (int j = 0, pair = 0; j < kTaps; ++j) {
    for (int k = j; k < kTaps; ++k, ++pair) {
      cv[j * kTaps + k] = cv[k * kTaps + j] = sums[pair] - ps[j] * ps[k] / double(M);
    }
  }
  // Each channel's response y = w . patch + b: its batch mean and variance.
  const at::Tensor w = weight.to(at::kFloat).reshape({C, kTaps}).contiguous();
  const float* wp = w.const_data_ptr<float>();
  const at::Tensor b = bias.to(at::kFloat).contiguous();
  const float* bp = b.const_data_ptr<float>();
  const float* g = gamma.const_data_ptr<float>();
  const float* bt = beta.const_data_ptr<float>();
  float* rm = running_mean.data_ptr<float>();
  float* rv = running_var.data_ptr<float>();
  Saved sv{shift,
           at::empty({kTaps, C}, gamma.options()),
           at::empty({C}, gamma.options()),
           at::empty({C}, dopts),
           at::empty({C}, dopts),
           cov,
           psum};
  float* tp = sv.taps.data_ptr<float>();
  float* zb = sv.bias.data_ptr<float>();
  double* um = sv.u_mean.data_ptr<double>();
  double* is = sv.invstd.data_ptr<double>();
  for (int64_t c = 0; c < C; ++c) {
    const float* wc = wp + c * kTaps;
    double u = 0.0, wsum = 0.0, var = 0.0;
    for (int j = 0; j < kTaps; ++j) {
      u += double(wc[j]) * ps[j];
      wsum += wc[j];
      for (int k = 0; k < kTaps; ++k) var += double(wc[j]) * double(wc[k]) * cv[j * kTaps + k];
    }
    u /= double(M);
    var = std::max(0.0, var / double(M));
    const double mean = double(bp[c]) + shift * wsum + u;
    const double inv = 1.0 / std::sqrt(var + eps);
    const double scale = double(g[c]) * inv;
    um[c] = u;
    is[c] = inv;
    for (int j = 0; j < kTaps; ++j) tp[j * C + c] = float(double(wc[j]) * scale);
    zb[c] = float(double(bt[c]) - u * scale);
    const double unbiased = M > 1 ? var * double(M) / double(M - 1) : var;
    rm[c] = float(momentum * mean + (1.0 - momentum) * rm[c]);
    rv[c] = float(momentum * unbiased + (1.0 - momentum) * rv[c]);
  }
  at::Tensor out = pooled_output<T>(x, s, fshift, tp, zb);
  return {out, sv};
}

// Backward: {dweight, dbias, dgamma, dbeta} from the pooled output's gradient.
template <typename T>
std::array<at::Tensor, 4> train_backward(const at::Tensor& x, const at::Tensor& weight,
                                         const at::Tensor& bias, const at::Tensor& gamma,
                                         const at::Tensor& grad_in, const Saved& sv) {
  const Shape s(x, weight);
  const int64_t C = s.C, M = s.positions();
  const at::Tensor grad = grad_in.to(x.scalar_type()).contiguous(at::MemoryFormat::ChannelsLast);
  const T* xp = x.const_data_ptr<T>();
  const T* gp = grad.const_data_ptr<T>();
  const float fshift = float(sv.shift);
  const float* tp = sv.taps.const_data_ptr<float>();
  const float* zb = sv.bias.const_data_ptr<float>();
  // Per channel: sum(dz), then per tap sum(dz * shifted patch value) at the winners.
  const std::vector<double> sums =
      reduce(s.N * s.OH, C * (1 + kTaps), [&](int64_t r, float* acc) {
        thread_local std::vector<float> rows;
        rows.resize(4 * s.stride());
        const int64_t n = r / s.OH, oh = r % s.OH;
        fill_rows(xp, n, 2 * oh - 1, 4, s.H, s.W, fshift, rows.data());
        grad_row(rows.data(), s.stride(), s.OW, C, tp, zb, gp + r * s.OW * C, acc, acc + C);
      });
  const at::Tensor w = weight.to(at::kFloat).reshape({C, kTaps}).contiguous();
  const float* wp = w.const_data_ptr<float>();
  const float* g = gamma.const_data_ptr<float>();
  const double* um = sv.u_mean.const_data_ptr<double>();
  const double* is = sv.invstd.const_data_ptr<double>();
  const double* cv = sv.covariance.const_data_ptr<double>();
  const double* ps = sv.patch_sums.const_data_ptr<double>();
  auto fopts = gamma.options();
  at::Tensor dgamma = at::empty({C}, fopts), dbeta = at::empty({C}, fopts);
  at::Tensor dweight = at::empty({C, kTaps}, fopts);
  float* dg = dgamma.data_ptr<float>();
  float* db = dbeta.data_ptr<float>();
  float* dw = dweight.data_ptr<float>();
  for (int64_t c = 0; c < C; ++c) {
    const float* wc = wp + c * kTaps;
    const double a = sums[c];
    const double* e = sums.data() + C;  // e[k * C + c]
    // sum(dz * (y - mean)) at the winners: the weight's response minus its mean.
    double b = -um[c] * a;
    for (int k = 0; k < kTaps; ++k) b += double(wc[k]) * e[k * C + c];
    const double inv = is[c];
    const double coef = double(g[c]) * inv;
    // BatchNorm's input gradient: coef * dz + slope * (y - mean) + offset, with
    // offset = -coef * sum(dz) / M; summed against each tap's patch value.
    const double slope = -coef * inv * inv * b / double(M);
    dg[c] = float(b * inv);
    db[c] = float(a);
    for (int k = 0; k < kTaps; ++k) {
      double wcov = 0.0;
      for (int j = 0; j < kTaps; ++j) wcov += double(wc[j]) * cv[j * kTaps + k];
      dw[c * kTaps + k] = float(coef * (e[k * C + c] - a * ps[k] / double(M)) + slope * wcov);
    }
  }
  // The bias's gradient is sum(dy) over every position, which BatchNorm makes zero.
  return {dweight.reshape(weight.sizes()).to(weight.scalar_type()), at::zeros_like(bias), dgamma,
          dbeta};
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct FirstBlockTrain : public torch::autograd::Function<FirstBlockTrain> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias, const at::Tensor& gamma,
                            const at::Tensor& beta, at::Tensor running_mean,
                            at::Tensor running_var, double momentum, double eps) {
    auto [out, sv] = x.scalar_type() == at::kFloat
                         ? train_forward<float>(x, weight, bias, gamma, beta, running_mean,
                                                running_var, momentum, eps)
                         : train_forward<c10::BFloat16>(x, weight, bias, gamma, beta,
                                                        running_mean, running_var, momentum, eps);
    // The batch's constants after the inputs, in `Saved`'s order.
    ctx->save_for_backward({x, weight, bias, gamma, sv.taps, sv.bias, sv.u_mean, sv.invstd,
                            sv.covariance, sv.patch_sums});
    ctx->saved_data["shift"] = sv.shift;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Saved sv{ctx->saved_data["shift"].toDouble(), saved[4], saved[5], saved[6],
                   saved[7], saved[8], saved[9]};
    auto r = saved[0].scalar_type() == at::kFloat
                 ? train_backward<float>(saved[0], saved[1], saved[2], saved[3], grads[0], sv)
                 : train_backward<c10::BFloat16>(saved[0], saved[1], saved[2], saved[3],
                                                 grads[0], sv);
    return {at::Tensor(), r[0],         r[1],         r[2],        r[3],
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

void check(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 4 && x.size(1) == 1,
              "first_block: a 4-d CPU tensor of one channel");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16,
              "first_block: float32 or bf16 input");
  TORCH_CHECK(x.is_contiguous(), "first_block: a contiguous input");
  TORCH_CHECK(x.size(2) >= 2 && x.size(3) >= 2, "first_block: sides of at least 2");
  TORCH_CHECK(weight.dim() == 4 && weight.size(1) == 1 && weight.size(2) == 3 &&
                  weight.size(3) == 3 && weight.size(0) % kChannels == 0,
              "first_block: a [C, 1, 3, 3] weight, C a multiple of 16");
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "first_block: a [C] bias");
}

template <typename F>
void* guarded(char** err, F body) {
  try {
    return new at::Tensor(body());
  } catch (const std::exception& e) {
    *err = message(e);
  } catch (...) {
    *err = strdup("unknown C++ exception");
  }
  return nullptr;
}

}  // namespace

extern "C" {

// relu(max_pool2d(conv2d(x, weight, bias, padding 1), 2)) without autograd, channels-last.
// Returns a new tensor, or null with *err set.
void* fc_first_block(const void* x, const void* weight, const void* bias, char** err) {
  return guarded(err, [&] {
    const auto& xt = *static_cast<const at::Tensor*>(x);
    const auto& wt = *static_cast<const at::Tensor*>(weight);
    const auto& bt = *static_cast<const at::Tensor*>(bias);
    check(xt, wt, bt);
    return xt.scalar_type() == at::kFloat ? first_block<float>(xt, wt, bt)
                                          : first_block<c10::BFloat16>(xt, wt, bt);
  });
}

// relu(max_pool2d(batch_norm(conv2d(x, weight, bias, padding 1), training), 2)) with
// autograd for every parameter (not the input); `running_mean` and `running_var` are
// updated in place. Returns a new tensor, or null with *err set.
void* fc_first_block_train(const void* x, const void* weight, const void* bias,
                           const FcBatchNorm* bn, char** err) {
  return guarded(err, [&] {
    const auto& xt = *static_cast<const at::Tensor*>(x);
    const auto& wt = *static_cast<const at::Tensor*>(weight);
    const auto& bt = *static_cast<const at::Tensor*>(bias);
    check(xt, wt, bt);
    TORCH_CHECK(!xt.requires_grad(), "first_block: the input takes no gradient");
    const flarecast_shim::BatchNormTensors t(*bn, wt.size(0), "first_block");
    return FirstBlockTrain::apply(xt, wt, bt, t.gamma, t.beta, t.running_mean, t.running_var,
                                  bn->momentum, bn->eps);
  });
}

}  // extern "C"
