// Argument checks shared by the CPU and CUDA implementations of every op. Each message names the
// op, what it expected and what it was given.
#pragma once

#include <ATen/ATen.h>

#include <initializer_list>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "kernels/kernel_math.h"

namespace lenet_fast {

#define LF_CHECK(cond, op, ...) TORCH_CHECK(cond, "lenet_fast::", op, ": ", __VA_ARGS__)

inline void check_float32(const char* op, const char* name, const at::Tensor& t) {
  LF_CHECK(t.defined(), op, "expected ", name, " to be a tensor, got an undefined tensor");
  LF_CHECK(t.scalar_type() == at::kFloat, op, "expected ", name, " to be float32, got ",
           t.scalar_type(), " (these kernels are float32 only; call .float() first)");
}

inline void check_dim(const char* op, const char* name, const at::Tensor& t, int64_t dim,
                      const char* layout) {
  LF_CHECK(t.dim() == dim, op, "expected ", name, " to be ", dim, "-D ", layout, ", got shape ",
           t.sizes());
}

// The variant an op's (activation, pooling, negative_slope) arguments name: variant.h's names.
inline Variant parse_variant(const char* op, c10::string_view activation, c10::string_view pooling,
                             double negative_slope) {
  const auto find = [](const auto& names, c10::string_view name) {
    for (size_t i = 0; i < std::size(names); ++i)
      if (name == names[i]) return static_cast<int32_t>(i);
    return int32_t{-1};
  };
  const auto listed = [](const auto& names, const char* sep) {
    std::string out;
    for (const char* n : names) out += (out.empty() ? "" : sep) + std::string(n);
    return out;
  };
  Variant v;
  const int32_t a = find(kActNames, activation), p = find(kPoolNames, pooling);
  LF_CHECK(a >= 0, op, "expected activation to be one of ", listed(kActNames, ", "), ", got '", activation, "'");
  LF_CHECK(p >= 0, op, "expected pooling to be ", listed(kPoolNames, " or "), ", got '", pooling, "'");
  LF_CHECK(negative_slope_ok(negative_slope), op,
           "expected a finite negative_slope >= 0 (the backward tells the branch from the output's sign), got ",
           negative_slope);
  v.act = static_cast<Act>(a);
  v.pool = static_cast<Pool>(p);
  v.slope = static_cast<float>(negative_slope);
  return v;
}

// The activation an elementwise or linear op's (activation, negative_slope) arguments name.
inline Variant parse_activation(const char* op, c10::string_view activation, double negative_slope) {
  return parse_variant(op, activation, kPoolNames[0], negative_slope);
}

// Every tensor argument on one device; `kind` is the device type this implementation serves.
inline void check_devices(const char* op, at::DeviceType kind,
                          std::initializer_list<std::pair<const char*, const at::Tensor*>> ts) {
  const auto& first = *ts.begin();
  for (const auto& [name, t] : ts) {
    LF_CHECK(t->device() == first.second->device(), op,
             "expected all tensors on the same device, got ", first.first, " on ",
             first.second->device(), " and ", name, " on ", t->device());
  }
  LF_CHECK(first.second->device().type() == kind, op, "this implementation runs on ",
           c10::DeviceTypeName(kind), " tensors, got ", first.first, " on ",
           first.second->device());
}

struct ConvShape {
  int64_t N, IC, H, W, OC, pad, Ho, Wo;
};

inline void check_padding(const char* op, int64_t padding) {
  LF_CHECK(padding >= 0 && padding <= kMaxPad, op, "expected padding in [0, ", kMaxPad,
           "] for a 5x5 kernel, got ", padding);
}

// The shapes of a 5x5 convolution of an input (N, IC, H, W) described by `x_desc` (for messages)
// with weight (OC, IC, 5, 5) and bias (OC); dtypes and devices are checked by the caller.
inline ConvShape check_conv_shapes(const char* op, at::IntArrayRef x_sizes, const char* x_desc,
                                   const char* w_name, const at::Tensor& w, const char* b_name,
                                   const at::Tensor& b, int64_t padding) {
  LF_CHECK(x_sizes.size() == 4, op, "expected ", x_desc, " to be 4-D (N, C, H, W), got shape ",
           x_sizes);
  LF_CHECK(w.dim() == 4, op, "expected ", w_name, " to be 4-D (out_channels, in_channels, 5, 5), "
           "got shape ", w.sizes());
  check_padding(op, padding);
  ConvShape s{x_sizes[0], x_sizes[1], x_sizes[2], x_sizes[3], w.size(0), padding, 0, 0};
  LF_CHECK(w.size(2) == kKernel && w.size(3) == kKernel, op, "expected a 5x5 kernel, got ",
           w_name, " ", w.sizes());
  LF_CHECK(w.size(1) == s.IC, op, "expected ", w_name, " (out_channels, ", s.IC,
           ", 5, 5) to match the ", s.IC, " channels of ", x_desc, " ", x_sizes, ", got ", w_name,
           " ", w.sizes());
  LF_CHECK(s.OC > 0, op, "expected at least one output channel, got ", w_name, " ", w.sizes());
  LF_CHECK(b.dim() == 1 && b.size(0) == s.OC, op, "expected ", b_name, " of shape (", s.OC,
           "), got ", b.sizes());
  s.Ho = conv_out_extent(s.H, padding);
  s.Wo = conv_out_extent(s.W, padding);
  LF_CHECK(s.Ho >= 1 && s.Wo >= 1, op, "expected H and W of at least ", 5 - 2 * padding,
           " with padding ", padding, ", got ", x_desc, " ", x_sizes);
  return s;
}

// x (N, IC, H, W), weight (OC, IC, 5, 5), bias (OC).
inline ConvShape check_conv(const char* op, const at::Tensor& x, const at::Tensor& w,
                            const at::Tensor& b, int64_t padding, at::DeviceType kind) {
  check_float32(op, "x", x);
  check_float32(op, "weight", w);
  check_float32(op, "bias", b);
  check_devices(op, kind, {{"x", &x}, {"weight", &w}, {"bias", &b}});
  return check_conv_shapes(op, x.sizes(), "x", "weight", w, "bias", b, padding);
}

// The weight's (OC, IC) with a 5x5 kernel.
inline void check_conv_weight(const char* op, const at::Tensor& w) {
  check_float32(op, "weight", w);
  check_dim(op, "weight", w, 4, "(out_channels, in_channels, 5, 5)");
  LF_CHECK(w.size(2) == kKernel && w.size(3) == kKernel, op, "expected a 5x5 kernel, got weight ",
           w.sizes());
}

inline void check_same_shape(const char* op, const char* a_name, const at::Tensor& a,
                             const char* b_name, const at::Tensor& b) {
  LF_CHECK(a.sizes() == b.sizes(), op, "expected ", a_name, " and ", b_name,
           " to have the same shape, got ", a.sizes(), " and ", b.sizes());
}

// grad (N, C, H/2, W/2) of a 2x2/2 pool over (N, C, H, W).
inline void check_pooled_grad(const char* op, const at::Tensor& grad, int64_t N, int64_t C,
                              int64_t H, int64_t W) {
  check_dim(op, "grad", grad, 4, "(N, C, H/2, W/2)");
  LF_CHECK(grad.size(0) == N && grad.size(1) == C && grad.size(2) == H / 2 &&
               grad.size(3) == W / 2,
           op, "expected grad of shape [", N, ", ", C, ", ", H / 2, ", ", W / 2,
           "] for an input of [", N, ", ", C, ", ", H, ", ", W, "], got ", grad.sizes());
}

// Weight gradient arguments: grad (N, OC, Ho, Wo) at the conv output, or with act (the fused
// op's saved tanh, (N, OC, Ho, Wo)) the pooled gradient (N, OC, Ho/2, Wo/2); x (N, IC, H, W).
inline ConvShape check_conv_weight_grad(const char* op, const at::Tensor& grad,
                                        const at::Tensor* act, const at::Tensor& x,
                                        int64_t padding, at::DeviceType kind) {
  check_float32(op, "grad", grad);
  check_float32(op, "x", x);
  if (act) {
    check_float32(op, "act", *act);
    check_devices(op, kind, {{"grad", &grad}, {"act", act}, {"x", &x}});
  } else {
    check_devices(op, kind, {{"grad", &grad}, {"x", &x}});
  }
  check_dim(op, "x", x, 4, "(N, IC, H, W)");
  check_padding(op, padding);
  ConvShape s{x.size(0), x.size(1), x.size(2), x.size(3), 0, padding, 0, 0};
  s.Ho = conv_out_extent(s.H, padding);
  s.Wo = conv_out_extent(s.W, padding);
  LF_CHECK(s.Ho >= 1 && s.Wo >= 1, op, "expected H and W of at least ", 5 - 2 * padding,
           " with padding ", padding, ", got x ", x.sizes());
  if (act) {
    check_dim(op, "act", *act, 4, "(N, OC, Ho, Wo)");
    s.OC = act->size(1);
    LF_CHECK(act->size(0) == s.N && act->size(2) == s.Ho && act->size(3) == s.Wo, op,
             "expected act of shape [", s.N, ", OC, ", s.Ho, ", ", s.Wo, "] for x ", x.sizes(),
             " and padding ", padding, ", got act ", act->sizes());
    check_pooled_grad(op, grad, s.N, s.OC, s.Ho, s.Wo);
  } else {
    check_dim(op, "grad", grad, 4, "(N, OC, Ho, Wo)");
    s.OC = grad.size(1);
    LF_CHECK(grad.size(0) == s.N && grad.size(2) == s.Ho && grad.size(3) == s.Wo, op,
             "expected grad of shape [", s.N, ", OC, ", s.Ho, ", ", s.Wo, "] for x ", x.sizes(),
             " and padding ", padding, ", got grad ", grad.sizes());
  }
  return s;
}

// conv5x5_backward_input: grad (N, OC, Ho, Wo) and weight (OC, IC, 5, 5); returns the input's
// (H, W) = (Ho, Wo) + 4 - 2 padding.
inline std::pair<int64_t, int64_t> check_conv_input_grad(const char* op, const at::Tensor& grad,
                                                         const at::Tensor& w, int64_t padding,
                                                         at::DeviceType kind) {
  check_float32(op, "grad", grad);
  check_conv_weight(op, w);
  check_devices(op, kind, {{"grad", &grad}, {"weight", &w}});
  check_dim(op, "grad", grad, 4, "(N, OC, Ho, Wo)");
  check_padding(op, padding);
  LF_CHECK(grad.size(1) == w.size(0), op, "expected grad with ", w.size(0),
           " channels to match weight ", w.sizes(), ", got grad ", grad.sizes());
  const int64_t H = grad.size(2) + kMaxPad - 2 * padding, W = grad.size(3) + kMaxPad - 2 * padding;
  LF_CHECK(H >= 1 && W >= 1, op, "expected grad of at least ", 1 + 2 * padding, "x",
           1 + 2 * padding, " with padding ", padding, ", got grad ", grad.sizes());
  return {H, W};
}

// act_pool_backward: grad (N, C, H/2, W/2) pooled, act (N, C, H, W).
inline void check_tanh_pool_backward(const char* op, const at::Tensor& grad, const at::Tensor& act,
                                     at::DeviceType kind) {
  check_float32(op, "grad", grad);
  check_float32(op, "act", act);
  check_devices(op, kind, {{"grad", &grad}, {"act", &act}});
  check_dim(op, "act", act, 4, "(N, C, H, W)");
  check_pooled_grad(op, grad, act.size(0), act.size(1), act.size(2), act.size(3));
}

// avg_pool2x2_backward: grad (N, C, H/2, W/2) for an input of H x W.
inline void check_avg_pool_backward(const char* op, const at::Tensor& grad, int64_t H, int64_t W,
                                    at::DeviceType kind) {
  check_float32(op, "grad", grad);
  check_devices(op, kind, {{"grad", &grad}});
  check_dim(op, "grad", grad, 4, "(N, C, H/2, W/2)");
  LF_CHECK(H >= 2 && W >= 2, op, "expected an input height and width of at least 2, got ", H,
           " and ", W);
  check_pooled_grad(op, grad, grad.size(0), grad.size(1), H, W);
}

// act_backward: grad and the saved output y, of one shape.
inline void check_act_backward(const char* op, const at::Tensor& grad, const at::Tensor& y,
                                at::DeviceType kind) {
  check_float32(op, "grad", grad);
  check_float32(op, "y", y);
  check_devices(op, kind, {{"grad", &grad}, {"y", &y}});
  check_same_shape(op, "grad", grad, "y", y);
}

inline void check_pool_input(const char* op, const at::Tensor& x) {
  check_dim(op, "x", x, 4, "(N, C, H, W)");
  LF_CHECK(x.size(2) >= 2 && x.size(3) >= 2, op, "expected H and W of at least 2, got x ",
           x.sizes());
}

// weight (J, K) and bias (J) of a layer fed `in_features` features.
inline void check_linear_shapes(const char* op, int64_t in_features, const char* x_desc,
                                const char* w_name, const at::Tensor& w, const char* b_name,
                                const at::Tensor& b) {
  LF_CHECK(w.dim() == 2, op, "expected ", w_name, " to be 2-D (out_features, in_features), got "
           "shape ", w.sizes());
  LF_CHECK(in_features == w.size(1), op, "expected ", x_desc, " to have in_features = ", w.size(1),
           " (", w_name, " ", w.sizes(), "), got ", in_features);
  LF_CHECK(b.dim() == 1 && b.size(0) == w.size(0), op, "expected ", b_name, " of shape (",
           w.size(0), "), got ", b.sizes());
}

// x (..., K), weight (J, K), bias (J).
inline void check_linear(const char* op, const at::Tensor& x, const at::Tensor& w,
                         const at::Tensor& b, at::DeviceType kind) {
  check_float32(op, "x", x);
  check_float32(op, "weight", w);
  check_float32(op, "bias", b);
  check_devices(op, kind, {{"x", &x}, {"weight", &w}, {"bias", &b}});
  LF_CHECK(x.dim() >= 1, op, "expected x of shape (..., in_features), got a 0-D tensor");
  check_linear_shapes(op, x.size(-1), "x's last dimension", "weight", w, "bias", b);
}

// linear_backward_input: grad (..., J) and weight (J, K).
inline void check_linear_input_grad(const char* op, const at::Tensor& grad, const at::Tensor& w,
                                    at::DeviceType kind) {
  check_float32(op, "grad", grad);
  check_float32(op, "weight", w);
  check_devices(op, kind, {{"grad", &grad}, {"weight", &w}});
  check_dim(op, "weight", w, 2, "(out_features, in_features)");
  LF_CHECK(grad.dim() >= 1 && grad.size(-1) == w.size(0), op,
           "expected grad of shape (..., out_features = ", w.size(0), "), got ", grad.sizes());
}

// linear_backward_weight: grad (..., J) and x (..., K) with the same leading dimensions.
inline void check_linear_weight_grad(const char* op, const at::Tensor& grad, const at::Tensor& x,
                                     at::DeviceType kind) {
  check_float32(op, "grad", grad);
  check_float32(op, "x", x);
  check_devices(op, kind, {{"grad", &grad}, {"x", &x}});
  LF_CHECK(grad.dim() >= 1 && x.dim() == grad.dim() &&
               x.sizes().slice(0, x.dim() - 1) == grad.sizes().slice(0, grad.dim() - 1),
           op, "expected grad (..., out_features) and x (..., in_features) with the same leading "
           "dimensions, got grad ", grad.sizes(), " and x ", x.sizes());
}

// t (..., cols) viewed as a (rows, cols) matrix, rows the product of the leading dimensions (1 for
// a 1-D t). Not reshape({-1, cols}): with cols == 0 the -1 is ambiguous and reshape throws.
inline at::Tensor as_matrix(const at::Tensor& t) {
  const auto lead = t.sizes().slice(0, t.dim() - 1);
  return t.reshape({c10::multiply_integers(lead.begin(), lead.end()), t.size(-1)});
}

// The shape of a linear layer's output: x's leading dimensions, then J.
inline std::vector<int64_t> linear_out_sizes(const at::Tensor& x, int64_t J) {
  std::vector<int64_t> s(x.sizes().begin(), x.sizes().end());
  s.back() = J;
  return s;
}

}  // namespace lenet_fast

