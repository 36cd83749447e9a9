// What every CUDA kernel file of lenet_fast includes instead of torch: the CUDA runtime under nvcc,
// or the CPU harness csrc/cudasim/ when LENET_FAST_CUDASIM is defined (CI runs the kernels that
// way). The only CUDA syntax a C++ compiler cannot parse hides behind two macros:
//
//   LF_DYNAMIC_SHARED(float, smem);                        extern __shared__ float smem[];
//   LF_LAUNCH(kernel, grid, block, bytes, stream)(args);   kernel<<<grid, block, bytes, stream>>>(args);
//
// and LF_DEVICE_ASSERT(cond) is a device-side assertion on both (cudaErrorAssert when it fails).
#pragma once

#include <algorithm>
#include <cstdint>

#if defined(LENET_FAST_CUDASIM)
#include "../../cudasim/device.h"
#define LF_DYNAMIC_SHARED(type, name) type* name = ::cudasim::dynamic_shared<type>()
#define LF_LAUNCH(kernel, grid, block, bytes, stream) \
  ::cudasim::detail::make_launch(kernel, grid, block, bytes, stream, __FILE__, __LINE__)
#define LF_DEVICE_ASSERT(cond) LF_SIM_DEVICE_ASSERT(cond, #cond)
#else
#include <cuda_runtime.h>

#include <cassert>
#if defined(NDEBUG)  // assert.h then declares no __assert_fail; CUDA has it on both sides
extern "C" {
#if defined(__CUDA_ARCH__)
__host__ __device__
#endif
    void
    __assert_fail(const char* assertion, const char* file, unsigned int line, const char* function) noexcept
    __attribute__((__noreturn__));
}
#endif
#define LF_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#define LF_LAUNCH(kernel, grid, block, bytes, stream) kernel<<<grid, block, bytes, stream>>>
// As c10's CUDA_KERNEL_ASSERT (checked with NDEBUG too): the launch fails with cudaErrorAssert.
#define LF_DEVICE_ASSERT(cond)                                                                   \
  do {                                                                                           \
    if (!(cond)) __assert_fail(#cond, __FILE__, static_cast<unsigned int>(__LINE__), __func__); \
  } while (0)
#endif

namespace lenet_fast {
namespace cuda {

constexpr int kThreads = 256;

// p[0] = a, p[1] = b as one 8-byte store where p is 8-byte aligned (a warp writing pairs at a
// stride of 2 floats then moves whole sectors), else as two.
__device__ __forceinline__ void store2(float* p, float a, float b) {
  if ((reinterpret_cast<uintptr_t>(p) & 7) == 0) {
    *reinterpret_cast<float2*>(p) = make_float2(a, b);
  } else {
    p[0] = a;
    p[1] = b;
  }
}

// Blocks for a grid-stride loop over n items (the loop covers whatever the cap leaves out).
inline unsigned int grid_for(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned int>(std::clamp<int64_t>(blocks, 1, 65535 * 16));
}

}  // namespace cuda
}  // namespace lenet_fast
