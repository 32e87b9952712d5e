// Training's stride-1 "same" convolution (k x k, padding (k - 1) / 2, groups 1) over
// channels-last float32 activations as one autograd function, for processors whose
// convolutions run on AVX2 (no AVX-512; the Rust side checks). The forward and the input
// gradient are libtorch's own (oneDNN); the weight gradient is this file's kernel.
//
// Why: oneDNN's AVX2 weight gradient (jit:avx2 backward_weights) ran at 53-127 GFLOP/s
// on a 2-core AMD EPYC (Zen 3) whose peak is about 200, and was 45 % of a ResNet-34
// training step's convolution time, against 150-200 for its forward and input-gradient
// kernels. Here the sum dW[o][kh][kw][i] = sum over (n, y, x) of dY[n][y][x][o] *
// X[n][y+kh-p][x+kw-p][i] runs as register tiles of 6 output channels by 16 (or 8) input
// channels, over blocks of image rows packed once so every tile reads L1-resident,
// sequential memory. Each weight's products are added one pixel after another in (n, y,
// x) order, one accumulator per weight, as oneDNN's AVX2 kernel adds them: on that EPYC
// the gradients came out bit for bit oneDNN's.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "shim_error.h"
#include "shim_openmp.h"

using flarecast_shim::message;

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Output channels per register tile (broadcast from dY), and input channels per vector.
constexpr int64_t kTileO = 6;
constexpr int64_t kLanes = 8;
// Pixels per packed block of rows: its rows of X and dY for one tile fit in L1.
constexpr int64_t kBlockPixels = 256;

#define FC_AVX2 __attribute__((target("avx2,fma"), always_inline)) inline

// One tile: MR output channels by NV vectors of input channels, for one tap (kh, kw),
// over packed rows r0..r1 and columns x0..x1. `xp` holds the block's input rows for this
// tile's input channels ([row][W + 2p][NV * 8], zero outside the image), `dp` its output
// gradient rows for these output channels ([row][W][kTileO]); `c` is dW at [o][kh][kw][i],
// output channel o + j at c + j * cs, read, summed into and written back.
template <int MR, int NV>
FC_AVX2 void tile(const float* xp, const float* dp, float* c, int64_t cs, int64_t r0, int64_t r1,
                  int64_t x0, int64_t x1, int64_t W, int64_t Wp, int64_t kh, int64_t kw) {
  static_assert(MR >= 1 && MR <= 6 && (NV == 1 || NV == 2), "tile shape");
  constexpr int64_t V = NV * kLanes;
  // Named accumulators: g++ keeps an array of __m256 in memory, stored every step.
  __m256 a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51;
#define FC_LOAD(j)                                                   \
  if constexpr (MR > j) {                                            \
    a##j##0 = _mm256_loadu_ps(c + j * cs);                           \
    if constexpr (NV == 2) a##j##1 = _mm256_loadu_ps(c + j * cs + 8); \
  }
  FC_LOAD(0) FC_LOAD(1) FC_LOAD(2) FC_LOAD(3) FC_LOAD(4) FC_LOAD(5)
#undef FC_LOAD
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = xp + ((r + kh) * Wp + kw + x0) * V;
    const float* d = dp + (r * W + x0) * kTileO;
    for (int64_t x = x0; x < x1; ++x, xr += V, d += kTileO) {
      const __m256 v0 = _mm256_loadu_ps(xr);
      __m256 v1;
      if constexpr (NV == 2) v1 = _mm256_loadu_ps(xr + 8);
#define FC_FMA(j)                                                         \
  if constexpr (MR > j) {                                                 \
    const __m256 b = _mm256_broadcast_ss(d + j);                          \
    a##j##0 = _mm256_fmadd_ps(b, v0, a##j##0);                            \
    if constexpr (NV == 2) a##j##1 = _mm256_fmadd_ps(b, v1, a##j##1);     \
  }
      FC_FMA(0) FC_FMA(1) FC_FMA(2) FC_FMA(3) FC_FMA(4) FC_FMA(5)
#undef FC_FMA
    }
  }
