// CPU implementations of the convolution ops: argument checks, weight packing and the split of the
// batch over threads; the arithmetic lives in kernels_impl.h.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "ops/checks.h"
#include "ops/cpu/conv_pack.h"
#include "kernels/cpu/kernels.h"

namespace lenet_fast {
namespace {

using cpu::PackedConv;
using cpu::check_image_size;
using cpu::conv_grain;
using cpu::forward_args;

void run_conv_forward(const cpu::ConvForwardArgs& a, int64_t N, int64_t grain) {
  const int64_t scratch = cpu::conv_forward_scratch(a.IC, a.H + 2 * a.pad, a.W + 2 * a.pad);
  at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
    const auto buf = cpu::scratch_buffer(scratch);
    cpu::kernels().conv_forward(a, n0, n1, buf.get());
  });
}

at::Tensor conv5x5_cpu(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                       int64_t padding) {
  const char* op = "conv5x5";
  const ConvShape s = check_conv(op, x, w, b, padding, at::kCPU);
  check_image_size(op, s.IC, s.H + 2 * padding, s.W + 2 * padding);
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty({s.N, s.OC, s.Ho, s.Wo}, x.options());
  if (s.N == 0) return y;
  const PackedConv p(w, b, s.H + 2 * padding, s.W + 2 * padding);
  cpu::ConvForwardArgs a = forward_args(s, p, xc.data_ptr<float>());
  a.y = y.data_ptr<float>();
  run_conv_forward(a, s.N, conv_grain(s));
  return y;
}

std::tuple<at::Tensor, at::Tensor> conv5x5_act_pool_cpu(const at::Tensor& x, const at::Tensor& w,
                                                         const at::Tensor& b, int64_t padding,
                                                         bool save_act, c10::string_view activation, c10::string_view pooling, double negative_slope) {
  const char* op = "conv5x5_act_pool";
  const ConvShape s = check_conv(op, x, w, b, padding, at::kCPU);
  const Variant v = parse_variant(op, activation, pooling, negative_slope);
  check_image_size(op, s.IC, s.H + 2 * padding, s.W + 2 * padding);
  LF_CHECK(s.Ho >= 2 && s.Wo >= 2, op, "expected a convolution output of at least 2x2 to pool, got ",
           s.Ho, "x", s.Wo, " from x ", x.sizes());
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty({s.N, s.OC, s.Ho / 2, s.Wo / 2}, x.options());
  at::Tensor act = save_act ? at::empty({s.N, s.OC, s.Ho, s.Wo}, x.options())
                            : at::empty({0}, x.options());
  if (s.N == 0) return {y, act};
  const PackedConv p(w, b, s.H + 2 * padding, s.W + 2 * padding);
  cpu::ConvForwardArgs a = forward_args(s, p, xc.data_ptr<float>());
  a.y = y.data_ptr<float>();
  a.act = save_act ? act.data_ptr<float>() : nullptr;
  a.fused = true;
  a.v = v;
  run_conv_forward(a, s.N, conv_grain(s));
  return {y, act};
}

at::Tensor conv5x5_backward_input_cpu(const at::Tensor& grad, const at::Tensor& w,
                                      int64_t padding) {
  const char* op = "conv5x5_backward_input";
  const auto [H, W] = check_conv_input_grad(op, grad, w, padding, at::kCPU);
  const int64_t N = grad.size(0), OC = w.size(0), IC = w.size(1), Ho = grad.size(2),
                Wo = grad.size(3);
  at::Tensor dx = at::empty({N, IC, H, W}, grad.options());
  if (N == 0) return dx;
  const at::Tensor gc = grad.contiguous(), wc = w.contiguous();
  const cpu::ConvInputGradArgs a{gc.data_ptr<float>(), wc.data_ptr<float>(), dx.data_ptr<float>(),
                                 IC, H, W, OC, padding, Ho, Wo};
  const int64_t scratch = cpu::conv_input_grad_scratch(a);
  const int64_t grain = std::max<int64_t>(1, 2000000 / std::max<int64_t>(2 * Ho * Wo * OC * IC * kTaps, 1));
  at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
    const auto buf = cpu::scratch_buffer(scratch);
    cpu::kernels().conv_input_grad(a, n0, n1, buf.get());
  });
  return dx;
}

