// Math shared by the CPU and CUDA kernels of lenet_fast.
//
// Everything here is __host__ __device__ so that the CPU tests exercise the same arithmetic the GPU
// runs. The contents sit in an anonymous namespace on purpose: the CPU kernels are compiled once per
// instruction set (csrc/cpu/isa_*.cpp) and each copy must keep its own, ISA-specific instantiation
// rather than let the linker merge an AVX2 copy into code that runs on a plain x86-64 CPU.
#pragma once

#include <cstdint>

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
};

// tanh in float32 as one rational function, with no branches so that the CPU version vectorises:
//   tanh(x) ~ t P(t^2) / Q(t^2),  t = x clamped to [-9.1, 9.1],
// P and Q of degree 4, fitted here (iteratively reweighted least squares on the relative error over
// [0, 9.1]: 2.3e-8 in exact arithmetic). Beyond 9.1, tanh rounds to +-1 in float32 and so does
// this. Evaluated in float32 the rounding of P and Q dominates: within 3.5 eps |tanh(x)| of
// float64 (every float32 in [4, 9.2), where it is largest: 2.8 with FMA, 3.3 without; about 3.9e-7
// absolute, 6-7 ulp of values just below 1), against 2 eps for the exponential form it replaced
// (a polynomial below |x| = 0.625, 1 - 2 / (e^{2|x|} + 1) above) at about 2.5x the cost: this is
// 13 operations with one division (conv1's forward at batch 64 on one thread: 492 -> 374 us).
// Well inside the project's accuracy rule (2x stock's error + 1e-6). NaN propagates (the clamp
// keeps it), +-inf gives +-1, -0 gives -0.
template <class Ops>
LF_HD typename Ops::V tanh_impl(typename Ops::V x) {
  using V = typename Ops::V;
  const V hi = Ops::splat(9.1f), lo = Ops::splat(-9.1f);
  V t = x > hi ? hi : x;
  t = t < lo ? lo : t;
  const V z = t * t;
  V p = Ops::splat(1.3177902e-08f);
  p = p * z + Ops::splat(2.0481479e-05f);
  p = p * z + Ops::splat(3.4878296e-03f);
  p = p * z + Ops::splat(1.3374491e-01f);
  p = p * z + Ops::splat(1.0f);
  V q = Ops::splat(7.7042068e-07f);
  q = q * z + Ops::splat(3.2729498e-04f);
  q = q * z + Ops::splat(2.5847459e-02f);
  q = q * z + Ops::splat(4.6707806e-01f);
  q = q * z + Ops::splat(1.0f);
  return t * p / q;
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
