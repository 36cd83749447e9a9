// CPU implementations of the fully connected ops (nn.Linear layouts, optional fused activation).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "ops/checks.h"
#include "kernels/cpu/kernels.h"

namespace lenet_fast {
namespace {

at::Tensor linear_impl(const char* op, const at::Tensor& x, const at::Tensor& w,
                       const at::Tensor& b, bool activate, const Variant& v) {
  check_linear(op, x, w, b, at::kCPU);
  const int64_t K = w.size(1), J = w.size(0);
  const at::Tensor x2 = as_matrix(x).contiguous();
  const at::Tensor wc = w.contiguous(), bc = b.contiguous();
  const int64_t N = x2.size(0);
  at::Tensor y = at::empty({N, J}, x.options());
  cpu::LinearArgs a{x2.data_ptr<float>(), wc.data_ptr<float>(), bc.data_ptr<float>(),
                    y.data_ptr<float>(), K, J, activate, v};
  const int64_t grain = std::max<int64_t>(1, 1000000 / std::max<int64_t>(2 * K * J, 1));
  at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
    cpu::kernels().linear_forward(a, n0, n1);
  });
  return y.view(linear_out_sizes(x, J));
}

at::Tensor linear_cpu(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return linear_impl("linear", x, w, b, false, Variant{});
}

at::Tensor linear_act_cpu(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                           c10::string_view activation, double negative_slope) {
  const char* op = "linear_act";
  return linear_impl(op, x, w, b, true, parse_activation(op, activation, negative_slope));
}

at::Tensor linear_backward_input_cpu(const at::Tensor& grad, const at::Tensor& w) {
  const char* op = "linear_backward_input";
  check_linear_input_grad(op, grad, w, at::kCPU);
  const int64_t K = w.size(1), J = w.size(0);
  const at::Tensor g2 = as_matrix(grad).contiguous(), wc = w.contiguous();
  const int64_t N = g2.size(0);
  at::Tensor dx = at::empty({N, K}, grad.options());
  const int64_t grain = std::max<int64_t>(1, 1000000 / std::max<int64_t>(2 * K * J, 1));
  at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
    cpu::kernels().linear_backward_input(g2.data_ptr<float>(), wc.data_ptr<float>(),
                                         dx.data_ptr<float>(), K, J, n0, n1);
  });
  return dx.view(linear_out_sizes(grad, K));
}

std::tuple<at::Tensor, at::Tensor> linear_backward_weight_cpu(const at::Tensor& grad,
                                                              const at::Tensor& x) {
  const char* op = "linear_backward_weight";
  check_linear_weight_grad(op, grad, x, at::kCPU);
  const int64_t K = x.size(-1), J = grad.size(-1);
  const at::Tensor g2 = as_matrix(grad).contiguous(), x2 = as_matrix(x).contiguous();
  const int64_t N = g2.size(0);
  at::Tensor dw = at::empty({J, K}, x.options());
  at::Tensor db = at::empty({J}, x.options());
  // Split over output rows: each row of dW is summed by one thread in batch order (deterministic).
  const int64_t grain = std::max<int64_t>(4, 1000000 / std::max<int64_t>(2 * K * N, 1));
  at::parallel_for(0, J, grain, [&](int64_t j0, int64_t j1) {
    cpu::kernels().linear_backward_weight(g2.data_ptr<float>(), x2.data_ptr<float>(),
                                          dw.data_ptr<float>(), db.data_ptr<float>(), N, K, J, j0,
                                          j1);
  });
  return {dw, db};
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_fast, CPU, m) {
  m.impl("linear", &linear_cpu);
  m.impl("linear_act", &linear_act_cpu);
  m.impl("linear_backward_input", &linear_backward_input_cpu);
  m.impl("linear_backward_weight", &linear_backward_weight_cpu);
}

}  // namespace lenet_fast
