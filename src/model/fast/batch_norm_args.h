// A training BatchNorm2d as the Rust side hands it to the fused shims of src/model/fast/
// (`fast::bn_pool::BatchNormArgs`, the same layout): its parameters and running buffers
// (at::Tensor handles) and its settings.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>

struct FcBatchNorm {
  const void* gamma;
  const void* beta;
  const void* running_mean;
  const void* running_var;
  double momentum;
  double eps;
};

namespace flarecast_shim {

// The tensors of `bn`, checked to be float32 and contiguous with `channels` values each.
struct BatchNormTensors {
  const at::Tensor& gamma;
  const at::Tensor& beta;
  const at::Tensor& running_mean;
  const at::Tensor& running_var;

  BatchNormTensors(const FcBatchNorm& bn, int64_t channels, const char* who)
      : gamma(*static_cast<const at::Tensor*>(bn.gamma)),
        beta(*static_cast<const at::Tensor*>(bn.beta)),
        running_mean(*static_cast<const at::Tensor*>(bn.running_mean)),
        running_var(*static_cast<const at::Tensor*>(bn.running_var)) {
    for (const at::Tensor* t : {&gamma, &beta, &running_mean, &running_var}) {
      TORCH_CHECK(t->scalar_type() == at::kFloat && t->is_contiguous() &&
                      t->numel() == channels,
                  who, ": float32 per-channel BatchNorm parameters");
    }
  }
};

}  // namespace flarecast_shim
