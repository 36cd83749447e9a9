// CPU implementations of the standalone 2x2 average pool and activation ops.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "ops/checks.h"
#include "kernels/cpu/kernels.h"

namespace lenet_fast {
namespace {

constexpr int64_t kElementwiseGrain = 32768;

int64_t plane_grain(int64_t H, int64_t W) {
  return std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(H * W, 1));
}

at::Tensor avg_pool2x2_cpu(const at::Tensor& x) {
  const char* op = "avg_pool2x2";
  check_float32(op, "x", x);
  check_devices(op, at::kCPU, {{"x", &x}});
  check_pool_input(op, x);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty({N, C, H / 2, W / 2}, x.options());
  at::parallel_for(0, N * C, plane_grain(H, W), [&](int64_t p0, int64_t p1) {
    cpu::kernels().avg_pool_forward(xc.data_ptr<float>(), y.data_ptr<float>(), H, W, p0, p1);
  });
  return y;
}

at::Tensor avg_pool2x2_backward_cpu(const at::Tensor& grad, int64_t H, int64_t W) {
  const char* op = "avg_pool2x2_backward";
  check_avg_pool_backward(op, grad, H, W, at::kCPU);
  const int64_t N = grad.size(0), C = grad.size(1);
  const at::Tensor gc = grad.contiguous();
  at::Tensor dx = at::empty({N, C, H, W}, grad.options());
  at::parallel_for(0, N * C, plane_grain(H, W), [&](int64_t p0, int64_t p1) {
    cpu::kernels().avg_pool_backward(gc.data_ptr<float>(), dx.data_ptr<float>(), H, W, p0, p1);
  });
  return dx;
}

at::Tensor act_cpu(const at::Tensor& x, c10::string_view activation, double negative_slope) {
  const char* op = "act";
  const Variant v = parse_activation(op, activation, negative_slope);
  check_float32(op, "x", x);
  check_devices(op, at::kCPU, {{"x", &x}});
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty(x.sizes(), x.options());
  at::parallel_for(0, xc.numel(), kElementwiseGrain, [&](int64_t i0, int64_t i1) {
    cpu::kernels().act_forward(xc.data_ptr<float>(), y.data_ptr<float>(), i0, i1, v);
  });
  return y;
}

at::Tensor act_backward_cpu(const at::Tensor& grad, const at::Tensor& y, c10::string_view activation,
                             double negative_slope) {
  const char* op = "act_backward";
  const Variant v = parse_activation(op, activation, negative_slope);
  check_act_backward(op, grad, y, at::kCPU);
  const at::Tensor gc = grad.contiguous(), yc = y.contiguous();
  at::Tensor dx = at::empty(y.sizes(), y.options());
  at::parallel_for(0, yc.numel(), kElementwiseGrain, [&](int64_t i0, int64_t i1) {
    cpu::kernels().act_backward(gc.data_ptr<float>(), yc.data_ptr<float>(), dx.data_ptr<float>(), i0, i1, v);
  });
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_fast, CPU, m) {
  m.impl("avg_pool2x2", &avg_pool2x2_cpu);
  m.impl("avg_pool2x2_backward", &avg_pool2x2_backward_cpu);
  m.impl("act", &act_cpu);
  m.impl("act_backward", &act_backward_cpu);
}

}  // namespace lenet_fast
