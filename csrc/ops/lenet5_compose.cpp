// The per-layer composition of LeNet-5's training forward and backward (lenet5_compose.h).
#include "ops/lenet5_compose.h"

#include <c10/core/impl/LocalDispatchKeySet.h>

#include <algorithm>

namespace lenet_fast {
namespace {

template <class Sig>
c10::TypedOperatorHandle<Sig> find_op(const std::string& ns, const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow((ns + "::" + name).c_str(), "").typed<Sig>();
}

template <class Handle>
struct SignatureOf;
template <class Sig>
struct SignatureOf<c10::TypedOperatorHandle<Sig>> {
  using type = Sig;
};

}  // namespace

#define LF_FIND(member, name) member(find_op<SignatureOf<decltype(member)>::type>(ns, name))

Lenet5Layers::Lenet5Layers(const std::string& ns)
    : LF_FIND(conv_act_pool_, "conv5x5_act_pool"),
      LF_FIND(linear_act_, "linear_act"),
      LF_FIND(linear_, "linear"),
      LF_FIND(act_backward_, "act_backward"),
      LF_FIND(linear_backward_input_, "linear_backward_input"),
      LF_FIND(linear_backward_weight_, "linear_backward_weight"),
      LF_FIND(act_pool_backward_, "act_pool_backward"),
      LF_FIND(conv_backward_input_, "conv5x5_backward_input"),
      LF_FIND(conv_backward_weight_, "conv5x5_backward_weight"),
      LF_FIND(conv_act_pool_backward_weight_, "conv5x5_act_pool_backward_weight") {}

#undef LF_FIND

std::tuple<at::Tensor, std::vector<at::Tensor>> Lenet5Layers::forward_train(const at::Tensor& x, const Lenet5Params& p,
                                                                            int64_t padding,
                                                                            const VariantArgs& v) const {
  auto [p1, act1] = conv_act_pool_.call(x, p.conv1_weight, p.conv1_bias, padding, true, v.activation, v.pooling,
                                        v.negative_slope);
  auto [p2, act2] = conv_act_pool_.call(p1, p.conv2_weight, p.conv2_bias, 0, true, v.activation, v.pooling,
                                        v.negative_slope);
  T flat = p2.flatten(1);
  T h1 = linear_act_.call(flat, p.fc1_weight, p.fc1_bias, v.activation, v.negative_slope);
  T h2 = linear_act_.call(h1, p.fc2_weight, p.fc2_bias, v.activation, v.negative_slope);
  T logits = linear_.call(h2, p.fc3_weight, p.fc3_bias);
  return {logits, Lenet5Saved{act1, p1, act2, flat, h1, h2}.list()};
}

// need[i] follows the forward op's inputs: x, conv1 weight and bias, conv2 ..., fc3 bias.
std::vector<at::Tensor> Lenet5Layers::backward(const at::Tensor& grad, const at::Tensor& x, const Lenet5Weights& w,
                                               const Lenet5Saved& saved, int64_t padding, const Lenet5Mask& need,
                                               const VariantArgs& v) const {
  const auto act_bwd = [&](const T& g, const T& y) {
    return act_backward_.call(g, y, v.activation, v.negative_slope);
  };
  const auto act_pool_bwd = [&](const T& g, const T& a) {
    return act_pool_backward_.call(g, a, v.activation, v.pooling, v.negative_slope);
  };
  // Does anything below input `i` (in forward order) need a gradient?
  const auto below = [&](int i) { return std::any_of(need.begin(), need.begin() + i, [](bool b) { return b; }); };
  std::vector<T> g(kLenet5Inputs);
  const auto done = [&]() {  // what nobody asked for is an empty tensor
    for (int i = 0; i < kLenet5Inputs; ++i)
      if (!need[i] || !g[i].defined()) g[i] = at::empty({0}, grad.options());
    return g;
  };
  const Lenet5Saved& s = saved;
  if (need[9] || need[10]) std::tie(g[9], g[10]) = linear_backward_weight_.call(grad, s.h2);
  if (!below(9)) return done();
  const T g2 = act_bwd(linear_backward_input_.call(grad, w.fc3_weight), s.h2);
  if (need[7] || need[8]) std::tie(g[7], g[8]) = linear_backward_weight_.call(g2, s.h1);
  if (!below(7)) return done();
  const T g1 = act_bwd(linear_backward_input_.call(g2, w.fc2_weight), s.h1);
  if (need[5] || need[6]) std::tie(g[5], g[6]) = linear_backward_weight_.call(g1, s.flat);
  if (!below(5)) return done();
  const T dp2 = linear_backward_input_.call(g1, w.fc1_weight)
                    .view({s.act2.size(0), s.act2.size(1), s.act2.size(2) / 2, s.act2.size(3) / 2});
  const T dpre2 = act_pool_bwd(dp2, s.act2);
  if (need[3] || need[4]) std::tie(g[3], g[4]) = conv_backward_weight_.call(dpre2, s.pool1, 0);
  if (!below(3)) return done();
  const T dp1 = conv_backward_input_.call(dpre2, w.conv2_weight, 0);
  if (need[0]) {  // dL/dx needs the full-resolution gradient anyway
    const T dpre1 = act_pool_bwd(dp1, s.act1);
    if (need[1] || need[2]) std::tie(g[1], g[2]) = conv_backward_weight_.call(dpre1, x, padding);
    g[0] = conv_backward_input_.call(dpre1, w.conv1_weight, padding);
  } else {  // the usual case: the image needs no gradient, and conv1's never leaves the kernel
    std::tie(g[1], g[2]) = conv_act_pool_backward_weight_.call(dp1, s.act1, x, padding, v.activation, v.pooling,
                                                                v.negative_slope);
  }
  return done();
}

std::tuple<at::Tensor, std::vector<at::Tensor>> lenet5_forward_train_op(at::DeviceType kind, FusedForwardTrain fused,
                                                                        const Lenet5Layers& layers, const at::Tensor& x,
                                                                        const Lenet5Params& p, int64_t padding,
                                                                        const VariantArgs& va) {
  const char* op = "lenet5_forward_train";
  const Lenet5Shape s = check_lenet5(op, x, p, padding, kind);
  const Variant v = parse_variant(op, va.activation, va.pooling, va.negative_slope);
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  if (auto out = fused(s, x, p, padding, v)) return *out;
  return layers.forward_train(x, p, padding, va);
}

std::vector<at::Tensor> lenet5_backward_op(at::DeviceType kind, FusedBackward fused, const Lenet5Layers& layers,
                                           const at::Tensor& grad, const at::Tensor& x, const Lenet5Weights& w,
                                           at::TensorList saved, int64_t padding, const Lenet5Mask& need,
                                           const VariantArgs& va) {
  const char* op = "lenet5_backward";
  const Variant v = parse_variant(op, va.activation, va.pooling, va.negative_slope);
  const Lenet5Saved sv = Lenet5Saved::from(op, saved);
  check_lenet5_backward(op, grad, x, w, kind);
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  if (auto out = fused(grad, x, w, sv, padding, need, v)) return *out;
  return layers.backward(grad, x, w, sv, padding, need, va);
}

}  // namespace lenet_fast