// Shared by conv5x5_backward_weight (grad at the conv output) and
// conv5x5_act_pool_backward_weight (pooled grad + saved act, taken back inside the kernel).
std::tuple<at::Tensor, at::Tensor> backward_weight_impl(const char* op, const at::Tensor& grad,
                                                        const at::Tensor* act, const at::Tensor& x,
                                                        int64_t padding, const Variant& v) {
  const ConvShape s = check_conv_weight_grad(op, grad, act, x, padding, at::kCPU);
  const int64_t Hp = s.H + 2 * padding, Wp = s.W + 2 * padding, K = s.IC * kTaps;
  check_image_size(op, s.IC, Hp, Wp);
  if (s.N == 0 || s.OC == 0)
    return {at::zeros({s.OC, s.IC, kKernel, kKernel}, x.options()), at::zeros({s.OC}, x.options())};
  at::Tensor dw = at::empty({s.OC, s.IC, kKernel, kKernel}, x.options());  // written in full below
  at::Tensor db = at::empty({s.OC}, x.options());

  const at::Tensor gc = grad.contiguous(), xc = x.contiguous();
  const at::Tensor ac = act ? act->contiguous() : at::Tensor();
  const std::vector<int32_t> taps = PackedConv::tap_offsets(s.IC, Hp, Wp);
  const cpu::ConvWeightGradArgs a = cpu::weight_grad_args(
      s, taps.data(), gc.data_ptr<float>(), act ? ac.data_ptr<float>() : nullptr, xc.data_ptr<float>(), v);

  // Deterministic: see weight_grad_chunk.
  const int64_t chunk = cpu::weight_grad_chunk(s.N);
  const int64_t chunks = (s.N + chunk - 1) / chunk;
  const int64_t part = cpu::weight_grad_partial_size(a);
  std::vector<float> partial(chunks * part, 0.0f);
  const int64_t scratch = cpu::conv_weight_grad_scratch(a);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    const auto buf = cpu::scratch_buffer(scratch);
    for (int64_t c = c0; c < c1; ++c) {
      float* dwt = partial.data() + c * part;
      cpu::kernels().conv_weight_grad(a, c * chunk, std::min(s.N, (c + 1) * chunk), dwt,
                                      dwt + K * a.OCP, buf.get());
    }
  });
  cpu::sum_weight_grad_partials(a, partial.data(), chunks, dw.data_ptr<float>(), db.data_ptr<float>());
  return {dw, db};
}

std::tuple<at::Tensor, at::Tensor> conv5x5_backward_weight_cpu(const at::Tensor& grad,
                                                               const at::Tensor& x,
                                                               int64_t padding) {
  return backward_weight_impl("conv5x5_backward_weight", grad, nullptr, x, padding, Variant{});
}

std::tuple<at::Tensor, at::Tensor> conv5x5_act_pool_backward_weight_cpu(const at::Tensor& grad,
                                                                         const at::Tensor& act,
                                                                         const at::Tensor& x,
                                                                         int64_t padding, c10::string_view activation, c10::string_view pooling, double negative_slope) {
  const char* op = "conv5x5_act_pool_backward_weight";
  return backward_weight_impl(op, grad, &act, x, padding, parse_variant(op, activation, pooling, negative_slope));
}

at::Tensor act_pool_backward_cpu(const at::Tensor& grad, const at::Tensor& act, c10::string_view activation, c10::string_view pooling, double negative_slope) {
  const char* op = "act_pool_backward";
  check_tanh_pool_backward(op, grad, act, at::kCPU);
  const Variant v = parse_variant(op, activation, pooling, negative_slope);
  const at::Tensor gc = grad.contiguous(), ac = act.contiguous();
  at::Tensor d = at::empty(act.sizes(), act.options());
  const int64_t planes = act.size(0) * act.size(1), H = act.size(2), W = act.size(3);
  at::parallel_for(0, planes, std::max<int64_t>(1, 32768 / std::max<int64_t>(H * W, 1)),
                   [&](int64_t p0, int64_t p1) {
                     cpu::kernels().act_pool_backward(gc.data_ptr<float>(), ac.data_ptr<float>(),
                                                      d.data_ptr<float>(), H, W, p0, p1, v);
                   });
  return d;
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_fast, CPU, m) {
  m.impl("conv5x5", &conv5x5_cpu);
  m.impl("conv5x5_act_pool", &conv5x5_act_pool_cpu);
  m.impl("conv5x5_backward_input", &conv5x5_backward_input_cpu);
  m.impl("conv5x5_backward_weight", &conv5x5_backward_weight_cpu);
  m.impl("conv5x5_act_pool_backward_weight", &conv5x5_act_pool_backward_weight_cpu);
  m.impl("act_pool_backward", &act_pool_backward_cpu);
}

}  // namespace lenet_fast
