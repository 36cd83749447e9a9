// gather_normalize on the CPU: out[b] = normalize(images[index[b]]), threads over the batch.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "ops/checks.h"
#include "kernels/kernel_math.h"

namespace lenet_fast {
namespace {

at::Tensor gather_normalize_cpu(const at::Tensor& images, const at::Tensor& index, double mean,
                                double std) {
  const char* op = "gather_normalize";
  check_gather_normalize(op, images, index, std, at::kCPU);
  const at::Tensor src = images.contiguous(), idx = index.contiguous();
  const int64_t n = src.size(0), B = idx.size(0), row = n ? src.numel() / n : 0;
  const int64_t* ip = idx.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b)
    LF_CHECK(ip[b] >= 0 && ip[b] < n, op, "index[", b, "] = ", ip[b], " is out of range for ", n,
             " images");
  std::vector<int64_t> shape(images.sizes().begin(), images.sizes().end());
  shape[0] = B;
  at::Tensor out = at::empty(shape, images.options().dtype(at::kFloat));
  const uint8_t* sp = src.data_ptr<uint8_t>();
  float* op_ = out.data_ptr<float>();
  const float m = static_cast<float>(mean), s = static_cast<float>(std);
  at::parallel_for(0, B, 64, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const uint8_t* r = sp + ip[b] * row;
      float* o = op_ + b * row;
      for (int64_t p = 0; p < row; ++p) o[p] = normalize_u8(r[p], m, s);
    }
  });
  return out;
}

}  // namespace
}  // namespace lenet_fast

TORCH_LIBRARY_IMPL(lenet_fast, CPU, m) {
  m.impl("gather_normalize", &lenet_fast::gather_normalize_cpu);
}