#define FC_STORE(j)                                                  \
  if constexpr (MR > j) {                                            \
    _mm256_storeu_ps(c + j * cs, a##j##0);                           \
    if constexpr (NV == 2) _mm256_storeu_ps(c + j * cs + 8, a##j##1); \
  }
  FC_STORE(0) FC_STORE(1) FC_STORE(2) FC_STORE(3) FC_STORE(4) FC_STORE(5)
#undef FC_STORE
}

template <int NV>
FC_AVX2 void tile_rows(int64_t mr, const float* xp, const float* dp, float* c, int64_t cs,
                       int64_t r0, int64_t r1, int64_t x0, int64_t x1, int64_t W, int64_t Wp,
                       int64_t kh, int64_t kw) {
  switch (mr) {
    case 6: return tile<6, NV>(xp, dp, c, cs, r0, r1, x0, x1, W, Wp, kh, kw);
    case 5: return tile<5, NV>(xp, dp, c, cs, r0, r1, x0, x1, W, Wp, kh, kw);
    case 4: return tile<4, NV>(xp, dp, c, cs, r0, r1, x0, x1, W, Wp, kh, kw);
    case 3: return tile<3, NV>(xp, dp, c, cs, r0, r1, x0, x1, W, Wp, kh, kw);
    case 2: return tile<2, NV>(xp, dp, c, cs, r0, r1, x0, x1, W, Wp, kh, kw);
    default: return tile<1, NV>(xp, dp, c, cs, r0, r1, x0, x1, W, Wp, kh, kw);
  }
}

// The shapes of one weight gradient.
struct Shape {
  int64_t N, H, W, Ci, Co, K, P;
};

// Input channel blocks: of 16 while they last, then one of 8 (Ci is a multiple of 8).
int64_t channel_blocks(int64_t Ci) { return Ci / 16 + (Ci % 16 != 0); }
int64_t block_start(int64_t b) { return b * 16; }
int64_t block_width(const Shape& s, int64_t b) { return std::min<int64_t>(16, s.Ci - b * 16); }

// `cols` runs of V floats, `stride` apart in `src`, one after another in `dst`.
template <int64_t V>
inline void copy_columns(const float* src, int64_t stride, int64_t cols, float* dst) {
  for (int64_t c = 0; c < cols; ++c) std::memcpy(dst + c * V, src + c * stride, sizeof(float) * V);
}

// Output-channel tiles o0..o1 of dW ([Co][K][K][Ci], zeroed), summed over every image.
__attribute__((target("avx2,fma"))) void weight_grad_tiles(const float* x, const float* dy,
                                                           float* dw, const Shape& s,
                                                           int64_t t0, int64_t t1) {
  const int64_t Wp = s.W + 2 * s.P;
  const int64_t rows = std::clamp<int64_t>(kBlockPixels / s.W, 1, s.H);
  const int64_t in_rows = rows + 2 * s.P;
  const int64_t nb = channel_blocks(s.Ci);
  const int64_t cs = s.K * s.K * s.Ci;
  // Packed per block of rows: every input-channel block's rows (with the halo), and this
  // thread's output-channel tiles' rows.
  std::vector<float> xp(nb * in_rows * Wp * 16);
  std::vector<float> dp((t1 - t0) * rows * s.W * kTileO);
  for (int64_t n = 0; n < s.N; ++n) {
    for (int64_t y0 = 0; y0 < s.H; y0 += rows) {
      const int64_t nr = std::min(rows, s.H - y0);
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t V = block_width(s, b);
        float* q = xp.data() + b * in_rows * Wp * 16;
        for (int64_t r = 0; r < nr + 2 * s.P; ++r) {
          const int64_t ys = y0 - s.P + r;
          float* qr = q + r * Wp * V;
          if (ys < 0 || ys >= s.H) {
            std::memset(qr, 0, sizeof(float) * Wp * V);
            continue;
          }
          std::memset(qr, 0, sizeof(float) * s.P * V);
          std::memset(qr + (s.P + s.W) * V, 0, sizeof(float) * s.P * V);
          const float* src = x + ((n * s.H + ys) * s.W) * s.Ci + block_start(b);
          // Copies of a constant size, which the compiler turns into vector moves.
          if (V == 16) {
            copy_columns<16>(src, s.Ci, s.W, qr + s.P * V);
          } else {
            copy_columns<8>(src, s.Ci, s.W, qr + s.P * V);
          }
        }
      }
      // Each pixel's output gradient, read once, dealt out to the tiles.
      const int64_t tile_stride = rows * s.W * kTileO;
      for (int64_t p = 0; p < nr * s.W; ++p) {
        const float* src = dy + ((n * s.H + y0) * s.W + p) * s.Co;
        float* q = dp.data() + p * kTileO;
        for (int64_t t = t0; t < t1; ++t, q += tile_stride) {
          const int64_t o = t * kTileO;
          if (o + kTileO <= s.Co) {
            std::memcpy(q, src + o, sizeof(float) * kTileO);
          } else {
            std::memcpy(q, src + o, sizeof(float) * (s.Co - o));
          }
        }
      }
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t o = t * kTileO, mr = std::min(kTileO, s.Co - o);
        const float* dq = dp.data() + (t - t0) * rows * s.W * kTileO;
        for (int64_t b = 0; b < nb; ++b) {
          const float* xq = xp.data() + b * in_rows * Wp * 16;
          for (int64_t kh = 0; kh < s.K; ++kh) {
            // Rows whose source row lies in the image (the others add only zeros).
            const int64_t r0 = std::max<int64_t>(0, s.P - kh - y0);
            const int64_t r1 = std::min<int64_t>(nr, s.H + s.P - kh - y0);
            for (int64_t kw = 0; kw < s.K; ++kw) {
              const int64_t x0 = std::max<int64_t>(0, s.P - kw);
              const int64_t x1 = std::min<int64_t>(s.W, s.W + s.P - kw);
              float* c = dw + (o * s.K * s.K + kh * s.K + kw) * s.Ci + block_start(b);
              if (block_width(s, b) == 16) {
                tile_rows<2>(mr, xq, dq, c, cs, r0, r1, x0, x1, s.W, Wp, kh, kw);
              } else {
                tile_rows<1>(mr, xq, dq, c, cs, r0, r1, x0, x1, s.W, Wp, kh, kw);
              }
            }
          }
        }
      }
    }
  }
}

