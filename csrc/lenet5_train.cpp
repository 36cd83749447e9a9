// lenet5_forward_train / lenet5_backward: the training step's forward and backward as two ops.
// On the CPU, the whole-network step of csrc/cpu/net_train.cpp (three parallel regions); in a CUDA
// build on its device, the fused kernels of csrc/cuda/lenet5.cu; otherwise (other shapes, a
// gradient mask they do not serve, the simulated CUDA build) composed from the per-layer ops.
// Device-generic: the inner calls go through the dispatcher
// (below autograd, so they cost a C++ dispatch each, not a trip through Python), reaching the CPU
// or CUDA kernels of whatever device the tensors are on.
//
// Unlike the per-layer ops (autograd registered from Python, lenet_fast/ops.py), this op's
// autograd is C++ (Lenet5TrainFunction below): it is the model's hot path, and a Python autograd
// function cost ~0.4 ms per call here, a tenth of a batch-64 training step.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <vector>

#include "checks.h"

#if !defined(LENET_FAST_CUDASIM)
#include "cpu/net_ops.h"  // the CPU's whole-network step, a few parallel regions instead of one per op
#endif
#if defined(LENET_FAST_CUDASIM) || defined(LENET_FAST_WITH_CUDA)
#include "cuda/net_ops.h"  // the CUDA build's fused kernels, tried first on its device
#define LF_HAVE_FUSED 1
#endif

