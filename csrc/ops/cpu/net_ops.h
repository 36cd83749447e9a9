// The CPU's whole-network training step (net_train.cpp), for the ops ops/lenet5_train.cpp
// implements: the forward as one parallel region and the backward as two, in place of a region per
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

#include "ops/lenet5.h"

namespace lenet_fast {
namespace cpu {

// The logits and what backward needs (Lenet5Saved's order); s is check_lenet5's. Serves every call
// (the optional is FusedForwardTrain's signature).
std::optional<std::tuple<at::Tensor, std::vector<at::Tensor>>> lenet5_forward_train_fused(
    const Lenet5Shape& s, const at::Tensor& x, const Lenet5Params& p, int64_t padding, const Variant& v);

std::optional<std::vector<at::Tensor>> lenet5_backward_fused(const at::Tensor& grad, const at::Tensor& x,
                                                             const Lenet5Weights& w, const Lenet5Saved& saved,
                                                             int64_t padding, const Lenet5Mask& need,
                                                             const Variant& v);

}  // namespace cpu
}  // namespace lenet_fast
