// The CUDA elementwise ops, torch side: the activation and its backward, 2x2 average pooling and
// its backward, the fused pool + activation backward (kernels in kernels/cuda/pool_act.cu).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "ops/cuda/context.h"

namespace lenet_fast {
namespace cuda {
namespace {

at::Tensor act_pool_backward_cuda(const at::Tensor& grad, const at::Tensor& act, c10::string_view activation, c10::string_view pooling, double negative_slope) {
  const char* op = "act_pool_backward";
  check_tanh_pool_backward(op, grad, act, device_type());
  const Variant v = parse_variant(op, activation, pooling, negative_slope);
  const Guard guard(act);
  const at::Tensor gc = grad.contiguous(), ac = act.contiguous();
  at::Tensor d = new_output(act.sizes(), act.options());
  check_launch(op, launch_act_pool_backward(ptr(gc), ptr(ac), mut(d), act.size(0) * act.size(1), act.size(2),
                                            act.size(3), v, stream()));
  return d;
}

at::Tensor avg_pool2x2_cuda(const at::Tensor& x) {
  const char* op = "avg_pool2x2";
  check_float32(op, "x", x);
  check_devices(op, device_type(), {{"x", &x}});
  check_pool_input(op, x);
  const Guard guard(x);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const at::Tensor xc = x.contiguous();
  at::Tensor y = new_output({N, C, H / 2, W / 2}, x.options());
  check_launch(op, launch_avg_pool_forward(ptr(xc), mut(y), N * C, H, W, stream()));
  return y;
}

at::Tensor avg_pool2x2_backward_cuda(const at::Tensor& grad, int64_t H, int64_t W) {
  const char* op = "avg_pool2x2_backward";
  check_avg_pool_backward(op, grad, H, W, device_type());
  const Guard guard(grad);
  const at::Tensor gc = grad.contiguous();
  at::Tensor dx = new_output({grad.size(0), grad.size(1), H, W}, grad.options());
  check_launch(op, launch_act_pool_backward(ptr(gc), nullptr, mut(dx), grad.size(0) * grad.size(1), H, W, Variant{},
                                            stream()));
  return dx;
}

at::Tensor act_cuda(const at::Tensor& x, c10::string_view activation, double negative_slope) {
  const char* op = "act";
  const Variant v = parse_activation(op, activation, negative_slope);
  check_float32(op, "x", x);
  check_devices(op, device_type(), {{"x", &x}});
  const Guard guard(x);
  const at::Tensor xc = x.contiguous();
  at::Tensor y = new_output(x.sizes(), x.options());
  check_launch(op, launch_act_forward(ptr(xc), mut(y), y.numel(), v, stream()));
  return y;
}

at::Tensor act_backward_cuda(const at::Tensor& grad, const at::Tensor& y, c10::string_view activation,
                              double negative_slope) {
  const char* op = "act_backward";
  const Variant v = parse_activation(op, activation, negative_slope);
  check_act_backward(op, grad, y, device_type());
  const Guard guard(y);
  const at::Tensor gc = grad.contiguous(), yc = y.contiguous();
  at::Tensor dx = new_output(y.sizes(), y.options());
  check_launch(op, launch_act_backward(ptr(gc), ptr(yc), mut(dx), dx.numel(), v, stream()));
  return dx;
}

}  // namespace

void register_pool_act(torch::Library& m) {
  m.impl("act_pool_backward", &act_pool_backward_cuda);
  m.impl("avg_pool2x2", &avg_pool2x2_cuda);
  m.impl("avg_pool2x2_backward", &avg_pool2x2_backward_cuda);
  m.impl("act", &act_cuda);
  m.impl("act_backward", &act_backward_cuda);
}

}  // namespace cuda
}  // namespace lenet_fast
