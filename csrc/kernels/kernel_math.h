// Math shared by the CPU and CUDA kernels of lenet_fast.
//
// Everything here is __host__ __device__ so that the CPU tests exercise the same arithmetic the GPU
// runs. The contents sit in an anonymous namespace on purpose: the CPU kernels are compiled once per
// instruction set (csrc/kernels/cpu/isa_*.cpp) and each copy must keep its own, ISA-specific instantiation
// rather than let the linker merge an AVX2 copy into code that runs on a plain x86-64 CPU.
#pragma once

#include <cstdint>

#include "variant.h"

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

// Scalar lane operations used by tanh_impl; csrc/kernels/cpu/simd.h provides the same for 8-wide vectors.
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
// absolute, 6-7 ulp of values just below 1), where an exponential form (a polynomial below
// |x| = 0.625, 1 - 2 / (e^{2|x|} + 1) above) gets 2 eps at about 2.5x the cost: this is 13
// operations with one division (conv1's forward at batch 64 on one thread: 374 us, 492 us with
// the exponential form).
// Well inside the project's accuracy rule (2x stock's error + 1e-6). NaN propagates (the clamp
// keeps it), +-inf gives +-1, -0 gives -0.
// The coefficients by degree (Triton's tanh reads them through lenet_fast._C.variants()); scalars,
// which device code may read as constants where it may not index a host array.
constexpr float kTanhClamp = 9.1f;
constexpr float kTanhP0 = 1.0f, kTanhP1 = 1.3374491e-01f, kTanhP2 = 3.4878296e-03f, kTanhP3 = 2.0481479e-05f,
                kTanhP4 = 1.3177902e-08f;
constexpr float kTanhQ0 = 1.0f, kTanhQ1 = 4.6707806e-01f, kTanhQ2 = 2.5847459e-02f, kTanhQ3 = 3.2729498e-04f,
                kTanhQ4 = 7.7042068e-07f;

template <class Ops>
LF_HD typename Ops::V tanh_impl(typename Ops::V x) {
  using V = typename Ops::V;
  const V hi = Ops::splat(kTanhClamp), lo = Ops::splat(-kTanhClamp);
  V t = x > hi ? hi : x;
  t = t < lo ? lo : t;
  const V z = t * t;
  V p = Ops::splat(kTanhP4);
  p = p * z + Ops::splat(kTanhP3);
  p = p * z + Ops::splat(kTanhP2);
  p = p * z + Ops::splat(kTanhP1);
  p = p * z + Ops::splat(kTanhP0);
  V q = Ops::splat(kTanhQ4);
  q = q * z + Ops::splat(kTanhQ3);
  q = q * z + Ops::splat(kTanhQ2);
  q = q * z + Ops::splat(kTanhQ1);
  q = q * z + Ops::splat(kTanhQ0);
  return t * p / q;
}

// ------------------------------------------------------------------------------------------------
// The network's variants (variant.h): kernels take the activation and pooling as template
// parameters; LeakyReLU's negative slope is a run-time float.

// The activation, as the stock module computes it, NaN propagating:
//   none        x
//   tanh        tanh_impl above
//   relu        x < 0 ? 0 : x                      (-0 stays -0)
//   leaky_relu  x > 0 ? x : slope x                (ATen's leaky_relu)
//   sigmoid     1/2 + tanh(x/2)/2: the same rational function, so within 1.8 eps of float64 in
//               absolute terms (6e-8 below 0.5; stock's 1 / (1 + e^-x) is relatively exact for
//               very negative x, this is absolutely exact to 2e-7: both well inside the accuracy rule)
template <Act A, class Ops>
LF_HD typename Ops::V act_forward(typename Ops::V x, float slope) {
  using V = typename Ops::V;
  const V zero = Ops::splat(0.0f);
  if constexpr (A == Act::kNone) {
    (void)slope, (void)zero;
    return x;
  } else if constexpr (A == Act::kTanh) {
    return tanh_impl<Ops>(x);
  } else if constexpr (A == Act::kRelu) {
    return x < zero ? zero : x;
  } else if constexpr (A == Act::kLeakyRelu) {
    return x > zero ? x : x * Ops::splat(slope);
  } else {
    const V half = Ops::splat(0.5f);
    return half * tanh_impl<Ops>(half * x) + half;
  }
}

