// Math shared by the CPU and CUDA kernels of lenet_fast.
//
// Everything here is __host__ __device__ so that the CPU tests exercise the same arithmetic the GPU
// runs. The contents sit in an anonymous namespace on purpose: the CPU kernels are compiled once per
// instruction set (csrc/cpu/isa_*.cpp) and each copy must keep its own, ISA-specific instantiation
// rather than let the linker merge an AVX2 copy into code that runs on a plain x86-64 CPU.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define LF_HD __host__ __device__ __forceinline__
#else
#define LF_HD inline __attribute__((always_inline))
#endif

namespace lenet_fast {
namespace {

constexpr int kKernel = 5;                   // every convolution here is 5x5, stride 1
constexpr int kTaps = kKernel * kKernel;     // taps per (out, in) channel pair
constexpr int kMaxPad = kKernel - 1;         // padding 0..4 (4 is the input-gradient of padding 0)

// Output extent of a 5x5, stride-1 convolution with symmetric zero padding.
LF_HD int64_t conv_out_extent(int64_t in, int64_t pad) { return in + 2 * pad - (kKernel - 1); }

// One uint8 pixel as torchvision's ToTensor() + Normalize(mean, std) produce it, bit for bit:
// a float32 division by 255, then a subtraction and a division (no fused multiply-add to change
// the rounding: there is no product to contract).
LF_HD float normalize_u8(uint8_t v, float mean, float std) {
  return (static_cast<float>(v) / 255.0f - mean) / std;
}

// Scalar lane operations used by tanh_impl; csrc/cpu/simd.h provides the same for 8-wide vectors.
struct ScalarOps {
  using V = float;
  LF_HD static float splat(float s) { return s; }
  // 2^n for an integral-valued n in [-126, 127].
  LF_HD static float pow2i(float n) {
    const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
#if defined(__CUDA_ARCH__)
    return __int_as_float(bits);
#else
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
#endif
  }
};

// e^v for v in [0, 88]: v = n ln2 + r with |r| <= ln2/2, e^r by its degree-7 Taylor polynomial
// (truncation error < 6e-9 relative), then scaled by 2^n through the exponent bits.
template <class Ops>
LF_HD typename Ops::V exp_nonneg(typename Ops::V v) {
  using V = typename Ops::V;
  const V round_magic = Ops::splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const V n = (v * Ops::splat(1.44269504088896341f) + round_magic) - round_magic;
  // ln2 split in two so that n * ln2_hi is exact (Cody and Waite).
  const V r = (v - n * Ops::splat(0.693359375f)) - n * Ops::splat(-2.12194440e-4f);
  V p = Ops::splat(1.0f / 5040.0f);
  p = p * r + Ops::splat(1.0f / 720.0f);
  p = p * r + Ops::splat(1.0f / 120.0f);
  p = p * r + Ops::splat(1.0f / 24.0f);
  p = p * r + Ops::splat(1.0f / 6.0f);
  p = p * r + Ops::splat(0.5f);
  p = p * r + Ops::splat(1.0f);
  p = p * r + Ops::splat(1.0f);
  return p * Ops::pow2i(n);
}

// tanh in float32, within ~2 ulp of the correctly rounded result, with no branches so that the CPU
// version vectorises:
//   |x| <  0.625: x + x^3 P(x^2), P fitted for relative error (< 1 ulp) on [0, 0.625];
//   |x| >= 0.625: sign(x) (1 - 2 / (e^{2|x|} + 1)), where the cancellation costs at most one bit.
// NaN propagates through the polynomial branch; +-inf gives +-1 like torch.tanh.
template <class Ops>
LF_HD typename Ops::V tanh_impl(typename Ops::V x) {
  using V = typename Ops::V;
  const V zero = Ops::splat(0.0f);
  const V ax = x < zero ? -x : x;
  const V z = x * x;
  V p = Ops::splat(0.0021437746472656727f);
  p = p * z + Ops::splat(-0.008178940042853355f);
  p = p * z + Ops::splat(0.021701669320464134f);
  p = p * z + Ops::splat(-0.05394702032208443f);
  p = p * z + Ops::splat(0.13333208858966827f);
  p = p * z + Ops::splat(-0.3333333134651184f);
  const V small = x + x * z * p;
  V v = ax + ax;
  v = v < Ops::splat(88.0f) ? v : Ops::splat(88.0f);  // also maps NaN to 88: no NaN reaches pow2i
  const V e = exp_nonneg<Ops>(v);
  const V big = Ops::splat(1.0f) - Ops::splat(2.0f) / (e + Ops::splat(1.0f));
  const V big_signed = x < zero ? -big : big;
  return ax >= Ops::splat(0.625f) ? big_signed : small;
}

LF_HD float tanh_f32(float x) { return tanh_impl<ScalarOps>(x); }

// d/dx tanh from the saved output y: g * (1 - y^2)  (tiny-cuda-nn's form).
LF_HD float tanh_backward_f32(float g, float y) { return g * (1.0f - y * y); }

// Gradient of a 2x2/2 average pool (floor mode) followed back through tanh, at input pixel (y, x):
// the pooled gradient is spread as 1/4 to each pixel of its window; pixels in a dropped odd last
// row or column get 0.
LF_HD float tanh_pool_backward_f32(float g_pooled, float act, bool in_window) {
  return in_window ? tanh_backward_f32(0.25f * g_pooled, act) : 0.0f;
}

// Window order (0,0), (0,1), (1,0), (1,1) and the sum order match ATen avg_pool2d.
LF_HD float avg4(float a, float b, float c, float d) { return (((a + b) + c) + d) * 0.25f; }

}  // namespace
}  // namespace lenet_fast
