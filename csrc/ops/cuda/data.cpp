// gather_normalize on CUDA, torch side (kernel in kernels/cuda/data.cu).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <vector>

#include "ops/cuda/context.h"

namespace lenet_fast {
namespace cuda {

at::Tensor gather_normalize_cuda(const at::Tensor& images, const at::Tensor& index, double mean, double std) {
  const char* op = "gather_normalize";
  check_gather_normalize(op, images, index, std, device_type());
  const Guard guard(images);
  const at::Tensor src = images.contiguous(), idx = index.contiguous();
  const int64_t n = src.size(0), B = idx.size(0), row = n ? src.numel() / n : 0;
  std::vector<int64_t> shape(images.sizes().begin(), images.sizes().end());
  shape[0] = B;
  at::Tensor out = new_output(shape, images.options().dtype(at::kFloat));
  check_launch(op, launch_gather_normalize(src.numel() ? src.data_ptr<uint8_t>() : nullptr,
                                           idx.numel() ? idx.data_ptr<int64_t>() : nullptr, mut(out), n, B, row,
                                           static_cast<float>(mean), static_cast<float>(std), stream()));
  return out;
}


void register_data(torch::Library& m) {
  m.impl("gather_normalize", &gather_normalize_cuda);
}

}  // namespace cuda
}  // namespace lenet_fast
