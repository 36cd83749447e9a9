// The whole network's tensors as the LeNet-5 ops pass them between the op entry points, the CPU
// and CUDA whole-network paths and the per-layer composition: the parameters, the tensors the
// training forward saves for the backward, the gradient mask. One definition each, so their order
// (the ops' argument order, model order) lives here only.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <vector>

#include "ops/checks.h"

namespace lenet_fast {

// The variant arguments as an op received them, to hand on to the per-layer ops.
struct VariantArgs {
  c10::string_view activation, pooling;
  double negative_slope;
};

// The ten parameters, in model order: the whole-network ops' argument order.
struct Lenet5Params {
  const at::Tensor &conv1_weight, &conv1_bias, &conv2_weight, &conv2_bias, &fc1_weight, &fc1_bias, &fc2_weight,
      &fc2_bias, &fc3_weight, &fc3_bias;

  static constexpr const char* kNames[10] = {"conv1_weight", "conv1_bias", "conv2_weight", "conv2_bias",
                                             "fc1_weight",   "fc1_bias",   "fc2_weight",   "fc2_bias",
                                             "fc3_weight",   "fc3_bias"};
  std::array<const at::Tensor*, 10> list() const {
    return {&conv1_weight, &conv1_bias, &conv2_weight, &conv2_bias, &fc1_weight,
            &fc1_bias,     &fc2_weight, &fc2_bias,     &fc3_weight, &fc3_bias};
  }
  std::vector<at::Tensor> contiguous() const {
    std::vector<at::Tensor> c;
    for (const at::Tensor* t : list()) c.push_back(t->contiguous());
    return c;
  }
};

// The weights lenet5_backward takes (the biases' gradients need no bias).
struct Lenet5Weights {
  const at::Tensor &conv1_weight, &conv2_weight, &fc1_weight, &fc2_weight, &fc3_weight;

  std::array<const at::Tensor*, 5> list() const {
    return {&conv1_weight, &conv2_weight, &fc1_weight, &fc2_weight, &fc3_weight};
  }
};

// x and the ten parameters: the inputs lenet5_backward returns gradients for, in this order.
constexpr int kLenet5Inputs = 11;
using Lenet5Mask = std::array<bool, kLenet5Inputs>;

// Every parameter's gradient and not the image's: the mask of a training step, which the
// whole-network backward kernels serve.
inline bool is_training_step(const Lenet5Mask& need) {
  if (need[0]) return false;
  for (int i = 1; i < kLenet5Inputs; ++i)
    if (!need[i]) return false;
  return true;
}

// What lenet5_forward_train saves for lenet5_backward, in this order: the activations at full
// resolution (act1, act2: max pooling finds its window's element there), the pooled conv1 output,
// conv2's pooled output flattened (fc1's input), and fc1's and fc2's outputs.
struct Lenet5Saved {
  static constexpr int kCount = 6;
  at::Tensor act1, pool1, act2, flat, h1, h2;

