// What the fused CPU kernels of src/model/fast/ (bn_pool_relu.cpp, bn_act.cpp,
// first_block.cpp) share: how their loops are compiled, and float32 and bf16 elements
// read and written as float32.
#pragma once

#include <c10/util/BFloat16.h>

#include <cstdint>
#include <cstring>

// Each inner loop runs over the channels, contiguous in channels-last memory; it is
// compiled for AVX2 and the baseline, picked at load. Not for AVX-512: on an Intel Xeon
// with AMX, 512-bit code in these passes made the AMX convolutions around them 1.2-1.9x
// slower (oneDNN's verbose timings), and ATen runs its own elementwise kernels in AVX2
// there too. Vectorising over the channels keeps every channel's sums in the same order
// on any processor.
#define FC_CLONES __attribute__((target_clones("avx2", "default")))
#define FC_INLINE inline __attribute__((always_inline))

namespace flarecast_kernel {

FC_INLINE float load(const float* p, int64_t i) { return p[i]; }
FC_INLINE float load(const c10::BFloat16* p, int64_t i) {
  uint32_t bits = uint32_t(reinterpret_cast<const uint16_t*>(p)[i]) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
FC_INLINE void store(float* p, int64_t i, float v) { p[i] = v; }
// Round to nearest even, as c10::BFloat16 does; a NaN stays a (quiet) NaN.
FC_INLINE void store(c10::BFloat16* p, int64_t i, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  rounded = (bits & 0x7fffffffu) > 0x7f800000u ? ((bits >> 16) | 0x40u) : rounded;
  reinterpret_cast<uint16_t*>(p)[i] = uint16_t(rounded);
}

// `v` as an element of T holds it: rounded to bf16, or unchanged for float32.
FC_INLINE float rounded(float v, const float*) { return v; }
FC_INLINE float rounded(float v, const c10::BFloat16*) {
  c10::BFloat16 b;
  store(&b, 0, v);
  return load(&b, 0);
}

}  // namespace flarecast_kernel
