// Float vectors of L lanes through GCC/Clang vector extensions, L = 4, 8 or 16: the kernel
// families take L as a template parameter and reach the vectors only through Lanes<L>. Compiled
// under the `#pragma GCC target` of an isa_*.cpp they become single registers (AVX2 + FMA: 8
// lanes; AVX-512: 16 lanes, 8 in the families that stay at 8); in the baseline build an 8-lane
// vector is a pair of SSE registers. Arithmetic stays in the vector extensions, the same source for
// every ISA; intrinsics appear only here, for the masked loads and stores of a vector's tail, where
// the ISA has them:
//   LF_CPU_ISA_AVX512  AVX-512F/VL masked loads and stores (fault-suppressing), 8 and 16 lanes
//   LF_CPU_ISA_AVX2    AVX vmaskmovps loads, 8 lanes (stores lane by lane)
//   neither            a lane-by-lane loop
// The isa_*.cpp file defines its macro before including kernels_impl.h (one ISA per translation
// unit: everything here has internal linkage).
#pragma once

#include "../kernel_math.h"

#if defined(LF_CPU_ISA_AVX512) || defined(LF_CPU_ISA_AVX2)
#include <immintrin.h>
#endif

namespace lenet_fast {
namespace {

typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

template <int L>
struct Lanes;

// What every lane count shares; D is the Lanes<L> specialisation (V, I: its vector types).
// Splat is an initializer list, not `V{} + s`: adding 0.0f is not a no-op in IEEE arithmetic
// (-0 + 0 = +0), so the compiler would emit a scalar add before every broadcast.
template <int L, class Vf, class Vi>
struct LanesBase {
  static constexpr int kLanes = L;
  using V = Vf;  // also the Ops interface of kernel_math.h (V, splat): tanh_impl<> etc.
  using I = Vi;
  static V splat(float s) {
    if constexpr (L == 4) return V{s, s, s, s};
    else if constexpr (L == 8) return V{s, s, s, s, s, s, s, s};
    else return V{s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s};
  }
  static V load(const float* p) {
    V v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
  }
  static I load_i(const int32_t* p) {
    I v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(float* p, V v) { __builtin_memcpy(p, &v, sizeof v); }
  // Lanes [0, n) of p, zeros above, reading nothing past p + n (n in [0, L]).
  static V load_n_generic(const float* p, int64_t n) {
    V v = V{};
    for (int64_t l = 0; l < n; ++l) v[l] = p[l];
    return v;
  }
  static void store_n_generic(float* p, V v, int64_t n) {
    for (int64_t l = 0; l < n; ++l) p[l] = v[l];
  }
};

template <>
struct Lanes<4> : LanesBase<4, v4f, v4i> {
#if defined(LF_CPU_ISA_AVX512)
  static V load_n(const float* p, int64_t n) { return V(_mm_maskz_loadu_ps(static_cast<__mmask8>((1u << n) - 1), p)); }
#else
  static V load_n(const float* p, int64_t n) { return load_n_generic(p, n); }
#endif
};

template <>
struct Lanes<8> : LanesBase<8, v8f, v8i> {
  static float hsum(V v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }
#if defined(LF_CPU_ISA_AVX512)
  static V load_n(const float* p, int64_t n) {
    return V(_mm256_maskz_loadu_ps(static_cast<__mmask8>((1u << n) - 1), p));
  }
  static void store_n(float* p, V v, int64_t n) {
    _mm256_mask_storeu_ps(p, static_cast<__mmask8>((1u << n) - 1), __m256(v));
  }
#elif defined(LF_CPU_ISA_AVX2)
  static __m256i mask(int64_t n) {
    static constexpr int32_t kMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMask + 8 - n));
  }
  static V load_n(const float* p, int64_t n) { return V(_mm256_maskload_ps(p, mask(n))); }
  // Not vmaskmovps: a masked store is microcoded and slow on AMD's cores (AVX-512's is not).
  static void store_n(float* p, V v, int64_t n) { store_n_generic(p, v, n); }
#else
  static V load_n(const float* p, int64_t n) { return load_n_generic(p, n); }
  static void store_n(float* p, V v, int64_t n) { store_n_generic(p, v, n); }
#endif
};

#if defined(LF_CPU_ISA_AVX512)
template <>
struct Lanes<16> : LanesBase<16, v16f, v16i> {
  static float hsum(V v) {
    const v8f lo = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
    const v8f hi = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    return Lanes<8>::hsum(lo + hi);
  }
  static V load_n(const float* p, int64_t n) {
    return V(_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p));
  }
  static void store_n(float* p, V v, int64_t n) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), __m512(v));
  }
};
#endif

// The even and odd lanes of v (L/2 each): a 2x2 pooling window's left and right columns.
template <int L>
typename Lanes<L / 2>::V even_lanes(typename Lanes<L>::V v) {
  if constexpr (L == 8) return __builtin_shufflevector(v, v, 0, 2, 4, 6);
  else return __builtin_shufflevector(v, v, 0, 2, 4, 6, 8, 10, 12, 14);
}
template <int L>
typename Lanes<L / 2>::V odd_lanes(typename Lanes<L>::V v) {
  if constexpr (L == 8) return __builtin_shufflevector(v, v, 1, 3, 5, 7);
  else return __builtin_shufflevector(v, v, 1, 3, 5, 7, 9, 11, 13, 15);
}

// Whether this ISA's masked loads and stores are cheap enough to end a short row with one masked
// vector rather than scalar code (AVX-512's are; AVX's vmaskmovps is slow on AMD).
#if defined(LF_CPU_ISA_AVX512)
inline constexpr bool kCheapMasks = true;
#else
inline constexpr bool kCheapMasks = false;
#endif

// The 8-lane names the elementwise kernels (pool_act.h), which stay at 8 lanes on every ISA, use.
using Vec8Ops = Lanes<8>;
inline v8f splat8(float s) { return Lanes<8>::splat(s); }
inline v8f load8(const float* p) { return Lanes<8>::load(p); }
inline void store8(float* p, v8f v) { Lanes<8>::store(p, v); }
inline float hsum8(v8f v) { return Lanes<8>::hsum(v); }

}  // namespace
}  // namespace lenet_fast