  // Their shapes for a network of shape s.
  static std::array<std::vector<int64_t>, kCount> shapes(const Lenet5Shape& s) {
    const int64_t N = s.c1.N;
    return {{{N, s.c1.OC, s.c1.Ho, s.c1.Wo},
             {N, s.c1.OC, s.c1.Ho / 2, s.c1.Wo / 2},
             {N, s.c2.OC, s.c2.Ho, s.c2.Wo},
             {N, s.F},
             {N, s.J1},
             {N, s.J2}}};
  }
  static Lenet5Saved empty(const Lenet5Shape& s, const at::TensorOptions& o) {
    const auto sh = shapes(s);
    return {at::empty(sh[0], o), at::empty(sh[1], o), at::empty(sh[2], o),
            at::empty(sh[3], o), at::empty(sh[4], o), at::empty(sh[5], o)};
  }
  static Lenet5Saved from(const char* op, at::TensorList t) {
    LF_CHECK(t.size() == kCount, op, "expected the ", kCount, " tensors lenet5_forward_train saves, got ", t.size());
    return {t[0], t[1], t[2], t[3], t[4], t[5]};
  }
  std::vector<at::Tensor> list() const { return {act1, pool1, act2, flat, h1, h2}; }
};

// Every layer's shape checked against the one before it (x may be uint8 where the op normalises it).
inline Lenet5Shape check_lenet5(const char* op, const at::Tensor& x, const Lenet5Params& p, int64_t padding,
                                at::DeviceType kind, bool x_may_be_uint8 = false) {
  if (!(x_may_be_uint8 && x.defined() && x.scalar_type() == at::kByte)) check_float32(op, "x", x);
  const auto params = p.list();
  for (size_t i = 0; i < params.size(); ++i) check_float32(op, Lenet5Params::kNames[i], *params[i]);
  check_devices(op, kind, {{"x", &x}, {"conv1_weight", &p.conv1_weight}, {"conv1_bias", &p.conv1_bias},
                           {"conv2_weight", &p.conv2_weight}, {"conv2_bias", &p.conv2_bias},
                           {"fc1_weight", &p.fc1_weight}, {"fc1_bias", &p.fc1_bias}, {"fc2_weight", &p.fc2_weight},
                           {"fc2_bias", &p.fc2_bias}, {"fc3_weight", &p.fc3_weight}, {"fc3_bias", &p.fc3_bias}});
  const at::Tensor &w1 = p.conv1_weight, &b1 = p.conv1_bias, &w2 = p.conv2_weight, &b2 = p.conv2_bias,
                   &f1w = p.fc1_weight, &f1b = p.fc1_bias, &f2w = p.fc2_weight, &f2b = p.fc2_bias,
                   &f3w = p.fc3_weight, &f3b = p.fc3_bias;
  Lenet5Shape s{};
  s.c1 = check_conv_shapes(op, x.sizes(), "x", "conv1_weight", w1, "conv1_bias", b1, padding);
  LF_CHECK(s.c1.Ho >= 2 && s.c1.Wo >= 2, op, "expected conv1's output to be at least 2x2, got ",
           s.c1.Ho, "x", s.c1.Wo, " from x ", x.sizes());
  const std::vector<int64_t> pooled1 = {s.c1.N, s.c1.OC, s.c1.Ho / 2, s.c1.Wo / 2};
  s.c2 = check_conv_shapes(op, pooled1, "pool1's output", "conv2_weight", w2, "conv2_bias", b2, 0);
  LF_CHECK(s.c2.Ho >= 2 && s.c2.Wo >= 2, op, "expected conv2's output to be at least 2x2, got ",
           s.c2.Ho, "x", s.c2.Wo, " from x ", x.sizes());
  s.F = s.c2.OC * (s.c2.Ho / 2) * (s.c2.Wo / 2);
  check_linear_shapes(op, s.F, "the flattened pool2 output", "fc1_weight", f1w, "fc1_bias", f1b);
  s.J1 = f1w.size(0);
  check_linear_shapes(op, s.J1, "fc1's output", "fc2_weight", f2w, "fc2_bias", f2b);
  s.J2 = f2w.size(0);
  check_linear_shapes(op, s.J2, "fc2's output", "fc3_weight", f3w, "fc3_bias", f3b);
  s.J3 = f3w.size(0);
  return s;
}

// lenet5_backward's arguments: the devices of the tensors the backward reads.
inline void check_lenet5_backward(const char* op, const at::Tensor& grad, const at::Tensor& x, const Lenet5Weights& w,
                                  at::DeviceType kind) {
  check_devices(op, kind, {{"grad", &grad}, {"x", &x}, {"conv1_weight", &w.conv1_weight},
                           {"conv2_weight", &w.conv2_weight}, {"fc1_weight", &w.fc1_weight},
                           {"fc2_weight", &w.fc2_weight}, {"fc3_weight", &w.fc3_weight}});
}

}  // namespace lenet_fast
