// The CPU kernels compiled for AVX-512 (x86-64-v4: AVX-512F/BW/DQ/VL, with AVX2 + FMA), 16 lanes
// per vector in the families that take a lane count, masked loads and stores for vector tails;
// chosen at run time where the CPU has them. Only the kernels get the target: the default build
// stays portable (no -march=native).
#include <cstdint>
#include <cstring>

#include "kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LF_CPU_ISA_AVX512 1  // simd.h: Lanes<16> and AVX-512 masked tails
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,bmi,bmi2,lzcnt,movbe,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512cd"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,bmi,bmi2,lzcnt,movbe,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512cd")
#endif

#include "kernels_impl.h"

namespace lenet_fast {
namespace cpu {

const Kernels* kernels_avx512() {
  static const Kernels k = make_kernels<16>("avx512");
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
const Kernels* kernels_avx512() { return nullptr; }
}  // namespace cpu
}  // namespace lenet_fast

#endif
