// lenet5_forward_train / lenet5_backward: the training step's forward and backward as two ops, on
// the CPU, and their autograd. The CPU runs the whole-network step of ops/cpu/net_train.cpp (three
// parallel regions); a gradient mask that step does not serve is composed from the per-layer ops
// (lenet5_compose.h). The CUDA implementations are ops/cuda/lenet5.cpp's.
//
// Unlike the per-layer ops (autograd registered from Python, lenet_fast/ops.py), this op's
// autograd is C++ (Lenet5TrainFunction below): it is the model's hot path, and a Python autograd
// function cost ~0.4 ms per call here, a tenth of a batch-64 training step.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "ops/cpu/net_ops.h"
#include "ops/lenet5.h"
#include "ops/lenet5_compose.h"

namespace lenet_fast {
namespace {

using T = at::Tensor;
using S = c10::string_view;

const Lenet5Layers& layers() {
  static const Lenet5Layers l("lenet_fast");
  return l;
}

std::tuple<at::Tensor, std::vector<at::Tensor>> lenet5_forward_train_cpu(
    const T& x, const T& w1, const T& b1, const T& w2, const T& b2, const T& f1w, const T& f1b, const T& f2w,
    const T& f2b, const T& f3w, const T& f3b, int64_t padding, S activation, S pooling, double negative_slope) {
  return lenet5_forward_train_op(at::kCPU, &cpu::lenet5_forward_train_fused, layers(), x,
                                 {w1, b1, w2, b2, f1w, f1b, f2w, f2b, f3w, f3b}, padding,
                                 {activation, pooling, negative_slope});
}

std::vector<at::Tensor> lenet5_backward_cpu(const T& grad, const T& x, const T& w1, const T& w2, const T& f1w,
                                            const T& f2w, const T& f3w, at::TensorList saved, int64_t padding,
                                            Lenet5Mask need, S activation, S pooling, double negative_slope) {
  return lenet5_backward_op(at::kCPU, &cpu::lenet5_backward_fused, layers(), grad, x, {w1, w2, f1w, f2w, f3w}, saved,
                            padding, need, {activation, pooling, negative_slope});
}

// The autograd node of lenet5_forward_train: backward is one lenet5_backward call. The saved
// activations it returns are not differentiable outputs.
struct Lenet5TrainFunction : public torch::autograd::Function<Lenet5TrainFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const T& x,
                                                const T& w1, const T& b1, const T& w2,
                                                const T& b2, const T& f1w, const T& f1b,
                                                const T& f2w, const T& f2b, const T& f3w,
                                                const T& f3b, int64_t padding, S activation, S pooling,
                                                double negative_slope) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    static const auto fwd =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow("lenet_fast::lenet5_forward_train", "")
            .typed<std::tuple<T, std::vector<T>>(const T&, const T&, const T&, const T&, const T&, const T&,
                                                 const T&, const T&, const T&, const T&, const T&, int64_t, S, S,
                                                 double)>();
    auto [logits, saved] =
        fwd.call(x, w1, b1, w2, b2, f1w, f1b, f2w, f2b, f3w, f3b, padding, activation, pooling, negative_slope);
    // The saved activations are outputs too, and never get a gradient: without this, autograd
    // would fill a zero gradient of each one's shape before every backward (2.5 MB at batch 64,
    // 0.4 ms of a one-thread step).
    ctx->set_materialize_grads(false);
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["activation"] = std::string(activation);
    ctx->saved_data["pooling"] = std::string(pooling);
    ctx->saved_data["negative_slope"] = negative_slope;
    std::vector<T> to_save = {x, w1, w2, f1w, f2w, f3w};  // x, then Lenet5Weights' order
    to_save.insert(to_save.end(), saved.begin(), saved.end());
    ctx->save_for_backward(to_save);
    ctx->mark_non_differentiable(saved);
    torch::autograd::variable_list out = {logits};
    out.insert(out.end(), saved.begin(), saved.end());
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    torch::autograd::variable_list result(kLenet5Inputs + 4);  // padding and the variant included
    if (!grads[0].defined()) return result;
    const auto s = ctx->get_saved_variables();
    static const auto bwd =
        c10::Dispatcher::singleton()
            .findSchemaOrThrow("lenet_fast::lenet5_backward", "")
            .typed<std::vector<T>(const T&, const T&, const T&, const T&, const T&, const T&, const T&,
                                  at::TensorList, int64_t, Lenet5Mask, S, S, double)>();
    Lenet5Mask need{};
    for (int i = 0; i < kLenet5Inputs; ++i) need[i] = ctx->needs_input_grad(i);
    const std::vector<T> saved(s.begin() + 6, s.end());
    const std::string activation = ctx->saved_data["activation"].toStringRef(),
                      pooling = ctx->saved_data["pooling"].toStringRef();
    const std::vector<T> g = bwd.call(grads[0], s[0], s[1], s[2], s[3], s[4], s[5], saved,
                                      ctx->saved_data["padding"].toInt(), need, activation, pooling,
                                      ctx->saved_data["negative_slope"].toDouble());
    for (int i = 0; i < kLenet5Inputs; ++i)
      if (need[i]) result[i] = g[i];
    return result;
  }
};

std::tuple<at::Tensor, std::vector<at::Tensor>> lenet5_forward_train_autograd(
    const T& x, const T& w1, const T& b1, const T& w2, const T& b2, const T& f1w, const T& f1b,
    const T& f2w, const T& f2b, const T& f3w, const T& f3b, int64_t padding, S activation, S pooling,
    double negative_slope) {
  auto out = Lenet5TrainFunction::apply(x, w1, b1, w2, b2, f1w, f1b, f2w, f2b, f3w, f3b, padding, activation,
                                        pooling, negative_slope);
  return {out[0], std::vector<at::Tensor>(out.begin() + 1, out.end())};
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_fast, Autograd, m) {
  m.impl("lenet5_forward_train", &lenet5_forward_train_autograd);
}

TORCH_LIBRARY_IMPL(lenet_fast, CPU, m) {
  m.impl("lenet5_forward_train", &lenet5_forward_train_cpu);
  m.impl("lenet5_backward", &lenet5_backward_cpu);
}

}  // namespace lenet_fast
