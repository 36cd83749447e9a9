// Argument checks of gather_normalize, shared by its CPU and CUDA implementations.
#pragma once

#include "checks.h"

namespace lenet_fast {

inline void check_gather_normalize(const char* op, const at::Tensor& images, const at::Tensor& index,
                                   double std, at::DeviceType kind) {
  LF_CHECK(images.defined() && index.defined(), op, "expected images and index to be tensors");
  LF_CHECK(images.scalar_type() == at::kByte, op, "expected images to be uint8 (the raw dataset), got ",
           images.scalar_type());
  LF_CHECK(images.dim() >= 1, op, "expected images to have a leading sample dimension, got a 0-D tensor");
  LF_CHECK(index.scalar_type() == at::kLong && index.dim() == 1, op,
           "expected index to be a 1-D int64 tensor of sample numbers, got ", index.scalar_type(),
           " of shape ", index.sizes());
  LF_CHECK(std != 0.0, op, "expected a nonzero std, got 0");
  check_devices(op, kind, {{"images", &images}, {"index", &index}});
}

}  // namespace lenet_fast
