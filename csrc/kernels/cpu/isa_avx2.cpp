// The CPU kernels compiled for AVX2 + FMA (x86-64-v3), chosen at run time where the CPU has them.
// Only the kernels get the target: the default build stays portable (no -march=native).
#include <cstdint>
#include <cstring>

#include "kernels.h"

#define LF_CPU_ISA_AVX2 1  // simd.h: AVX masked loads and stores for vector tails

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

#include "kernels_impl.h"

namespace lenet_fast {
namespace cpu {

const Kernels* kernels_avx2() {
  static const Kernels k = make_kernels<8>("avx2");
  return &k;
}

}  // namespace cpu
}  // namespace lenet_fast

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else  // not x86-64

namespace lenet_fast {
namespace cpu {
const Kernels* kernels_avx2() { return nullptr; }
}  // namespace cpu
}  // namespace lenet_fast

#endif