// The activation's backward from its saved output y, in the stock backward's arithmetic:
//   none        g
//   tanh        g (1 - y^2)                        (tanh_backward)
//   relu        y <= 0 ? 0 : g                     (threshold_backward on the result)
//   leaky_relu  y > 0 ? g : slope g                (leaky_relu_backward; y > 0 iff x > 0 for slope >= 0)
//   sigmoid     g (1 - y) y                        (sigmoid_backward)
template <Act A, class Ops>
LF_HD typename Ops::V act_backward(typename Ops::V g, typename Ops::V y, float slope) {
  using V = typename Ops::V;
  const V zero = Ops::splat(0.0f), one = Ops::splat(1.0f);
  if constexpr (A == Act::kNone) {
    (void)y, (void)slope, (void)zero, (void)one;
    return g;
  } else if constexpr (A == Act::kTanh) {
    return g * (one - y * y);
  } else if constexpr (A == Act::kRelu) {
    return y <= zero ? zero : g;
  } else if constexpr (A == Act::kLeakyRelu) {
    return y > zero ? g : g * Ops::splat(slope);
  } else {
    return g * (one - y) * y;
  }
}

template <Act A>
LF_HD float act_f32(float x, float slope) { return act_forward<A, ScalarOps>(x, slope); }
template <Act A>
LF_HD float act_backward_f32(float g, float y, float slope) { return act_backward<A, ScalarOps>(g, y, slope); }

// Max pooling's rule for a window element v met after the running maximum m: v is taken when it
// is larger, or NaN (ATen's max_pool2d: the first maximum in window order, or the last NaN).
template <class V>
LF_HD auto max_takes(V v, V m) {
  return (v > m) | (v != v);
}

// A 2x2 window (0,0), (0,1), (1,0), (1,1) pooled: the average (ATen avg_pool2d's sum order) or the
// maximum (ATen max_pool2d's scan).
template <Pool P, class Ops>
LF_HD typename Ops::V pool4(typename Ops::V a, typename Ops::V b, typename Ops::V c, typename Ops::V d) {
  if constexpr (P == Pool::kAvg) {
    return (((a + b) + c) + d) * Ops::splat(0.25f);
  } else {
    typename Ops::V m = a;
    m = max_takes(b, m) ? b : m;
    m = max_takes(c, m) ? c : m;
    m = max_takes(d, m) ? d : m;
    return m;
  }
}

// The window element (0..3) max pooling takes, by the same scan as pool4<kMax>.
LF_HD int max_index4(float a, float b, float c, float d) {
  float m = a;
  int i = 0;
  if (max_takes(b, m)) m = b, i = 1;
  if (max_takes(c, m)) m = c, i = 2;
  if (max_takes(d, m)) m = d, i = 3;
  return i;
}

// The gradient at element `pos` of a pooling window from the pooled gradient g: a quarter each for
// the average; all of it to the element the maximum took (`taken`), none to the others.
template <Pool P>
LF_HD float pool_grad(float g, int pos, int taken) {
  if constexpr (P == Pool::kAvg) {
    (void)pos, (void)taken;
    return 0.25f * g;
  } else {
    return pos == taken ? g : 0.0f;
  }
}

// Window order (0,0), (0,1), (1,0), (1,1) and the sum order match ATen avg_pool2d.
LF_HD float avg4(float a, float b, float c, float d) { return pool4<Pool::kAvg, ScalarOps>(a, b, c, d); }

// The pooled gradient back through a 2x2/2 pool and the activation, at a conv output pixel: `pos`
// is its place in its window (0..3), `taken` the element max pooling took there, act the saved
// activation at the pixel. A pixel in a dropped odd last row or column (in_window false) gets 0.
template <Act A, Pool P>
LF_HD float act_pool_backward_f32(float g_pooled, float act, int pos, int taken, bool in_window, float slope) {
  return in_window ? act_backward_f32<A>(pool_grad<P>(g_pooled, pos, taken), act, slope) : 0.0f;
}

// act_pool_backward_f32 at pixel (yy, xx) of one saved activation plane `act` (row stride W): the
// pixel's window position, and for max pooling the element its window took, read from the plane.
template <Act A, Pool P>
LF_HD float act_pool_backward_at(float g_pooled, const float* act, int W, int yy, int xx, bool in_window, float slope) {
  int taken = 0;
  if (P == Pool::kMax && in_window) {
    const float* w0 = act + (yy & ~1) * W + (xx & ~1);
    taken = max_index4(w0[0], w0[1], w0[W], w0[W + 1]);
  }
  return act_pool_backward_f32<A, P>(g_pooled, act[yy * W + xx], (yy & 1) * 2 + (xx & 1), taken, in_window, slope);
}

}  // namespace
}  // namespace lenet_fast
