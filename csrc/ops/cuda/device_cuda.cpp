// The CUDA build's flavour of the CUDA glue (context.h): CUDA tensors, the current stream, and the
// op implementations registered for the CUDA dispatch key. The simulated build compiles
// cudasim/library.cpp in this file's place.
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "ops/cuda/context.h"

namespace lenet_fast {
namespace cuda {

at::DeviceType device_type() { return at::kCUDA; }

cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream(); }

at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) { return at::empty(sizes, options); }

void check_launch(const char* op, cudaError_t err) {
  if (err != cudaSuccess) LF_CHECK(false, op, "CUDA kernel launch failed: ", cudaGetErrorString(err));
}

const char* op_namespace() { return "lenet_fast"; }

}  // namespace cuda
}  // namespace lenet_fast

TORCH_LIBRARY_IMPL(lenet_fast, CUDA, m) { lenet_fast::cuda::register_ops(m); }
