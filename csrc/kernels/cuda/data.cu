// gather_normalize's CUDA kernel and launcher: out[b, p] = normalize(images[index[b], p]), one
// thread per output element in a grid-stride loop. An out-of-range index trips a device-side
// assertion (checking on the host would cost a synchronisation per batch), as torch's own index
// ops do on CUDA. No torch here: the file builds under nvcc and under the CPU harness.
#include "../kernel_math.h"
#include "device.h"
#include "launchers.h"

namespace lenet_fast {
namespace cuda {
namespace {

__global__ void __launch_bounds__(kThreads) gather_normalize_kernel(const uint8_t* __restrict__ images,  // (n, row)
                                        const int64_t* __restrict__ index,   // (B)
                                        float* __restrict__ out,             // (B, row)
                                        int64_t n, int64_t B, int64_t row, float mean, float std) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < B * row;
       i += int64_t{blockDim.x} * gridDim.x) {
    const int64_t b = i / row, p = i % row, src = index[b];
    LF_DEVICE_ASSERT(src >= 0 && src < n);
    out[i] = normalize_u8(images[src * row + p], mean, std);
  }
}

}  // namespace

cudaError_t launch_gather_normalize(const uint8_t* images, const int64_t* index, float* out, int64_t n,
                                    int64_t B, int64_t row, float mean, float std, cudaStream_t stream) {
  if (B * row == 0) return cudaSuccess;
  LF_LAUNCH(gather_normalize_kernel, grid_for(B * row), kThreads, 0, stream)(images, index, out, n, B, row, mean, std);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace lenet_fast
