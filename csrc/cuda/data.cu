// gather_normalize on CUDA: out[b, p] = normalize(images[index[b], p]), one thread per output
// element in a grid-stride loop. An out-of-range index trips a device-side assertion (checking
// on the host would cost a synchronisation per batch), as torch's own index ops do on CUDA.
#include <torch/library.h>

#include <vector>

#include "../checks.h"
#include "../kernel_math.h"
#include "launch.h"

namespace lenet_fast {
namespace cuda {
namespace {

__global__ void gather_normalize_kernel(const uint8_t* __restrict__ images,  // (n, row)
                                        const int64_t* __restrict__ index,   // (B)
                                        float* __restrict__ out,             // (B, row)
                                        int64_t n, int64_t B, int64_t row, float mean, float std) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < B * row;
       i += int64_t{blockDim.x} * gridDim.x) {
    const int64_t b = i / row, p = i % row, src = index[b];
    CUDA_KERNEL_ASSERT(src >= 0 && src < n && "lenet_fast::gather_normalize: index out of range");
    out[i] = (src >= 0 && src < n) ? normalize_u8(images[src * row + p], mean, std) : 0.0f;
  }
}

at::Tensor gather_normalize_cuda(const at::Tensor& images, const at::Tensor& index, double mean,
                                 double std) {
  const char* op = "gather_normalize";
  check_gather_normalize(op, images, index, std, at::kCUDA);
  const c10::cuda::CUDAGuard guard(images.device());
  const at::Tensor src = images.contiguous(), idx = index.contiguous();
  const int64_t n = src.size(0), B = idx.size(0), row = n ? src.numel() / n : 0;
  std::vector<int64_t> shape(images.sizes().begin(), images.sizes().end());
  shape[0] = B;
  at::Tensor out = at::empty(shape, images.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  gather_normalize_kernel<<<grid_for(B * row), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      src.data_ptr<uint8_t>(), idx.data_ptr<int64_t>(), out.data_ptr<float>(), n, B, row,
      static_cast<float>(mean), static_cast<float>(std));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace
}  // namespace cuda
}  // namespace lenet_fast

TORCH_LIBRARY_IMPL(lenet_fast, CUDA, m) {
  m.impl("gather_normalize", &lenet_fast::cuda::gather_normalize_cuda);
}
