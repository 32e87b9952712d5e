// ReLU6 in place as one autograd function whose backward reads the result. libtorch's
// `relu6_` (torchvision's nn.ReLU6(inplace=True)) records hardtanh_'s derivative, which is
// written on the input, so autograd clones the whole activation before clamping it: a
// read and a write of every element that nothing uses. Here the clamp writes in place
// and the backward is torch's own hardtanh_backward evaluated at the result: the result
// is <= 0 exactly where the input is, >= 6 exactly where the input is, and NaN where the
// input is NaN, so values and gradients are bitwise libtorch's.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstring>

#include "shim_error.h"

using flarecast_shim::message;

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr double kLow = 0.0;
constexpr double kHigh = 6.0;

struct Relu6InPlace : public torch::autograd::Function<Relu6InPlace> {
  static at::Tensor forward(AutogradContext* ctx, at::Tensor x) {
    // hardtanh's forward is this clamp (NaN kept).
    x.clamp_(kLow, kHigh);
    ctx->mark_dirty({x});
    ctx->save_for_backward({x});
    return x;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor result = ctx->get_saved_variables()[0];
    return {at::hardtanh_backward(grads[0], result, kLow, kHigh)};
  }
};

}  // namespace

extern "C" {

// relu6 of `x` in place with autograd; returns a new handle to `x`, or null with *err set.
void* fc_relu6_(void* x, char** err) {
  try {
    auto& xt = *static_cast<at::Tensor*>(x);
    return new at::Tensor(Relu6InPlace::apply(xt));
  } catch (const std::exception& e) {
    *err = message(e);
  } catch (...) {
    *err = strdup("unknown C++ exception");
  }
  return nullptr;
}

}  // extern "C"
