// What every CPU kernel family (conv_forward.h, conv_backward.h, linear.h, pool_act.h) shares:
// the vector types, the inlining macros, the activation on a vector. Internal linkage throughout
// (kernel_math.h says why); included only through kernels_impl.h, once per ISA.
#pragma once

#include "kernels.h"
#include "simd.h"

#define LF_INLINE inline __attribute__((always_inline))
#define LF_UNROLL _Pragma("GCC unroll 32")  // register tiles have up to 20 rows

namespace lenet_fast {
namespace cpu {
namespace {

LF_INLINE int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

using Vec4Ops = Lanes<4>;

// The activation A on every lane of an L-lane vector: kernel_math.h's arithmetic, the same as the
// scalar and CUDA versions.
template <int L, Act A>
LF_INLINE typename Lanes<L>::V act_lanes(typename Lanes<L>::V x, float slope) {
  return lenet_fast::act_forward<A, Lanes<L>>(x, slope);
}
template <Act A>
LF_INLINE v8f act8(v8f x, float slope) { return act_lanes<8, A>(x, slope); }

}  // namespace
}  // namespace cpu
}  // namespace lenet_fast
