// 8-wide float vectors through GCC/Clang vector extensions. Compiled under `#pragma GCC target`
// in csrc/kernels/cpu/isa_avx2.cpp they become single AVX2 registers with FMA; in the baseline build they
// become pairs of SSE registers. No intrinsics, so the same source serves every x86-64 level (and
// other architectures, through the compiler's generic lowering).
#pragma once

#include "../kernel_math.h"

namespace lenet_fast {
namespace {

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

// An initializer, not `v8f{} + s`: adding 0.0f is not a no-op in IEEE arithmetic (-0 + 0 = +0), so
// the compiler would emit a scalar add before every broadcast.
LF_HD v8f splat8(float s) { return v8f{s, s, s, s, s, s, s, s}; }
LF_HD v8f load8(const float* p) {
  v8f v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
LF_HD void store8(float* p, v8f v) { __builtin_memcpy(p, &v, sizeof v); }
LF_HD float hsum8(v8f v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

// The vector twin of ScalarOps in kernel_math.h, so tanh_impl<> runs the identical arithmetic.
struct Vec8Ops {
  using V = v8f;
  LF_HD static v8f splat(float s) { return splat8(s); }
};

}  // namespace
}  // namespace lenet_fast
