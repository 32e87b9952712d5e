// A Linear at inference with its weight prepared once: packed for MKL's GEMM, or on AMD
// CPUs (where MKL runs its generic code) held as a oneDNN tensor for oneDNN's inner
// product (`at::mkldnn_linear`). The packing is libtorch's
// `mkl::_mkl_reorder_linear_weight` and `mkl::_mkl_linear`, the ops torch.compile emits
// for a frozen Linear on the CPU, found in libtorch's dispatcher at run time. `F.linear`
// calls MKL's sgemm, which packs the whole weight matrix again on every call; for a small
// batch that copy costs more than the multiply (AlexNet's and VGG's classifiers). A
// batch of another size than the one packed for runs `F.linear` inside `_mkl_linear`.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstring>
#include <optional>

#include "shim_error.h"

using flarecast_shim::message;

namespace {

// Looked up once: the dispatcher's table is fixed once libtorch has loaded.
const std::optional<c10::OperatorHandle>& pack_op() {
  static const auto op =
      c10::Dispatcher::singleton().findSchema({"mkl::_mkl_reorder_linear_weight", ""});
  return op;
}

const std::optional<c10::OperatorHandle>& linear_op() {
  static const auto op = c10::Dispatcher::singleton().findSchema({"mkl::_mkl_linear", ""});
  return op;
}

template <typename F>
void* guarded(char** err, F f) {
  try {
    return new at::Tensor(f());
  } catch (const std::exception& e) {
    *err = message(e);
  } catch (...) {
    *err = strdup("unknown C++ exception");
  }
  return nullptr;
}

}  // namespace

extern "C" {

int fc_packed_linear_available() { return pack_op().has_value() && linear_op().has_value(); }

// `w` [out, in] float32 packed for batches of `batch` rows; a new tensor, or null with *err.
void* fc_pack_linear_weight(const void* w, int64_t batch, char** err) {
  return guarded(err, [&] {
    const auto& wt = *static_cast<const at::Tensor*>(w);
    return pack_op()->typed<at::Tensor(const at::Tensor&, int64_t)>().call(wt, batch);
  });
}

// `w` [out, in] float32 as a oneDNN tensor, for fc_onednn_linear; a new tensor, or null.
void* fc_onednn_linear_weight(const void* w, char** err) {
  return guarded(err, [&] { return static_cast<const at::Tensor*>(w)->contiguous().to_mkldnn(); });
}

// x @ w.T + b through oneDNN's inner product, `weight` from fc_onednn_linear_weight; any
// batch size.
void* fc_onednn_linear(const void* x, const void* weight, const void* b, char** err) {
  return guarded(err, [&] {
    const auto& xt = *static_cast<const at::Tensor*>(x);
    const auto& wt = *static_cast<const at::Tensor*>(weight);
    const std::optional<at::Tensor> bt = *static_cast<const at::Tensor*>(b);
    return at::mkldnn_linear(xt.contiguous().to_mkldnn(), wt, bt).to_dense();
  });
}

// x @ w.T + b with `packed` from fc_pack_linear_weight(w, batch).
void* fc_packed_linear(const void* x, const void* packed, const void* w, const void* b,
                       int64_t batch, char** err) {
  return guarded(err, [&] {
    const auto& xt = *static_cast<const at::Tensor*>(x);
    const auto& pt = *static_cast<const at::Tensor*>(packed);
    const auto& wt = *static_cast<const at::Tensor*>(w);
    const std::optional<at::Tensor> bt = *static_cast<const at::Tensor*>(b);
    return linear_op()
        ->typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                           const std::optional<at::Tensor>&, int64_t)>()
        .call(xt, pt, wt, bt, batch);
  });
}

}  // extern "C"
