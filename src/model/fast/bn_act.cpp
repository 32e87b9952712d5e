// Training's BatchNorm2d (batch statistics), an optional residual sum and the activation
// after it (ReLU, ReLU6 or none) over a channels-last activation, as one autograd
// function: torchvision's `relu(bn(conv(x)) + identity)` of a ResNet block and
// `relu6(bn(conv(x)))` of MobileNetV2. libtorch runs them as separate passes: forward the
// statistics, the normalisation's read and write, the sum's and the activation's reads and
// writes; backward the activation's (grad and result read, grad written) and then
// BatchNorm's two. Here the forward reads the input twice (statistics; normalise, add,
// activate, written once) and the backward twice (BatchNorm's sums, where the activation
// passes the gradient; the input gradient, written once). Without a residual the
// activation's mask is recomputed from the input, so nothing but the input and the
// per-channel constants is kept; with one, from the output, which also carries the
// residual's gradient.
//
// Arithmetic in float32 for both float32 and bf16 activations, rounded to the
// activation's kind where torch's ops round (BatchNorm's output before the sum, the sum);
// the gradient passes where torch's threshold and hardtanh backward pass it (not at an
// output <= 0, nor >= 6 for ReLU6; NaN passes), and the activations keep NaN, so a
// diverged network's NaN reaches the loss.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "model/fast/batch_norm_args.h"
#include "model/fast/bn_batch_stats.h"
#include "model/fast/cpu_kernel.h"
#include "shim_error.h"
#include "shim_openmp.h"

using flarecast_shim::message;

namespace {

using flarecast_kernel::load;
using flarecast_kernel::rounded;
using flarecast_kernel::store;

// The activation after the sum: fused::Act's codes on the Rust side.
enum Act : int { kNone = 0, kRelu = 1, kRelu6 = 2 };

template <int A>
FC_INLINE float activate(float v) {
  if (A == kNone) return v;
  // Comparisons false for NaN: it stays, as torch's ReLU and ReLU6 keep it.
  v = v < 0.0f ? 0.0f : v;
  if (A == kRelu6) v = v > 6.0f ? 6.0f : v;
  return v;
}

// The activation's gradient at its output (or input) y: d where it passes, else 0. Selects one
// after another, which vectorise where a branch or a combined condition does not.
template <int A>
FC_INLINE float pass_grad(float y, float d) {
  if (A == kNone) return d;
  d = y <= 0.0f ? 0.0f : d;
  if (A == kRelu6) d = y >= 6.0f ? 0.0f : d;
  return d;
}

// BatchNorm's output at one element as torch holds it (rounded to T): the forward's
// value, recomputed in the backward from the same expression. The activations' masks
// read it before the activation (ReLU's and ReLU6's outputs are <= 0 or >= 6 exactly
// where their inputs are, NaN alike), one select fewer per element.
template <typename T>
FC_INLINE float normalised(const T* x, int64_t i, float scale, float shift) {
  return rounded(load(x, i) * scale + shift, x);
}

// `rows` positions of the output: act(bn(x) [+ residual]).
template <int A, bool R, typename T>
FC_INLINE void forward_rows_impl(const T* x, const T* res, int64_t rows, int64_t C,
                                 const float* scale, const float* shift, T* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * C;
    #pragma GCC ivdep
    for (int64_t c = 0; c < C; ++c) {
      if (R) {
        const float v = rounded(load(x, o + c) * scale[c] + shift[c], x) + load(res, o + c);
        store(out + o, c, activate<A>(v));
      } else {
        store(out + o, c, activate<A>(normalised(x + o, c, scale[c], shift[c])));
      }
    }
  }
}

// The gradient at BatchNorm's output, one element: dy where the activation passed it.
// With a residual the mask comes from the saved output `y`; without, from the input.
template <int A, bool R, typename T>
FC_INLINE float grad_at(const T* x, const T* y, const T* dy, int64_t i, float scale,
                        float shift) {
  const float yv = R ? load(y, i) : normalised(x, i, scale, shift);
  return pass_grad<A>(yv, load(dy, i));
}

// `rows` positions' share of sum(g) and sum(g * (x - mean)); with a residual and an
// activation, g written to `g_out` too (the residual's gradient, as torch's ReLU backward
// writes it).
template <int A, bool R, typename T>
FC_INLINE void grad_sums_impl(const T* x, const T* y, const T* dy, int64_t rows, int64_t C,
                              const float* scale, const float* shift, const float* mean,
                              float* a, float* b, T* g_out) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * C;
    #pragma GCC ivdep
    for (int64_t c = 0; c < C; ++c) {
      const float g = grad_at<A, R>(x + o, y + o, dy + o, c, scale[c], shift[c]);
      if (R && A != kNone) store(g_out + o, c, g);
      a[c] += g;
      b[c] += g * (load(x, o + c) - mean[c]);
    }
  }
}

