// The CUDA convolution ops, torch side: 5x5 convolution, fused with bias + activation + 2x2 pool,
// and their input and weight gradients (kernels in kernels/cuda/conv.cu).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>

#include "ops/cuda/context.h"

namespace lenet_fast {
namespace cuda {
namespace {

void check_conv_fits(const char* op, int64_t IC, int64_t H, int64_t W, int64_t OC, int64_t pad) {
  const ConvForwardPlan p = conv_forward_plan(IC, H, W, OC, pad);
  LF_CHECK(IC == 0 || p.fits, op, "on CUDA, one padded input plane plus 25 weights per output channel must "
           "fit in 48 KB of shared memory: (H+2p)*(W+2p) + 25*OC = ", p.floats_per_channel, " floats > ",
           kSharedBytes / 4, "; reduce the image size or the output channels");
}

void check_int32(const char* op, const char* what, int64_t v) {
  LF_CHECK(v < (int64_t{1} << 31), op, what, " of ", v, " elements is too large for one image's 32-bit "
           "indexing in these kernels; split the batch or the channels");
}


at::Tensor conv5x5_cuda(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, int64_t padding) {
  const char* op = "conv5x5";
  const ConvShape s = check_conv(op, x, w, b, padding, device_type());
  const Guard guard(x);
  const at::Tensor xc = x.contiguous(), wc = w.contiguous(), bc = b.contiguous();
  at::Tensor y = new_output({s.N, s.OC, s.Ho, s.Wo}, x.options());
  conv_forward(op, ptr(xc), ptr(wc), ptr(bc), mut(y), nullptr, s.N, s.IC, s.H, s.W, s.OC, padding, false);
  return y;
}

std::tuple<at::Tensor, at::Tensor> conv5x5_act_pool_cuda(const at::Tensor& x, const at::Tensor& w,
                                                          const at::Tensor& b, int64_t padding, bool save_act,
                                                          c10::string_view activation, c10::string_view pooling, double negative_slope) {
  const char* op = "conv5x5_act_pool";
  const ConvShape s = check_conv(op, x, w, b, padding, device_type());
  const Variant v = parse_variant(op, activation, pooling, negative_slope);
  LF_CHECK(s.Ho >= 2 && s.Wo >= 2, op, "expected a convolution output of at least 2x2 to pool, got ", s.Ho, "x",
           s.Wo, " from x ", x.sizes());
  const Guard guard(x);
  const at::Tensor xc = x.contiguous(), wc = w.contiguous(), bc = b.contiguous();
  at::Tensor y = new_output({s.N, s.OC, s.Ho / 2, s.Wo / 2}, x.options());
  at::Tensor act = save_act ? new_output({s.N, s.OC, s.Ho, s.Wo}, x.options()) : at::empty({0}, x.options());
  conv_forward(op, ptr(xc), ptr(wc), ptr(bc), mut(y), save_act ? mut(act) : nullptr, s.N, s.IC, s.H, s.W, s.OC,
               padding, true, v);
  return {y, act};
}

at::Tensor conv5x5_backward_input_cuda(const at::Tensor& grad, const at::Tensor& w, int64_t padding) {
  const char* op = "conv5x5_backward_input";
  const auto [H, W] = check_conv_input_grad(op, grad, w, padding, device_type());
  const Guard guard(grad);
  // dL/dx = conv(grad, rot180(W) with in/out channels swapped, padding 4 - p)
  const at::Tensor wf = w.flip({2, 3}).transpose(0, 1).contiguous();
  const at::Tensor gc = grad.contiguous();
  at::Tensor dx = new_output({grad.size(0), w.size(1), H, W}, grad.options());
  conv_forward(op, ptr(gc), ptr(wf), nullptr, mut(dx), nullptr, grad.size(0), w.size(0), grad.size(2),
               grad.size(3), w.size(1), kMaxPad - padding, false);
  return dx;
}

// dw, db of a conv from its output gradient (at the conv output, contiguous) and input; with act
// (the fused op's saved activation, variant v), gc is the pooled gradient, taken back through the
// pool and activation inside the weight-gradient kernel.
std::tuple<at::Tensor, at::Tensor> weight_grad(const char* op, const at::Tensor& gc, const at::Tensor* act,
                                               const at::Tensor& x, const ConvShape& s, int64_t padding,
                                               const Variant& v = Variant{}) {
  if (s.N == 0 || s.OC == 0)
    return {at::zeros({s.OC, s.IC, kKernel, kKernel}, x.options()), at::zeros({s.OC}, x.options())};
  LF_CHECK(conv_weight_grad_shared_bytes(s.H, s.W, padding) <= kSharedBytes, op,
           "on CUDA, one padded input plane and one output-gradient plane must fit in 48 KB of shared memory: ",
           conv_weight_grad_shared_bytes(s.H, s.W, padding) / 4, " floats > ", kSharedBytes / 4,
           "; reduce the image size");
  LF_CHECK(s.IC < 65535 && s.OC <= 65535, op, "at most 65534 input and 65535 output channels on CUDA, got ", s.IC,
           " and ", s.OC);
  const at::Tensor xc = x.contiguous();
  at::Tensor dw = new_output({s.OC, s.IC, kKernel, kKernel}, x.options());
  at::Tensor db = new_output({s.OC}, x.options());
  at::Tensor partial = at::empty({grad_chunks(s.N) * (s.OC * s.IC * kTaps + s.OC)}, x.options());
  check_launch(op, launch_conv_weight_grad(ptr(gc), act ? ptr(*act) : nullptr, ptr(xc), mut(partial), mut(dw),
                                           mut(db), s.N, s.IC, s.H, s.W, s.OC, padding, v, stream()));
  return {dw, db};
}

std::tuple<at::Tensor, at::Tensor> conv5x5_backward_weight_cuda(const at::Tensor& grad, const at::Tensor& x,
                                                                int64_t padding) {
  const char* op = "conv5x5_backward_weight";
  const ConvShape s = check_conv_weight_grad(op, grad, nullptr, x, padding, device_type());
  const Guard guard(x);
  return weight_grad(op, grad.contiguous(), nullptr, x, s, padding);
}

// The fused op's weight gradient from its pooled gradient: the pool + activation backward happens
// in the weight-gradient kernel as it stages each plane (the full-resolution gradient is never
// written).
std::tuple<at::Tensor, at::Tensor> conv5x5_act_pool_backward_weight_cuda(const at::Tensor& grad,
                                                                          const at::Tensor& act,
                                                                          const at::Tensor& x, int64_t padding,
                                                                          c10::string_view activation, c10::string_view pooling, double negative_slope) {
  const char* op = "conv5x5_act_pool_backward_weight";
  const ConvShape s = check_conv_weight_grad(op, grad, &act, x, padding, device_type());
  const Variant v = parse_variant(op, activation, pooling, negative_slope);
  const Guard guard(x);
  const at::Tensor gc = grad.contiguous(), ac = act.contiguous();
  return weight_grad(op, gc, &ac, x, s, padding, v);
}

}  // namespace

// Launches conv5x5_forward_kernel after the checks a CUDA launch of it needs.
void conv_forward(const char* op, const float* x, const float* w, const float* bias, float* y, float* act,
                  int64_t N, int64_t IC, int64_t H, int64_t W, int64_t OC, int64_t pad, bool fused,
                  const Variant& v) {
  const int64_t Ho = H + 2 * pad - 4, Wo = W + 2 * pad - 4;
  check_conv_fits(op, IC, H, W, OC, pad);
  check_int32(op, "one image", std::max(IC * H * W, OC * Ho * Wo) + OC * (Ho + Wo));
  LF_CHECK(N <= 2147483647, op, "a batch of ", N, " images exceeds the CUDA grid limit");
  check_launch(op, launch_conv_forward(x, w, bias, y, act, N, IC, H, W, OC, pad, fused, v, stream()));
}


void register_conv(torch::Library& m) {
  m.impl("conv5x5", &conv5x5_cuda);
  m.impl("conv5x5_act_pool", &conv5x5_act_pool_cuda);
  m.impl("conv5x5_backward_input", &conv5x5_backward_input_cuda);
  m.impl("conv5x5_backward_weight", &conv5x5_backward_weight_cuda);
  m.impl("conv5x5_act_pool_backward_weight", &conv5x5_act_pool_backward_weight_cuda);
}

}  // namespace cuda
}  // namespace lenet_fast
