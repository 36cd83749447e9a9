// The CPU's whole-network training step (net_train.cpp), for the ops csrc/lenet5_train.cpp
// composes: the forward as one parallel region and the backward as two, in place of a region per
// layer op. Same kernels, same partial sums as the per-layer ops, so the same values bit for bit.
// The backward returns nothing when its gradient mask or saved tensors are not the ones it serves
// (x needs a gradient, a frozen layer, tensors that are not a fused forward's), and the caller then
// composes the per-layer ops. Arguments are checked by the caller.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <optional>
#include <tuple>
#include <vector>

#include "../checks.h"

namespace lenet_fast {
namespace cpu {

std::tuple<at::Tensor, std::vector<at::Tensor>> lenet5_forward_train_fused(
    const Lenet5Shape& s, const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
    const at::Tensor& w2, const at::Tensor& b2, const at::Tensor& f1w, const at::Tensor& f1b,
    const at::Tensor& f2w, const at::Tensor& f2b, const at::Tensor& f3w, const at::Tensor& f3b,
    int64_t padding, const Variant& v);

std::optional<std::vector<at::Tensor>> lenet5_backward_fused(const at::Tensor& grad, const at::Tensor& x,
                                                             const at::Tensor& w1, const at::Tensor& w2,
                                                             const at::Tensor& f1w, const at::Tensor& f2w,
                                                             const at::Tensor& f3w, at::TensorList saved,
                                                             int64_t padding, std::array<bool, 11> need,
                                                             const Variant& v);

}  // namespace cpu
}  // namespace lenet_fast
