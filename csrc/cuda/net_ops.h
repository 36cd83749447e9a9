// The fused whole-network path of the CUDA build (torch_ops.cpp, kernels in lenet5.cu), for the
// training ops that csrc/lenet5_train.cpp composes: each returns nothing when the call's shapes or
// gradient mask are not the ones the fused kernels serve, and the caller then composes the
// per-layer ops. Arguments are checked by the caller.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <optional>
#include <tuple>
#include <vector>

#include "../variant.h"

namespace lenet_fast {
namespace cuda {

std::optional<std::tuple<at::Tensor, std::vector<at::Tensor>>> lenet5_forward_train_fused(
    const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
    const at::Tensor& f1w, const at::Tensor& f1b, const at::Tensor& f2w, const at::Tensor& f2b,
    const at::Tensor& f3w, const at::Tensor& f3b, int64_t padding, const Variant& v);

std::optional<std::vector<at::Tensor>> lenet5_backward_fused(const at::Tensor& grad, const at::Tensor& x,
                                                             const at::Tensor& w1, const at::Tensor& w2,
                                                             const at::Tensor& f1w, const at::Tensor& f2w,
                                                             const at::Tensor& f3w, at::TensorList saved,
                                                             int64_t padding, std::array<bool, 11> need,
                                                             const Variant& v);

}  // namespace cuda
}  // namespace lenet_fast
