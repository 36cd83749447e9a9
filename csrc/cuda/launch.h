// Helpers shared by the CUDA launchers: device guard + current stream, grid sizes, shared-memory
// budget. Include c10/cuda headers only: ATen/cuda/CUDAContext.h drags in cuSPARSE headers.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>

#include "../checks.h"

namespace lenet_fast {
namespace cuda {

constexpr int kThreads = 256;
// Every kernel keeps to the 48 KB of shared memory a block gets without opting in.
constexpr int64_t kSharedFloats = 48 * 1024 / sizeof(float);

// Blocks for a grid-stride loop over n items (the loop covers whatever the cap leaves out).
inline unsigned int grid_for(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned int>(std::clamp<int64_t>(blocks, 1, 65535 * 16));
}

inline void check_int32(const char* op, const char* what, int64_t v) {
  LF_CHECK(v < (int64_t{1} << 31), op, what, " of ", v, " elements is too large for one image's "
           "32-bit indexing in these kernels; split the batch or the channels");
}

}  // namespace cuda
}  // namespace lenet_fast
