// Training's 2x2, stride 2 max pooling over a contiguous (NCHW) float32 activation as one
// autograd function. libtorch's NCHW kernel (cpu_max_pool) walks each window element by
// element and writes an int64 index per output; its backward zero-fills the input
// gradient, then scatters into it. Here each output row is two input rows read in
// vector loops, nothing but the output is written, and the backward recomputes each
// window's winner from the saved input and writes the input gradient once.
//
// Bitwise libtorch's: the winner is the first of the window's four values in row-major
// order unless a later one is greater or NaN (torch's test, so NaN propagates and the
// gradient goes to the last NaN); the gradient there is 0 + dy (torch accumulates into
// zeros, which turns -0 into +0), elsewhere +0, including an odd side's last row or
// column, which is in no window.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>
#include <cstring>

#include "model/fast/cpu_kernel.h"
#include "shim_error.h"
#include "shim_openmp.h"

using flarecast_shim::message;

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The window's maximum and which value it is (0..3, as a float so the loops vectorise).
FC_INLINE float winner(float v0, float v1, float v2, float v3, float& max) {
  float m = v0, k = 0.0f;
  bool take = (v1 > m) | (v1 != v1);
  k = take ? 1.0f : k;
  m = take ? v1 : m;
  take = (v2 > m) | (v2 != v2);
  k = take ? 2.0f : k;
  m = take ? v2 : m;
  take = (v3 > m) | (v3 != v3);
  k = take ? 3.0f : k;
  m = take ? v3 : m;
  max = m;
  return k;
}

// One output row from the input rows `top` and `bottom`.
FC_CLONES void pool_row(const float* __restrict top, const float* __restrict bottom,
                        int64_t OW, float* __restrict out) {
  for (int64_t ow = 0; ow < OW; ++ow) {
    float m;
    winner(top[2 * ow], top[2 * ow + 1], bottom[2 * ow], bottom[2 * ow + 1], m);
    out[ow] = m;
  }
}

// The input gradient of one output row's windows: the row's gradient at each winner.
FC_CLONES void grad_row(const float* __restrict top, const float* __restrict bottom,
                        const float* __restrict grad, int64_t OW, float* __restrict dtop,
                        float* __restrict dbottom) {
  for (int64_t ow = 0; ow < OW; ++ow) {
    float m;
    const float k = winner(top[2 * ow], top[2 * ow + 1], bottom[2 * ow], bottom[2 * ow + 1], m);
    const float g = grad[ow] + 0.0f;
    dtop[2 * ow] = k == 0.0f ? g : 0.0f;
    dtop[2 * ow + 1] = k == 1.0f ? g : 0.0f;
    dbottom[2 * ow] = k == 2.0f ? g : 0.0f;
    dbottom[2 * ow + 1] = k == 3.0f ? g : 0.0f;
  }
}

// Enough rows per task that a thread's share is worth its start.
int64_t grain(int64_t W) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(W, 1)); }

struct MaxPool2 : public torch::autograd::Function<MaxPool2> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x) {
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    const int64_t OH = H / 2, OW = W / 2;
    at::Tensor out = at::empty({N, C, OH, OW}, x.options());
    const float* in = x.data_ptr<float>();
    float* o = out.data_ptr<float>();
    // One task per output row of every plane.
    at::parallel_for(0, N * C * OH, grain(W), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t plane = r / OH, oh = r % OH;
        const float* top = in + (plane * H + 2 * oh) * W;
        pool_row(top, top + W, OW, o + r * OW);
      }
    });
    ctx->save_for_backward({x});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor x = ctx->get_saved_variables()[0];
    const at::Tensor grad = grads[0].contiguous();
    const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    const int64_t OH = H / 2, OW = W / 2;
    at::Tensor dx = at::empty_like(x, at::MemoryFormat::Contiguous);
    const float* in = x.data_ptr<float>();
    const float* g = grad.data_ptr<float>();
    float* d = dx.data_ptr<float>();
    // One task per input row pair; an odd height's last row goes with the last pair.
    at::parallel_for(0, N * C * OH, grain(W), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t plane = r / OH, oh = r % OH;
        const int64_t offset = (plane * H + 2 * oh) * W;
        float* dtop = d + offset;
        grad_row(in + offset, in + offset + W, g + r * OW, OW, dtop, dtop + W);
        if (W % 2 == 1) {
          dtop[W - 1] = 0.0f;
          dtop[2 * W - 1] = 0.0f;
        }
        if (H % 2 == 1 && oh == OH - 1) {
          std::memset(dtop + 2 * W, 0, sizeof(float) * W);
        }
      }
    });
    return {dx};
  }
};

}  // namespace

extern "C" {

// max_pool2d(x, 2, 2) with autograd for a contiguous float32 CPU tensor of sides >= 2;
// null with *err set for any other.
void* fc_max_pool2(void* x, char** err) {
  try {
    const auto& xt = *static_cast<const at::Tensor*>(x);
    const bool takes = xt.device().is_cpu() && xt.scalar_type() == at::kFloat &&
                       xt.dim() == 4 && xt.is_contiguous() && xt.size(2) >= 2 &&
                       xt.size(3) >= 2;
    if (!takes) {
      *err = message("max_pool2 takes a contiguous float32 CPU tensor [N,C,H,W], H,W >= 2");
      return nullptr;
    }
    return new at::Tensor(MaxPool2::apply(xt));
  } catch (const std::exception& e) {
    *err = message(e);
  } catch (...) {
    *err = strdup("unknown C++ exception");
  }
  return nullptr;
}

}  // extern "C"