// `rows` positions of the input gradient: dx = coef * g + slope * (x - mean) + offset,
// g read from `g_in` where the sums wrote it, else recomputed.
template <int A, bool R, typename T>
FC_INLINE void grad_input_impl(const T* x, const T* y, const T* dy, const T* g_in,
                               int64_t rows, int64_t C, const float* scale, const float* shift,
                               const float* mean, const float* coef, const float* slope,
                               const float* offset, T* dx) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * C;
    #pragma GCC ivdep
    for (int64_t c = 0; c < C; ++c) {
      const float g = R && A != kNone
                          ? load(g_in, o + c)
                          : grad_at<A, R>(x + o, y + o, dy + o, c, scale[c], shift[c]);
      store(dx + o, c, coef[c] * g + slope[c] * (load(x, o + c) - mean[c]) + offset[c]);
    }
  }
}

// One case per activation and residual, each its own inlined loop.
#define FC_ACT_CASES(CALL)  \
  switch (act * 2 + int(residual)) { \
    case 0: CALL(kNone, false); break; \
    case 1: CALL(kNone, true); break; \
    case 2: CALL(kRelu, false); break; \
    case 3: CALL(kRelu, true); break; \
    case 4: CALL(kRelu6, false); break; \
    default: CALL(kRelu6, true); break; \
  }

// The clones: one overload per element type, each inlining its six kernels.
#define FC_KERNELS(T) \
  FC_CLONES void forward_rows(int act, bool residual, const T* x, const T* res, int64_t rows, \
                              int64_t C, const float* scale, const float* shift, T* out) { \
    FC_ACT_CASES(FC_FORWARD) \
  } \
  FC_CLONES void grad_sums(int act, bool residual, const T* x, const T* y, const T* dy, \
                           int64_t rows, int64_t C, const float* scale, const float* shift, \
                           const float* mean, float* a, float* b, T* g_out) { \
    FC_ACT_CASES(FC_SUMS) \
  } \
  FC_CLONES void grad_input(int act, bool residual, const T* x, const T* y, const T* dy, \
                            const T* g_in, int64_t rows, int64_t C, const float* scale, \
                            const float* shift, const float* mean, const float* coef, \
                            const float* slope, const float* offset, T* dx) { \
    FC_ACT_CASES(FC_INPUT) \
  }
#define FC_FORWARD(A, R) forward_rows_impl<A, R>(x, res, rows, C, scale, shift, out)
#define FC_SUMS(A, R) grad_sums_impl<A, R>(x, y, dy, rows, C, scale, shift, mean, a, b, g_out)
#define FC_INPUT(A, R) \
  grad_input_impl<A, R>(x, y, dy, g_in, rows, C, scale, shift, mean, coef, slope, offset, dx)

FC_KERNELS(float)
FC_KERNELS(c10::BFloat16)

// Positions handed to one task of the elementwise passes.
constexpr int64_t kGrain = 256;

template <typename T>
const T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}

