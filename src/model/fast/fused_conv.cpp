// The C ABI of oneDNN's fused inference convolution in libtorch,
// `mkldnn::_convolution_pointwise` (the op torch.compile's CPU backend emits): the
// convolution, its bias, an optional tensor added to its output and an activation in one
// pass over the output. It has no autograd formula, so flarecast calls it only with
// autograd off. The op is looked up by name in the dispatcher: the wheel ships no header
// for it, and a libtorch built without oneDNN lacks it (fc_fused_conv_available says so).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>

#include <cstring>
#include <string>
#include <vector>

#include "shim_error.h"

using flarecast_shim::message;

namespace {

std::optional<c10::OperatorHandle> find(const char* overload) {
  return c10::Dispatcher::singleton().findSchema({"mkldnn::_convolution_pointwise", overload});
}

// Looked up once: the dispatcher's table is fixed once libtorch has loaded.
const std::optional<c10::OperatorHandle>& unary_op() {
  static const auto op = find("");
  return op;
}

const std::optional<c10::OperatorHandle>& binary_op() {
  static const auto op = find("binary");
  return op;
}

// oneDNN's reorder of a convolution weight into the blocked layout its kernel reads.
const std::optional<c10::OperatorHandle>& prepack_op() {
  static const auto op =
      c10::Dispatcher::singleton().findSchema({"mkldnn::_reorder_convolution_weight", ""});
  return op;
}

}  // namespace

extern "C" {

int fc_fused_conv_available() { return unary_op().has_value() && binary_op().has_value(); }

int fc_grad_enabled() { return at::GradMode::is_enabled() ? 1 : 0; }

// The tensor's version counter: every in-place change (an optimizer step, a load, a copy)
// bumps it, so weights derived from the tensor stay valid while it reads the same.
int64_t fc_tensor_version(const void* t) {
  return static_cast<const at::Tensor*>(t)->_version();
}

void fc_fused_error_free(char* err) { free(err); }

int fc_prepack_available() { return prepack_op().has_value(); }

// The weight `w` in the layout oneDNN's convolution kernel reads for inputs of
// `input_size` (4 values): an opaque oneDNN tensor that the fused op takes as it is,
// where a plain weight is reordered on every call. For inputs of another shape the op
// reorders it again, with the same values. Returns a new tensor or null with *err set.
void* fc_prepack_conv_weight(const void* w, int64_t stride, int64_t padding, int64_t groups,
                             const int64_t* input_size, char** err) {
  try {
    const auto& wt = *static_cast<const at::Tensor*>(w);
    std::vector<int64_t> pad{padding, padding}, str{stride, stride}, dil{1, 1};
    std::vector<int64_t> size(input_size, input_size + 4);
    torch::jit::Stack stack{wt, pad, str, dil, groups, size};
    prepack_op()->callBoxed(&stack);
    return new at::Tensor(stack.at(0).toTensor());
  } catch (const std::exception& e) {
    *err = message(e);
  } catch (...) {
    *err = strdup("unknown C++ exception");
  }
  return nullptr;
}

// act: "none", "relu" or "hardtanh" (clamped to [lo, hi]). `bias` and `other` may be
// null; with `other`, the output is act(conv(x) + bias + other). Returns a new tensor or
// null with *err set.
void* fc_fused_conv(const void* x, const void* w, const void* bias, const void* other,
                    int64_t stride, int64_t padding, int64_t groups, const char* act, double lo,
                    double hi, char** err) {
  try {
    const auto& xt = *static_cast<const at::Tensor*>(x);
    const auto& wt = *static_cast<const at::Tensor*>(w);
    c10::IValue b;
    if (bias != nullptr) b = *static_cast<const at::Tensor*>(bias);
    std::vector<int64_t> pad{padding, padding}, str{stride, stride}, dil{1, 1};
    c10::List<std::optional<at::Scalar>> scalars;
    std::string attr(act);
    if (attr == "hardtanh") {
      scalars.push_back(at::Scalar(lo));
      scalars.push_back(at::Scalar(hi));
    }
    torch::jit::Stack stack;
    if (other == nullptr) {
      stack = {xt, wt, b, pad, str, dil, groups, attr, scalars, c10::IValue()};
      unary_op()->callBoxed(&stack);
    } else {
      const auto& ot = *static_cast<const at::Tensor*>(other);
      // The binary overload's activation is optional: none is no value.
      c10::IValue unary;
      if (attr != "none") unary = attr;
      stack = {xt, ot, wt, b, pad, str, dil, groups, std::string("add"), c10::IValue(),
               unary, scalars, c10::IValue()};
      binary_op()->callBoxed(&stack);
    }
    return new at::Tensor(stack.at(0).toTensor());
  } catch (const std::exception& e) {
    *err = message(e);
  } catch (...) {
    *err = strdup("unknown C++ exception");
  }
  return nullptr;
}

}  // extern "C"
