// Plain SGD's update (no momentum, L2 weight decay) over a float32 parameter in one pass:
// p <- p - lr * (g + wd * p). libtorch's SGD takes two passes and a temporary
// (d = g.add(p, wd); p.add_(d, -lr)); here each element is read and written once, with
// the same two roundings in the same order, each a fused multiply-add where ATen's
// vectorised add-with-alpha is one (processors with FMA) and a multiply and an add where
// it is not, so the parameters come out bitwise the same.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "shim_error.h"
#include "shim_openmp.h"

using flarecast_shim::message;

namespace {

__attribute__((target("avx2,fma"))) void update_fma(float* p, const float* g, int64_t n,
                                                    float wd, float neg_lr) {
  #pragma GCC ivdep
  for (int64_t i = 0; i < n; ++i) {
    const float d = __builtin_fmaf(p[i], wd, g[i]);
    p[i] = __builtin_fmaf(d, neg_lr, p[i]);
  }
}

// Without FMA (compiled without contraction: ISO C++ mode), as ATen's default kernels.
void update_plain(float* p, const float* g, int64_t n, float wd, float neg_lr) {
  for (int64_t i = 0; i < n; ++i) {
    const float d = g[i] + wd * p[i];
    p[i] = p[i] + neg_lr * d;
  }
}

}  // namespace

extern "C" {

// `param` and `grad`: at::Tensor handles, float32 CPU tensors of one size. Where the two
// share one dense layout (contiguous or channels-last alike) the update is one pass over
// their memory; otherwise it is libtorch's two ops. Returns null, or the error with the
// parameter untouched.
char* fc_sgd_update(void* param, const void* grad, double lr, double weight_decay) {
  try {
    auto& p = *static_cast<at::Tensor*>(param);
    const auto& g = *static_cast<const at::Tensor*>(grad);
    TORCH_CHECK(p.device().is_cpu() && g.device().is_cpu() && p.scalar_type() == at::kFloat &&
                    g.scalar_type() == at::kFloat && p.sizes() == g.sizes(),
                "sgd_update: a float32 CPU parameter and gradient of one size");
    if (!p.is_non_overlapping_and_dense() || p.strides() != g.strides()) {
      c10::NoGradGuard no_grad;
      p.add_(g.add(p, weight_decay), -lr);
      return nullptr;
    }
    float* pp = p.data_ptr<float>();
    const float* gp = g.const_data_ptr<float>();
    // As ATen's add: alpha converted to the tensors' float once.
    const float wd = float(weight_decay), neg_lr = float(-lr);
    const bool fma = __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2");
    at::parallel_for(0, p.numel(), at::internal::GRAIN_SIZE, [&](int64_t b, int64_t e) {
      if (fma) {
        update_fma(pp + b, gp + b, e - b, wd, neg_lr);
      } else {
        update_plain(pp + b, gp + b, e - b, wd, neg_lr);
      }
    });
    // An in-place change through libtorch bumps the version counter; so does this one,
    // so what was made from the parameter (model::prepared) is made again.
    p.unsafeGetTensorImpl()->bump_version();
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  } catch (...) {
    return strdup("unknown C++ exception");
  }
}

}  // extern "C"
