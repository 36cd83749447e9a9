// The CUDA fully connected ops, torch side: one strided GEMM read three ways (kernels/cuda/linear.cu).
#include <ATen/ATen.h>
#include <torch/library.h>

#include "ops/cuda/context.h"

namespace lenet_fast {
namespace cuda {
namespace {

// act: the activation after the bias, or null for none.
at::Tensor linear_impl(const char* op, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                       const Variant* act) {
  check_linear(op, x, w, b, device_type());
  const Guard guard(x);
  const int64_t K = w.size(1), J = w.size(0);
  const at::Tensor x2 = as_matrix(x).contiguous(), wc = w.contiguous(), bc = b.contiguous();
  const int64_t N = x2.size(0);
  at::Tensor y = new_output({N, J}, x.options());
  // K == 0 too: the sum over no features is 0, so y is the bias (through the activation, as on the CPU)
  check_launch(op, launch_gemm(ptr(x2), K, 1, ptr(wc), 1, K, mut(y), N, J, K, ptr(bc), act, nullptr, stream()));
  return y.view(linear_out_sizes(x, J));
}

at::Tensor linear_cuda(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return linear_impl("linear", x, w, b, nullptr);
}

at::Tensor linear_act_cuda(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, c10::string_view activation,
                            double negative_slope) {
  const char* op = "linear_act";
  const Variant v = parse_activation(op, activation, negative_slope);
  return linear_impl(op, x, w, b, &v);
}

at::Tensor linear_backward_input_cuda(const at::Tensor& grad, const at::Tensor& w) {
  const char* op = "linear_backward_input";
  check_linear_input_grad(op, grad, w, device_type());
  const Guard guard(grad);
  const int64_t K = w.size(1), J = w.size(0);
  const at::Tensor g2 = as_matrix(grad).contiguous(), wc = w.contiguous();
  at::Tensor dx = new_output({g2.size(0), K}, grad.options());  // the GEMM writes every element
  check_launch(op, launch_gemm(ptr(g2), J, 1, ptr(wc), K, 1, mut(dx), g2.size(0), K, J, nullptr, nullptr, nullptr, stream()));
  return dx.view(linear_out_sizes(grad, K));
}

std::tuple<at::Tensor, at::Tensor> linear_backward_weight_cuda(const at::Tensor& grad, const at::Tensor& x) {
  const char* op = "linear_backward_weight";
  check_linear_weight_grad(op, grad, x, device_type());
  const Guard guard(x);
  const int64_t K = x.size(-1), J = grad.size(-1);
  const at::Tensor g2 = as_matrix(grad).contiguous(), x2 = as_matrix(x).contiguous();
  const int64_t N = g2.size(0);
  if (N == 0) return {at::zeros({J, K}, x.options()), at::zeros({J}, x.options())};
  at::Tensor dw = new_output({J, K}, x.options());  // the GEMM and the channel sum write all of it
  at::Tensor db = new_output({J}, x.options());
  check_launch(op, launch_gemm(ptr(g2), 1, J, ptr(x2), K, 1, mut(dw), J, K, N, nullptr, nullptr, mut(db), stream()));
  return {dw, db};
}

}  // namespace

void register_linear(torch::Library& m) {
  m.impl("linear", &linear_cuda);
  m.impl("linear_act", &linear_act_cuda);
  m.impl("linear_backward_input", &linear_backward_input_cuda);
  m.impl("linear_backward_weight", &linear_backward_weight_cuda);
}

}  // namespace cuda
}  // namespace lenet_fast