// dW of the convolution of x (channels-last [N, Ci, H, W]) giving dy (the same layout,
// [N, Co, H, W]), as a channels-last [Co, Ci, K, K] tensor: the output-channel tiles
// split across the intra-op threads, each summing over every image.
at::Tensor weight_grad(const at::Tensor& x, const at::Tensor& dy, int64_t K) {
  const Shape s{x.size(0), x.size(2), x.size(3), x.size(1), dy.size(1), K, (K - 1) / 2};
  // at::zeros drops a memory format: empty in the layout, then zeroed.
  at::Tensor dw =
      at::empty({s.Co, s.Ci, K, K}, x.options(), at::MemoryFormat::ChannelsLast).zero_();
  const float* xp = x.data_ptr<float>();
  const float* dp = dy.data_ptr<float>();
  float* wp = dw.data_ptr<float>();
  const int64_t tiles = (s.Co + kTileO - 1) / kTileO;
  at::parallel_for(0, tiles, 1, [&](int64_t t0, int64_t t1) {
    weight_grad_tiles(xp, dp, wp, s, t0, t1);
  });
  return dw;
}

struct ConvTrain : public torch::autograd::Function<ConvTrain> {
  // The bias is optional, which libtorch's custom functions take as an absent input.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const std::optional<at::Tensor>& bias) {
    const int64_t p = (w.size(2) - 1) / 2;
    at::Tensor out = at::convolution(x, w, bias, {1, 1}, {p, p}, {1, 1}, false, {0, 0}, 1);
    ctx->save_for_backward({x, w});
    ctx->saved_data["bias"] = bias.has_value();
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& w = saved[1];
    const at::Tensor dy = grads[0].contiguous(at::MemoryFormat::ChannelsLast);
    const int64_t K = w.size(2), p = (K - 1) / 2;
    at::Tensor dx, dw, db;
    if (ctx->needs_input_grad(0)) {
      dx = std::get<0>(at::convolution_backward(dy, x, w, std::nullopt, {1, 1}, {p, p}, {1, 1},
                                                false, {0, 0}, 1, {true, false, false}));
    }
    if (ctx->needs_input_grad(1)) {
      dw = weight_grad(x, dy, K);
    }
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) {
      db = dy.sum({0, 2, 3});
    }
    return {dx, dw, db};
  }
};