namespace lenet_fast {

// The shapes through LeNet-5: conv1 -> act -> pool -> conv2 -> act -> pool -> fc1 -> act -> fc2 -> act
// -> fc3 (check_lenet5, ops/lenet5.h).
struct Lenet5Shape {
  ConvShape c1, c2;
  int64_t F, J1, J2, J3;  // flattened features, fc widths
};

// lenet5_forward's mean and std: they normalise uint8 images (ToTensor() then Normalize(mean, std));
// a float32 x is used as given, so anything but the defaults would be silently ignored.
inline void check_lenet5_normalize(const char* op, const at::Tensor& x, double mean, double std) {
  if (x.scalar_type() == at::kByte) {
    LF_CHECK(std != 0.0, op, "expected a nonzero std to normalise uint8 images with, got 0");
  } else {
    LF_CHECK(mean == 0.0 && std == 1.0, op, "mean and std normalise uint8 images; x is ", x.scalar_type(),
             " and is used as given, so expected the defaults mean=0, std=1, got mean=", mean, ", std=", std);
  }
}

// gather_normalize: images (N, ...) uint8, index (B) int64.
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
  LF_CHECK(images.size(0) > 0 || index.numel() == 0, op, "expected a non-empty dataset to pick ",
           index.numel(), " samples from, got images of shape ", images.sizes());
  check_devices(op, kind, {{"images", &images}, {"index", &index}});
}


}  // namespace lenet_fast
