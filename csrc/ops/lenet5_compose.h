// LeNet-5's training forward and backward composed from the per-layer ops: the path for what the
// whole-network kernels do not serve (other shapes, gradient masks other than a training step's).
// Device-generic: the layers are called through the dispatcher (below autograd: a C++ dispatch
// each, not a trip through Python) on the ops of one library, `lenet_fast` or the simulated CUDA
// build's `lenet_fast_cudasim`, so each reaches the kernels of the device its tensors are on.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "ops/lenet5.h"

namespace lenet_fast {

class Lenet5Layers {
 public:
  explicit Lenet5Layers(const std::string& ns);  // the op library: "lenet_fast" or "lenet_fast_cudasim"

  // conv1 -> act -> pool -> conv2 -> act -> pool -> fc1 -> act -> fc2 -> act -> fc3: the logits and
  // what backward needs (Lenet5Saved's order).
  std::tuple<at::Tensor, std::vector<at::Tensor>> forward_train(const at::Tensor& x, const Lenet5Params& p,
                                                                int64_t padding, const VariantArgs& v) const;

  // The gradients of x and the parameters where need says so (empty tensors elsewhere). Gradients
  // flow from the logits down; the walk stops below the deepest tensor that needs a gradient (a
  // frozen feature extractor costs no convolution backward), and a layer's weight-gradient kernel
  // runs only when its weight or bias needs one.
  std::vector<at::Tensor> backward(const at::Tensor& grad, const at::Tensor& x, const Lenet5Weights& w,
                                   const Lenet5Saved& saved, int64_t padding, const Lenet5Mask& need,
                                   const VariantArgs& v) const;

 private:
  using T = at::Tensor;
  using TT = std::tuple<at::Tensor, at::Tensor>;
  using S = c10::string_view;
  c10::TypedOperatorHandle<TT(const T&, const T&, const T&, int64_t, bool, S, S, double)> conv_act_pool_;
  c10::TypedOperatorHandle<T(const T&, const T&, const T&, S, double)> linear_act_;
  c10::TypedOperatorHandle<T(const T&, const T&, const T&)> linear_;
  c10::TypedOperatorHandle<T(const T&, const T&, S, double)> act_backward_;
  c10::TypedOperatorHandle<T(const T&, const T&)> linear_backward_input_;
  c10::TypedOperatorHandle<TT(const T&, const T&)> linear_backward_weight_;
  c10::TypedOperatorHandle<T(const T&, const T&, S, S, double)> act_pool_backward_;
  c10::TypedOperatorHandle<T(const T&, const T&, int64_t)> conv_backward_input_;
  c10::TypedOperatorHandle<TT(const T&, const T&, int64_t)> conv_backward_weight_;
  c10::TypedOperatorHandle<TT(const T&, const T&, const T&, int64_t, S, S, double)> conv_act_pool_backward_weight_;
};

// A device's whole-network training path: its result, or nothing for a call it does not serve.
using FusedForwardTrain = std::optional<std::tuple<at::Tensor, std::vector<at::Tensor>>> (*)(
    const Lenet5Shape& s, const at::Tensor& x, const Lenet5Params& p, int64_t padding, const Variant& v);
using FusedBackward = std::optional<std::vector<at::Tensor>> (*)(const at::Tensor& grad, const at::Tensor& x,
                                                                 const Lenet5Weights& w, const Lenet5Saved& saved,
                                                                 int64_t padding, const Lenet5Mask& need,
                                                                 const Variant& v);

// lenet5_forward_train and lenet5_backward on the device of kind `kind`: the arguments checked (every
// layer before any kernel runs), then the device's whole-network path, else the per-layer ops.
std::tuple<at::Tensor, std::vector<at::Tensor>> lenet5_forward_train_op(at::DeviceType kind, FusedForwardTrain fused,
                                                                        const Lenet5Layers& layers, const at::Tensor& x,
                                                                        const Lenet5Params& p, int64_t padding,
                                                                        const VariantArgs& va);
std::vector<at::Tensor> lenet5_backward_op(at::DeviceType kind, FusedBackward fused, const Lenet5Layers& layers,
                                           const at::Tensor& grad, const at::Tensor& x, const Lenet5Weights& w,
                                           at::TensorList saved, int64_t padding, const Lenet5Mask& need,
                                           const VariantArgs& va);

}  // namespace lenet_fast