void check(const at::Tensor& x, const at::Tensor& w, const at::Tensor* b) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat && x.dim() == 4 &&
                  x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "conv_train: channels-last float32 CPU activations");
  TORCH_CHECK(w.device().is_cpu() && w.scalar_type() == at::kFloat && w.dim() == 4 &&
                  w.size(1) == x.size(1) && w.size(2) == w.size(3) && w.size(2) % 2 == 1,
              "conv_train: a float32 [Co, Ci, K, K] weight, K odd, Ci the input's channels");
  TORCH_CHECK(x.size(1) % 8 == 0, "conv_train: input channels a multiple of 8");
  TORCH_CHECK(!b || (b->scalar_type() == at::kFloat && b->dim() == 1 && b->size(0) == w.size(0)),
              "conv_train: a float32 bias of the output channels");
}

}  // namespace

extern "C" {

// conv2d(x, w, bias, stride 1, padding (K - 1) / 2) with autograd, its weight gradient
// from this file's AVX2 kernel; `bias` null for none. The caller checks the processor
// has AVX2 and FMA. Returns a new tensor, or null with *err set.
void* fc_conv_train(const void* x, const void* w, const void* bias, char** err) {
  try {
    const auto& xt = *static_cast<const at::Tensor*>(x);
    const auto& wt = *static_cast<const at::Tensor*>(w);
    const auto* bt = static_cast<const at::Tensor*>(bias);
    check(xt, wt, bt);
    const std::optional<at::Tensor> b = bt ? std::optional<at::Tensor>(*bt) : std::nullopt;
    return new at::Tensor(ConvTrain::apply(xt, wt, b));
  } catch (const std::exception& e) {
    *err = message(e);
  } catch (...) {
    *err = strdup("unknown C++ exception");
  }
  return nullptr;
}

// dW alone, without autograd, for the tests: the weight gradient of conv2d(x, w, stride 1,
// padding (K - 1) / 2) at output gradient dy. Returns a new tensor, or null with *err set.
void* fc_conv_train_weight_grad(const void* x, const void* dy, int64_t K, char** err) {
  try {
    const auto& xt = *static_cast<const at::Tensor*>(x);
    const auto& dt = *static_cast<const at::Tensor*>(dy);
    TORCH_CHECK(dt.scalar_type() == at::kFloat && dt.dim() == 4 && dt.size(0) == xt.size(0) &&
                    dt.size(2) == xt.size(2) && dt.size(3) == xt.size(3) &&
                    dt.is_contiguous(at::MemoryFormat::ChannelsLast),
                "conv_train: a channels-last float32 output gradient of the input's sides");
    const at::Tensor w = at::empty({dt.size(1), xt.size(1), K, K}, xt.options());
    check(xt, w, nullptr);
    return new at::Tensor(weight_grad(xt, dt, K));
  } catch (const std::exception& e) {
    *err = message(e);
  } catch (...) {
    *err = strdup("unknown C++ exception");
  }
  return nullptr;
}

}  // extern "C"
