// What every CPU kernel family (conv_forward.h, conv_backward.h, linear.h, pool_act.h) shares:
// the vector types, the inlining macros, the activation on 8 lanes. Internal linkage throughout
// (kernel_math.h says why); included only through kernels_impl.h, once per ISA.
#pragma once

#include "kernels.h"
#include "simd.h"

#define LF_INLINE inline __attribute__((always_inline))
#define LF_UNROLL _Pragma("GCC unroll 16")

namespace lenet_fast {
namespace cpu {
namespace {

LF_INLINE int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

struct Vec4Ops {
  using V = v4f;
  LF_INLINE static v4f splat(float s) { return v4f{s, s, s, s}; }
};

template <Act A>
LF_INLINE v8f act8(v8f x, float slope) { return lenet_fast::act_forward<A, Vec8Ops>(x, slope); }

}  // namespace
}  // namespace cpu
}  // namespace lenet_fast