namespace lenet_fast {
namespace {

// The namespace the inner ops are looked up in: the CUDA harness's build (tests/cudasim.py)
// compiles this file into lenet_fast_cudasim, so that its whole-network ops compose the simulated
// CUDA kernels exactly as a CUDA build composes the real ones.
#if defined(LENET_FAST_CUDASIM)
#define LF_OPS "lenet_fast_cudasim::"
#else
#define LF_OPS "lenet_fast::"
#endif

template <class Sig>
c10::TypedOperatorHandle<Sig> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

using T = at::Tensor;
using TT = std::tuple<at::Tensor, at::Tensor>;
using S = c10::string_view;


constexpr int kLenet5Inputs = 11;  // x and the ten parameters

// kFused: try the CUDA build's fused whole-network kernels first (cuda/net_ops.h); they decline
// shapes they do not serve, which then take the per-layer ops below.
template <at::DeviceType kind, bool kFused>
std::tuple<at::Tensor, std::vector<at::Tensor>> lenet5_forward_train(
    const T& x, const T& w1, const T& b1, const T& w2, const T& b2, const T& f1w, const T& f1b,
    const T& f2w, const T& f2b, const T& f3w, const T& f3b, int64_t padding, S activation, S pooling,
    double negative_slope) {
  const char* name = "lenet5_forward_train";
  // Validates every layer up front (same messages as lenet5_forward) before any kernel runs.
  const Lenet5Shape s = check_lenet5(name, x, w1, b1, w2, b2, f1w, f1b, f2w, f2b, f3w, f3b, padding, kind);
  const Variant v = parse_variant(name, activation, pooling, negative_slope);
  at::AutoDispatchBelowADInplaceOrView below_autograd;
#if !defined(LENET_FAST_CUDASIM)
  if constexpr (kind == at::kCPU)
    return cpu::lenet5_forward_train_fused(s, x, w1, b1, w2, b2, f1w, f1b, f2w, f2b, f3w, f3b, padding, v);
#else
  (void)s;
#endif
#ifdef LF_HAVE_FUSED
  if constexpr (kFused)
    if (auto fused = cuda::lenet5_forward_train_fused(x, w1, b1, w2, b2, f1w, f1b, f2w, f2b, f3w, f3b, padding, v))
      return *fused;
#endif
  static const auto conv =
      op<TT(const T&, const T&, const T&, int64_t, bool, S, S, double)>(LF_OPS "conv5x5_tanh_pool");
  static const auto lin_tanh = op<T(const T&, const T&, const T&, S, double)>(LF_OPS "linear_tanh");
  static const auto lin = op<T(const T&, const T&, const T&)>(LF_OPS "linear");
  auto [p1, act1] = conv.call(x, w1, b1, padding, true, activation, pooling, negative_slope);
  auto [p2, act2] = conv.call(p1, w2, b2, 0, true, activation, pooling, negative_slope);
  T flat = p2.flatten(1);
  T h1 = lin_tanh.call(flat, f1w, f1b, activation, negative_slope);
  T h2 = lin_tanh.call(h1, f2w, f2b, activation, negative_slope);
  T logits = lin.call(h2, f3w, f3b);
  return {logits, {act1, p1, act2, flat, h1, h2}};
}

// Gradients flow from the logits down; the walk stops below the deepest tensor that needs a
// gradient (a frozen feature extractor costs no convolution backward), and a layer's weight
// gradient kernel runs only when its weight or bias needs one. need[i] follows the forward op's
// inputs: x, conv1 weight and bias, conv2 ..., fc3 bias.
template <at::DeviceType kind, bool kFused>
std::vector<at::Tensor> lenet5_backward(const T& grad, const T& x, const T& w1, const T& w2,
                                        const T& f1w, const T& f2w, const T& f3w,
                                        at::TensorList saved, int64_t padding,
                                        std::array<bool, kLenet5Inputs> need, S activation, S pooling,
                                        double negative_slope) {
  const char* name = "lenet5_backward";
  const Variant v = parse_variant(name, activation, pooling, negative_slope);
  LF_CHECK(saved.size() == 6, name, "expected the 6 tensors lenet5_forward_train saves, got ",
           saved.size());
  check_devices(name, kind, {{"grad", &grad}, {"x", &x}, {"conv1_weight", &w1},
                             {"conv2_weight", &w2}, {"fc1_weight", &f1w}, {"fc2_weight", &f2w},
                             {"fc3_weight", &f3w}});
  at::AutoDispatchBelowADInplaceOrView below_autograd;
#if !defined(LENET_FAST_CUDASIM)
  if constexpr (kind == at::kCPU)
    if (auto fused = cpu::lenet5_backward_fused(grad, x, w1, w2, f1w, f2w, f3w, saved, padding, need, v))
      return *fused;
#endif
#ifdef LF_HAVE_FUSED
  if constexpr (kFused)
    if (auto fused = cuda::lenet5_backward_fused(grad, x, w1, w2, f1w, f2w, f3w, saved, padding, need, v))
      return *fused;
#endif
  static const auto tanh_bwd = op<T(const T&, const T&, S, double)>(LF_OPS "tanh_backward");
  static const auto lin_bwd_x = op<T(const T&, const T&)>(LF_OPS "linear_backward_input");
  static const auto lin_bwd_w = op<TT(const T&, const T&)>(LF_OPS "linear_backward_weight");
  static const auto pool_bwd = op<T(const T&, const T&, S, S, double)>(LF_OPS "tanh_pool_backward");
  static const auto conv_bwd_x = op<T(const T&, const T&, int64_t)>(LF_OPS "conv5x5_backward_input");
  static const auto conv_bwd_w = op<TT(const T&, const T&, int64_t)>(LF_OPS "conv5x5_backward_weight");
  static const auto fused_bwd_w = op<TT(const T&, const T&, const T&, int64_t, S, S, double)>(
      LF_OPS "conv5x5_tanh_pool_backward_weight");
  const auto act_bwd = [&](const T& g, const T& y) { return tanh_bwd.call(g, y, activation, negative_slope); };
  const auto act_pool_bwd = [&](const T& g, const T& a) {
    return pool_bwd.call(g, a, activation, pooling, negative_slope);
  };
  const T &act1 = saved[0], &p1 = saved[1], &act2 = saved[2], &flat = saved[3], &h1 = saved[4],
          &h2 = saved[5];
  // Does anything below input `i` (in forward order) need a gradient?
  const auto below = [&](int i) {
    return std::any_of(need.begin(), need.begin() + i, [](bool b) { return b; });
  };
  std::vector<T> g(kLenet5Inputs);
  const auto done = [&]() {  // what nobody asked for is an empty tensor
    for (int i = 0; i < kLenet5Inputs; ++i)
      if (!need[i] || !g[i].defined()) g[i] = at::empty({0}, grad.options());
    return g;
  };
  if (need[9] || need[10]) std::tie(g[9], g[10]) = lin_bwd_w.call(grad, h2);
  if (!below(9)) return done();
  const T g2 = act_bwd(lin_bwd_x.call(grad, f3w), h2);
  if (need[7] || need[8]) std::tie(g[7], g[8]) = lin_bwd_w.call(g2, h1);
  if (!below(7)) return done();
  const T g1 = act_bwd(lin_bwd_x.call(g2, f2w), h1);
  if (need[5] || need[6]) std::tie(g[5], g[6]) = lin_bwd_w.call(g1, flat);
  if (!below(5)) return done();
  const T dp2 = lin_bwd_x.call(g1, f1w).view({act2.size(0), act2.size(1), act2.size(2) / 2, act2.size(3) / 2});
  const T dpre2 = act_pool_bwd(dp2, act2);
  if (need[3] || need[4]) std::tie(g[3], g[4]) = conv_bwd_w.call(dpre2, p1, 0);
  if (!below(3)) return done();
  const T dp1 = conv_bwd_x.call(dpre2, w2, 0);
  if (need[0]) {  // dL/dx needs the full-resolution gradient anyway
    const T dpre1 = act_pool_bwd(dp1, act1);
    if (need[1] || need[2]) std::tie(g[1], g[2]) = conv_bwd_w.call(dpre1, x, padding);
    g[0] = conv_bwd_x.call(dpre1, w1, padding);
  } else {  // the usual case: the image needs no gradient, and conv1's never leaves the kernel
    std::tie(g[1], g[2]) = fused_bwd_w.call(dp1, act1, x, padding, activation, pooling, negative_slope);
  }
  return done();
}

#if !defined(LENET_FAST_CUDASIM)  // (the simulated build tests the ops, without autograd)
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
        op<std::tuple<T, std::vector<T>>(const T&, const T&, const T&, const T&, const T&, const T&,
                                          const T&, const T&, const T&, const T&, const T&, int64_t, S, S,
                                          double)>(LF_OPS "lenet5_forward_train");
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
    std::vector<T> to_save = {x, w1, w2, f1w, f2w, f3w};
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
        op<std::vector<T>(const T&, const T&, const T&, const T&, const T&, const T&, const T&,
                          at::TensorList, int64_t, std::array<bool, kLenet5Inputs>, S, S, double)>(
            LF_OPS "lenet5_backward");
    std::array<bool, kLenet5Inputs> need{};
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

#endif

}  // namespace

#if defined(LENET_FAST_CUDASIM)
TORCH_LIBRARY_IMPL(lenet_fast_cudasim, CPU, m) {  // the simulated CUDA build: CPU tensors, CUDA kernels
  m.impl("lenet5_forward_train", &lenet5_forward_train<at::kCPU, true>);
  m.impl("lenet5_backward", &lenet5_backward<at::kCPU, true>);
}
#else
TORCH_LIBRARY_IMPL(lenet_fast, Autograd, m) {
  m.impl("lenet5_forward_train", &lenet5_forward_train_autograd);
}

TORCH_LIBRARY_IMPL(lenet_fast, CPU, m) {
  m.impl("lenet5_forward_train", &lenet5_forward_train<at::kCPU, false>);
  m.impl("lenet5_backward", &lenet5_backward<at::kCPU, false>);
}

#ifdef LENET_FAST_WITH_CUDA  // (a CPU-only build registers no_cuda.cpp's error kernel instead)
TORCH_LIBRARY_IMPL(lenet_fast, CUDA, m) {
  m.impl("lenet5_forward_train", &lenet5_forward_train<at::kCUDA, true>);
  m.impl("lenet5_backward", &lenet5_backward<at::kCUDA, true>);
}
#endif

#endif

}  // namespace lenet_fast