// Forward: batch statistics (updating the running ones), then the activated output.
template <typename T>
std::pair<at::Tensor, Stats> forward_kernel(const at::Tensor& x, const at::Tensor& residual,
                                            const at::Tensor& gamma, const at::Tensor& beta,
                                            at::Tensor& running_mean, at::Tensor& running_var,
                                            double momentum, double eps, int act) {
  const int64_t C = x.size(1), M = x.numel() / C;
  Stats st = batch_stats<T>(x, gamma, beta, running_mean, running_var, momentum, eps);
  const float* sc = st.scale.const_data_ptr<float>();
  const float* sh = st.shift.const_data_ptr<float>();
  const T* xp = x.const_data_ptr<T>();
  const T* rp = ptr_or_null<T>(residual);
  at::Tensor out = at::empty_like(x, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  T* op = out.data_ptr<T>();
  at::parallel_for(0, M, kGrain, [&](int64_t b, int64_t e) {
    forward_rows(act, rp != nullptr, xp + b * C, rp ? rp + b * C : nullptr, e - b, C, sc, sh,
                 op + b * C);
  });
  return {out, st};
}

// Backward: {dx, the residual's gradient (undefined without one), dgamma, dbeta}.
template <typename T>
std::vector<at::Tensor> backward_kernel(const at::Tensor& x, const at::Tensor& out,
                                        bool residual, const at::Tensor& gamma,
                                        const at::Tensor& grad_in, const Stats& st, int act) {
  const int64_t C = x.size(1), M = x.numel() / C;
  const at::Tensor dy = grad_in.to(x.scalar_type()).contiguous(at::MemoryFormat::ChannelsLast);
  const auto cl = x.options().memory_format(at::MemoryFormat::ChannelsLast);
  // With a residual and an activation, the gradient past the activation is the
  // residual's too, written once by the sums' pass.
  const bool keeps_g = residual && act != kNone;
  at::Tensor g = keeps_g ? at::empty_like(x, cl) : at::Tensor();
  const T* xp = x.const_data_ptr<T>();
  const T* yp = ptr_or_null<T>(out);
  const T* dp = dy.const_data_ptr<T>();
  T* gp = keeps_g ? g.data_ptr<T>() : nullptr;
  const float* mp = st.mean.const_data_ptr<float>();
  const float* sc = st.scale.const_data_ptr<float>();
  const float* sh = st.shift.const_data_ptr<float>();
  const auto at_row = [C](const T* p, int64_t b) { return p ? p + b * C : nullptr; };
  auto [sum_g, sum_g_xmu] = reduce_channels(M, C, 64, [&](int64_t b, int64_t e, float* a, float* bb) {
    grad_sums(act, residual, xp + b * C, at_row(yp, b), dp + b * C, e - b, C, sc, sh, mp, a, bb,
              gp ? gp + b * C : nullptr);
  });
  const BackwardCoefs k(sum_g, sum_g_xmu, gamma, st, M);
  at::Tensor dx = at::empty_like(x, cl);
  T* dxp = dx.data_ptr<T>();
  at::parallel_for(0, M, kGrain, [&](int64_t b, int64_t e) {
    grad_input(act, residual, xp + b * C, at_row(yp, b), dp + b * C, at_row(gp, b), e - b, C, sc,
               sh, mp, k.coef.data(), k.slope.data(), k.offset.data(), dxp + b * C);
  });
  at::Tensor dres = !residual ? at::Tensor() : keeps_g ? g : dy;
  return {dx, dres, k.dgamma, k.dbeta};
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct BnAct : public torch::autograd::Function<BnAct> {
  // The residual is optional, which libtorch's custom functions take as an absent input
  // (an undefined tensor is refused).
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            const std::optional<at::Tensor>& residual_in,
                            const at::Tensor& gamma, const at::Tensor& beta,
                            at::Tensor running_mean, at::Tensor running_var, double momentum,
                            double eps, int64_t act) {
    const int a = int(act);
    const at::Tensor residual = residual_in.value_or(at::Tensor());
    auto [out, st] =
        x.scalar_type() == at::kFloat
            ? forward_kernel<float>(x, residual, gamma, beta, running_mean, running_var,
                                    momentum, eps, a)
            : forward_kernel<c10::BFloat16>(x, residual, gamma, beta, running_mean,
                                            running_var, momentum, eps, a);
    const bool has_residual = residual.defined();
    // The output is kept only where it gives the mask (a residual and an activation).
    ctx->save_for_backward(
        {x, gamma, has_residual && a != kNone ? out : at::Tensor()});
    ctx->saved_data["mean"] = st.mean;
    ctx->saved_data["invstd"] = st.invstd;
    ctx->saved_data["scale"] = st.scale;
    ctx->saved_data["shift"] = st.shift;
    ctx->saved_data["act"] = act;
    ctx->saved_data["residual"] = has_residual;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& gamma = saved[1];
    const at::Tensor& out = saved[2];
    const Stats st{ctx->saved_data["mean"].toTensor(), ctx->saved_data["invstd"].toTensor(),
                   ctx->saved_data["scale"].toTensor(), ctx->saved_data["shift"].toTensor()};
    const int act = int(ctx->saved_data["act"].toInt());
    const bool residual = ctx->saved_data["residual"].toBool();
    auto r = x.scalar_type() == at::kFloat
                 ? backward_kernel<float>(x, out, residual, gamma, grads[0], st, act)
                 : backward_kernel<c10::BFloat16>(x, out, residual, gamma, grads[0], st, act);
    return {r[0], r[1],         r[2],         r[3],        at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

void check(const at::Tensor& x, const at::Tensor* residual, int64_t act) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 4, "bn_act: a 4-d CPU tensor");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16,
              "bn_act: float32 or bf16 activations");
  TORCH_CHECK(x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "bn_act: channels-last activations");
  // BatchNorm2d's own error for a single value per channel comes from the plain op.
  TORCH_CHECK(x.numel() > x.size(1), "bn_act: more than one value per channel");
  TORCH_CHECK(act >= kNone && act <= kRelu6, "bn_act: activation code ", act);
  if (residual) {
    TORCH_CHECK(residual->sizes() == x.sizes() && residual->scalar_type() == x.scalar_type() &&
                    residual->is_contiguous(at::MemoryFormat::ChannelsLast),
                "bn_act: a residual of the activation's shape, kind and layout");
  }
}

}  // namespace

extern "C" {

// act(batch_norm(x, training) + residual) with autograd, `residual` null for none, `act`
// 0 none, 1 ReLU, 2 ReLU6; `running_mean` and `running_var` are updated in place.
// Returns a new tensor, or null with *err set.
void* fc_bn_act(const void* x, const void* residual, const FcBatchNorm* bn, int64_t act,
                char** err) {
  try {
    const auto& xt = *static_cast<const at::Tensor*>(x);
    const auto* rt = static_cast<const at::Tensor*>(residual);
    check(xt, rt, act);
    const flarecast_shim::BatchNormTensors t(*bn, xt.size(1), "bn_act");
    const std::optional<at::Tensor> res = rt ? std::optional<at::Tensor>(*rt) : std::nullopt;
    return new at::Tensor(BnAct::apply(xt, res, t.gamma, t.beta,
                                       t.running_mean, t.running_var, bn->momentum, bn->eps,
                                       act));
  } catch (const std::exception& e) {
    *err = message(e);
  } catch (...) {
    *err = strdup("unknown C++ exception");
  }
  return nullptr;
}

}  // extern "C"
