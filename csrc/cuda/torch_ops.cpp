// The CUDA implementations of lenet_fast's ops, torch side: argument checks (checks.h, shared with
// the CPU), output allocation, device guard and stream, then the launchers (launchers.h), whose
// errors become exceptions naming the op. Compiled by the host compiler into CUDA builds.
//
// The same file, with LENET_FAST_CUDASIM defined, is the torch side of the simulated build
// (tests/cudasim.py): the kernels then run on the CPU under csrc/cuda/sim/, the tensors are CPU
// tensors, and the ops register as lenet_fast_cudasim::* with lenet_fast's own schemas, so the
// tests call the very code a CUDA build runs. In that build, outputs start as NaN so that an
// element no kernel writes cannot pass for a result.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "../checks.h"
#include "launchers.h"
#include "net_ops.h"

#if defined(LENET_FAST_CUDASIM)
#include <ATen/core/dispatch/Dispatcher.h>
#else
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace lenet_fast {
namespace cuda {
namespace {

#if defined(LENET_FAST_CUDASIM)
constexpr at::DeviceType kDevice = at::kCPU;
struct Guard {
  explicit Guard(const at::Tensor&) {}
};
cudaStream_t stream() { return nullptr; }
at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  return at::empty(sizes, options).fill_(std::numeric_limits<float>::quiet_NaN());
}
#else
constexpr at::DeviceType kDevice = at::kCUDA;
struct Guard {  // the tensor's device is current while the op runs
  explicit Guard(const at::Tensor& t) : guard(t.device()) {}
  c10::cuda::CUDAGuard guard;
};
cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream(); }
at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) { return at::empty(sizes, options); }
#endif

// A launcher's error as an exception naming the op (C10_CUDA_CHECK's message on a GPU).
void check_launch(const char* op, cudaError_t err) {
  if (err == cudaSuccess) return;
#if defined(LENET_FAST_CUDASIM)
  TORCH_CHECK(false, "lenet_fast::", op, ": CUDA error: ", cudaGetErrorString(err), " (cudasim: ",
              cudasim::last_error_detail(), ")");
#else
  LF_CHECK(false, op, "CUDA kernel launch failed: ", cudaGetErrorString(err));
#endif
}

const float* ptr(const at::Tensor& t) { return t.numel() ? t.data_ptr<float>() : nullptr; }
float* mut(at::Tensor& t) { return t.numel() ? t.data_ptr<float>() : nullptr; }

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

// Launches conv5x5_forward_kernel after the checks a CUDA launch of it needs.
void conv_forward(const char* op, const float* x, const float* w, const float* bias, float* y, float* act,
                  int64_t N, int64_t IC, int64_t H, int64_t W, int64_t OC, int64_t pad, bool fused,
                  const Variant& v = Variant{}) {
  const int64_t Ho = H + 2 * pad - 4, Wo = W + 2 * pad - 4;
  check_conv_fits(op, IC, H, W, OC, pad);
  check_int32(op, "one image", std::max(IC * H * W, OC * Ho * Wo) + OC * (Ho + Wo));
  LF_CHECK(N <= 2147483647, op, "a batch of ", N, " images exceeds the CUDA grid limit");
  check_launch(op, launch_conv_forward(x, w, bias, y, act, N, IC, H, W, OC, pad, fused, v, stream()));
}

at::Tensor conv5x5_cuda(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, int64_t padding) {
  const char* op = "conv5x5";
  const ConvShape s = check_conv(op, x, w, b, padding, kDevice);
  const Guard guard(x);
  const at::Tensor xc = x.contiguous(), wc = w.contiguous(), bc = b.contiguous();
  at::Tensor y = new_output({s.N, s.OC, s.Ho, s.Wo}, x.options());
  conv_forward(op, ptr(xc), ptr(wc), ptr(bc), mut(y), nullptr, s.N, s.IC, s.H, s.W, s.OC, padding, false);
  return y;
}

std::tuple<at::Tensor, at::Tensor> conv5x5_tanh_pool_cuda(const at::Tensor& x, const at::Tensor& w,
                                                          const at::Tensor& b, int64_t padding, bool save_act,
                                                          c10::string_view activation, c10::string_view pooling, double negative_slope) {
  const char* op = "conv5x5_tanh_pool";
  const ConvShape s = check_conv(op, x, w, b, padding, kDevice);
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
  const auto [H, W] = check_conv_input_grad(op, grad, w, padding, kDevice);
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
  at::Tensor partial = at::empty({conv_weight_grad_chunks(s.N) * (s.OC * s.IC * kTaps + s.OC)}, x.options());
  check_launch(op, launch_conv_weight_grad(ptr(gc), act ? ptr(*act) : nullptr, ptr(xc), mut(partial), mut(dw),
                                           mut(db), s.N, s.IC, s.H, s.W, s.OC, padding, v, stream()));
  return {dw, db};
}

std::tuple<at::Tensor, at::Tensor> conv5x5_backward_weight_cuda(const at::Tensor& grad, const at::Tensor& x,
                                                                int64_t padding) {
  const char* op = "conv5x5_backward_weight";
  const ConvShape s = check_conv_weight_grad(op, grad, nullptr, x, padding, kDevice);
  const Guard guard(x);
  return weight_grad(op, grad.contiguous(), nullptr, x, s, padding);
}

// The fused op's weight gradient from its pooled gradient: the pool + activation backward happens
// in the weight-gradient kernel as it stages each plane (the full-resolution gradient is never
// written).
std::tuple<at::Tensor, at::Tensor> conv5x5_tanh_pool_backward_weight_cuda(const at::Tensor& grad,
                                                                          const at::Tensor& act,
                                                                          const at::Tensor& x, int64_t padding,
                                                                          c10::string_view activation, c10::string_view pooling, double negative_slope) {
  const char* op = "conv5x5_tanh_pool_backward_weight";
  const ConvShape s = check_conv_weight_grad(op, grad, &act, x, padding, kDevice);
  const Variant v = parse_variant(op, activation, pooling, negative_slope);
  const Guard guard(x);
  const at::Tensor gc = grad.contiguous(), ac = act.contiguous();
  return weight_grad(op, gc, &ac, x, s, padding, v);
}

at::Tensor tanh_pool_backward_cuda(const at::Tensor& grad, const at::Tensor& act, c10::string_view activation, c10::string_view pooling, double negative_slope) {
  const char* op = "tanh_pool_backward";
  check_tanh_pool_backward(op, grad, act, kDevice);
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
  check_devices(op, kDevice, {{"x", &x}});
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
  check_avg_pool_backward(op, grad, H, W, kDevice);
  const Guard guard(grad);
  const at::Tensor gc = grad.contiguous();
  at::Tensor dx = new_output({grad.size(0), grad.size(1), H, W}, grad.options());
  check_launch(op, launch_act_pool_backward(ptr(gc), nullptr, mut(dx), grad.size(0) * grad.size(1), H, W, Variant{},
                                            stream()));
  return dx;
}

at::Tensor tanh_cuda(const at::Tensor& x, c10::string_view activation, double negative_slope) {
  const char* op = "tanh";
  const Variant v = parse_variant(op, activation, "avg", negative_slope);
  check_float32(op, "x", x);
  check_devices(op, kDevice, {{"x", &x}});
  const Guard guard(x);
  const at::Tensor xc = x.contiguous();
  at::Tensor y = new_output(x.sizes(), x.options());
  check_launch(op, launch_act_forward(ptr(xc), mut(y), y.numel(), v, stream()));
  return y;
}

at::Tensor tanh_backward_cuda(const at::Tensor& grad, const at::Tensor& y, c10::string_view activation,
                              double negative_slope) {
  const char* op = "tanh_backward";
  const Variant v = parse_variant(op, activation, "avg", negative_slope);
  check_tanh_backward(op, grad, y, kDevice);
  const Guard guard(y);
  const at::Tensor gc = grad.contiguous(), yc = y.contiguous();
  at::Tensor dx = new_output(y.sizes(), y.options());
  check_launch(op, launch_act_backward(ptr(gc), ptr(yc), mut(dx), dx.numel(), v, stream()));
  return dx;
}

// act: the activation after the bias, or null for none.
at::Tensor linear_impl(const char* op, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                       const Variant* act) {
  check_linear(op, x, w, b, kDevice);
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

at::Tensor linear_tanh_cuda(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, c10::string_view activation,
                            double negative_slope) {
  const char* op = "linear_tanh";
  const Variant v = parse_variant(op, activation, "avg", negative_slope);
  return linear_impl(op, x, w, b, &v);
}

at::Tensor linear_backward_input_cuda(const at::Tensor& grad, const at::Tensor& w) {
  const char* op = "linear_backward_input";
  check_linear_input_grad(op, grad, w, kDevice);
  const Guard guard(grad);
  const int64_t K = w.size(1), J = w.size(0);
  const at::Tensor g2 = as_matrix(grad).contiguous(), wc = w.contiguous();
  at::Tensor dx = new_output({g2.size(0), K}, grad.options());  // the GEMM writes every element
  check_launch(op, launch_gemm(ptr(g2), J, 1, ptr(wc), K, 1, mut(dx), g2.size(0), K, J, nullptr, nullptr, nullptr, stream()));
  return dx.view(linear_out_sizes(grad, K));
}

std::tuple<at::Tensor, at::Tensor> linear_backward_weight_cuda(const at::Tensor& grad, const at::Tensor& x) {
  const char* op = "linear_backward_weight";
  check_linear_weight_grad(op, grad, x, kDevice);
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

at::Tensor gather_normalize_cuda(const at::Tensor& images, const at::Tensor& index, double mean, double std) {
  const char* op = "gather_normalize";
  check_gather_normalize(op, images, index, std, kDevice);
  const Guard guard(images);
  const at::Tensor src = images.contiguous(), idx = index.contiguous();
  const int64_t n = src.size(0), B = idx.size(0), row = n ? src.numel() / n : 0;
  std::vector<int64_t> shape(images.sizes().begin(), images.sizes().end());
  shape[0] = B;
  at::Tensor out = new_output(shape, images.options().dtype(at::kFloat));
  check_launch(op, launch_gather_normalize(src.numel() ? src.data_ptr<uint8_t>() : nullptr,
                                           idx.numel() ? idx.data_ptr<int64_t>() : nullptr, mut(out), n, B, row,
                                           static_cast<float>(mean), static_cast<float>(std), stream()));
  return out;
}

bool fused_geometry(const Lenet5Shape& s, int64_t padding) {
  return net_geometry_fits(s.c1.IC, s.c1.H, s.c1.W, padding, s.c1.OC, s.c2.OC, s.J1, s.J2, s.J3) &&
         s.c1.N <= int64_t{2147483647} * 8;
}

// The ten parameters, contiguous, in model order.
std::vector<at::Tensor> contiguous_params(std::initializer_list<const at::Tensor*> params) {
  std::vector<at::Tensor> c;
  for (const at::Tensor* t : params) c.push_back(t->contiguous());
  return c;
}

NetParams net_params(const std::vector<at::Tensor>& c) {  // contiguous, in model order
  return {ptr(c[0]), ptr(c[1]), ptr(c[2]), ptr(c[3]), ptr(c[4]), ptr(c[5]), ptr(c[6]), ptr(c[7]), ptr(c[8]), ptr(c[9])};
}

// The inference forward: one kernel (lenet5.cu) for LeNet-5's geometry; other shapes run the
// per-layer kernels back to back, intermediate activations in temporary buffers.
at::Tensor lenet5_forward_cuda(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2,
                               const at::Tensor& b2, const at::Tensor& f1w, const at::Tensor& f1b,
                               const at::Tensor& f2w, const at::Tensor& f2b, const at::Tensor& f3w,
                               const at::Tensor& f3b, int64_t padding, double mean, double std,
                               c10::string_view activation, c10::string_view pooling, double negative_slope) {
  const char* op = "lenet5_forward";
  const Variant v = parse_variant(op, activation, pooling, negative_slope);
  const Lenet5Shape s = check_lenet5(op, x, w1, b1, w2, b2, f1w, f1b, f2w, f2b, f3w, f3b, padding, kDevice,
                                     /*x_may_be_uint8=*/true);
  check_lenet5_normalize(op, x, mean, std);
  const Guard guard(x);
  const int64_t N = s.c1.N;
  const bool u8 = x.scalar_type() == at::kByte;
  at::Tensor y = new_output({N, s.J3}, x.options().dtype(at::kFloat));
  if (N == 0) return y;
  const std::vector<at::Tensor> c = contiguous_params({&w1, &b1, &w2, &b2, &f1w, &f1b, &f2w, &f2b, &f3w, &f3b});
  if (fused_geometry(s, padding)) {
    const at::Tensor xc = x.contiguous();
    check_launch(op, launch_net_forward(u8 ? nullptr : ptr(xc), u8 ? xc.data_ptr<uint8_t>() : nullptr,
                                        static_cast<float>(mean), static_cast<float>(std), net_params(c), mut(y),
                                        nullptr, N, s.c1.H, s.c1.W, padding, s.J3, v, stream()));
    return y;
  }
  // uint8 on the per-layer path: normalised by gather_normalize's kernel, every row in order
  const at::Tensor xc = u8 ? gather_normalize_cuda(x, at::arange(N, x.options().dtype(at::kLong)), mean, std)
                           : x.contiguous();
  at::Tensor a1 = new_output({N, s.c1.OC, s.c1.Ho / 2, s.c1.Wo / 2}, y.options());
  at::Tensor a2 = new_output({N, s.F}, y.options());
  at::Tensor h1 = new_output({N, s.J1}, y.options());
  at::Tensor h2 = new_output({N, s.J2}, y.options());
  conv_forward(op, ptr(xc), ptr(c[0]), ptr(c[1]), mut(a1), nullptr, N, s.c1.IC, s.c1.H, s.c1.W, s.c1.OC, padding, true, v);
  conv_forward(op, ptr(a1), ptr(c[2]), ptr(c[3]), mut(a2), nullptr, N, s.c2.IC, s.c2.H, s.c2.W, s.c2.OC, 0, true, v);
  check_launch(op, launch_gemm(ptr(a2), s.F, 1, ptr(c[4]), 1, s.F, mut(h1), N, s.J1, s.F, ptr(c[5]), &v, nullptr, stream()));
  check_launch(op, launch_gemm(ptr(h1), s.J1, 1, ptr(c[6]), 1, s.J1, mut(h2), N, s.J2, s.J1, ptr(c[7]), &v, nullptr, stream()));
  check_launch(op, launch_gemm(ptr(h2), s.J2, 1, ptr(c[8]), 1, s.J2, mut(y), N, s.J3, s.J2, ptr(c[9]), nullptr, nullptr, stream()));
  return y;
}

}  // namespace

std::optional<std::tuple<at::Tensor, std::vector<at::Tensor>>> lenet5_forward_train_fused(
    const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2,
    const at::Tensor& f1w, const at::Tensor& f1b, const at::Tensor& f2w, const at::Tensor& f2b,
    const at::Tensor& f3w, const at::Tensor& f3b, int64_t padding, const Variant& v) {
  const char* op = "lenet5_forward_train";
  const Lenet5Shape s = check_lenet5(op, x, w1, b1, w2, b2, f1w, f1b, f2w, f2b, f3w, f3b, padding, kDevice);
  if (s.c1.N == 0 || !fused_geometry(s, padding)) return std::nullopt;
  using G = NetGeometry;
  const Guard guard(x);
  const int64_t N = s.c1.N;
  const std::vector<at::Tensor> c = contiguous_params({&w1, &b1, &w2, &b2, &f1w, &f1b, &f2w, &f2b, &f3w, &f3b});
  const at::Tensor xc = x.contiguous();
  const auto o = x.options();
  at::Tensor logits = new_output({N, s.J3}, o);
  std::vector<at::Tensor> saved = {new_output({N, G::kC1, G::kO1, G::kO1}, o), new_output({N, G::kC1, G::kQ1, G::kQ1}, o),
                                   new_output({N, G::kC2, G::kO2, G::kO2}, o), new_output({N, G::kF}, o),
                                   new_output({N, G::kJ1}, o),                 new_output({N, G::kJ2}, o)};
  const NetSaved ns{mut(saved[0]), mut(saved[1]), mut(saved[2]), mut(saved[3]), mut(saved[4]), mut(saved[5])};
  check_launch(op, launch_net_forward(ptr(xc), nullptr, 0.0f, 1.0f, net_params(c), mut(logits), &ns, N, s.c1.H,
                                      s.c1.W, padding, s.J3, v, stream()));
  return std::make_tuple(logits, saved);
}

std::optional<std::vector<at::Tensor>> lenet5_backward_fused(const at::Tensor& grad, const at::Tensor& x,
                                                             const at::Tensor& w1, const at::Tensor& w2,
                                                             const at::Tensor& f1w, const at::Tensor& f2w,
                                                             const at::Tensor& f3w, at::TensorList saved,
                                                             int64_t padding, std::array<bool, 11> need,
                                                             const Variant& v) {
  using G = NetGeometry;
  const char* op = "lenet5_backward";
  // The fused kernels compute every parameter's gradient and not x's: the mask of a training step.
  if (need[0] || !std::all_of(need.begin() + 1, need.end(), [](bool b) { return b; })) return std::nullopt;
  const int64_t N = x.size(0), J3 = f3w.size(0);
  if (N == 0 || x.dim() != 4 || !net_geometry_fits(x.size(1), x.size(2), x.size(3), padding, w1.size(0), w2.size(0),
                                                   f1w.size(0), f2w.size(0), J3))
    return std::nullopt;
  // The saved tensors must be the fused forward's: same shapes as the per-layer composition's.
  const std::vector<std::vector<int64_t>> shapes = {{N, G::kC1, G::kO1, G::kO1}, {N, G::kC1, G::kQ1, G::kQ1},
                                                    {N, G::kC2, G::kO2, G::kO2}, {N, G::kF}, {N, G::kJ1}, {N, G::kJ2}};
  for (size_t i = 0; i < shapes.size(); ++i)
    LF_CHECK(saved[i].sizes() == at::IntArrayRef(shapes[i]), op, "expected saved[", i, "] of shape ",
             at::IntArrayRef(shapes[i]), ", got ", saved[i].sizes());
  LF_CHECK(grad.dim() == 2 && grad.size(0) == N && grad.size(1) == J3, op, "expected grad of shape (", N, ", ", J3,
           "), got ", grad.sizes());
  for (const at::Tensor* t : {&grad, &x, &w1, &w2, &f1w, &f2w, &f3w}) check_float32(op, "every tensor", *t);
  const Guard guard(x);
  auto c = [](const at::Tensor& t) { return t.contiguous(); };
  const at::Tensor gc = c(grad), xc = c(x), w2c = c(w2), f1wc = c(f1w), f2wc = c(f2w), f3wc = c(f3w);
  std::vector<at::Tensor> sv;
  for (const at::Tensor& t : saved) sv.push_back(c(t));
  const auto o = x.options();
  at::Tensor g2 = at::empty({N, G::kJ2}, o), g1 = at::empty({N, G::kJ1}, o);
  at::Tensor dpre2 = at::empty({N, G::kC2, G::kO2, G::kO2}, o), dp1 = at::empty({N, G::kC1, G::kQ1, G::kQ1}, o);
  const NetLayout L = net_layout(J3);
  at::Tensor partial = at::empty({net_grad_chunks(N) * L.total}, o);
  const NetParams p{nullptr, nullptr, ptr(w2c), nullptr, ptr(f1wc), nullptr, ptr(f2wc), nullptr, ptr(f3wc), nullptr};
  const NetSaved ns{const_cast<float*>(ptr(sv[0])), const_cast<float*>(ptr(sv[1])), const_cast<float*>(ptr(sv[2])),
                    const_cast<float*>(ptr(sv[3])), const_cast<float*>(ptr(sv[4])), const_cast<float*>(ptr(sv[5]))};
  const NetGrads d{mut(g2), mut(g1), mut(dpre2), mut(dp1)};
  std::vector<at::Tensor> grads = {at::empty({0}, o)};
  NetGradOut out{};
  for (const at::Tensor* w : {&w1, &w2, &f1w, &f2w, &f3w}) {
    grads.push_back(new_output(w->sizes(), o));
    grads.push_back(new_output({w->size(0)}, o));
  }
  for (int i = 0; i < 10; ++i) out.p[i] = mut(grads[i + 1]);
  check_launch(op, launch_net_backward(ptr(gc), ptr(xc), p, ns, d, mut(partial), out, N, x.size(2), x.size(3),
                                       padding, J3, v, stream()));
  return grads;
}

}  // namespace cuda
}  // namespace lenet_fast

#if defined(LENET_FAST_CUDASIM)
// The simulated build's library: lenet_fast's schemas (read from the dispatcher, so lenet_fast must
// be loaded first) under the namespace lenet_fast_cudasim, implemented for CPU tensors; plus two
// controls for the tests.
namespace {

void set_order(int64_t order, int64_t seed) {
  cudasim::set_order(order == 1 ? cudasim::Order::Reverse : order == 2 ? cudasim::Order::Shuffle
                                                                        : cudasim::Order::Forward,
                     static_cast<unsigned>(seed));
}

std::vector<int64_t> stats() {
  return {cudasim::stats().launches.load(), cudasim::stats().blocks.load(), cudasim::stats().threads.load()};
}

}  // namespace

TORCH_LIBRARY(lenet_fast_cudasim, m) {
  int defined = 0;
  for (const c10::OperatorName& name : c10::Dispatcher::singleton().getAllOpNames()) {
    if (name.name.rfind("lenet_fast::", 0) != 0 || name.name.rfind("lenet_fast::triton_", 0) == 0) continue;
    const auto op = c10::Dispatcher::singleton().findSchema(name);
    std::string schema = c10::toString(op->schema());
    schema.replace(0, std::string("lenet_fast::").size(), "lenet_fast_cudasim::");
    m.def(schema.c_str());
    ++defined;
  }
  TORCH_CHECK(defined > 0, "lenet_fast_cudasim: load lenet_fast (import lenet_fast) before the simulated build");
  m.def("_set_order(int order, int seed) -> ()", &set_order);
  m.def("_stats() -> int[]", &stats);
}
#define LF_CUDA_IMPL TORCH_LIBRARY_IMPL(lenet_fast_cudasim, CPU, m)
#else
#define LF_CUDA_IMPL TORCH_LIBRARY_IMPL(lenet_fast, CUDA, m)
#endif

LF_CUDA_IMPL {
  using namespace lenet_fast::cuda;
  m.impl("conv5x5", &conv5x5_cuda);
  m.impl("conv5x5_tanh_pool", &conv5x5_tanh_pool_cuda);
  m.impl("conv5x5_backward_input", &conv5x5_backward_input_cuda);
  m.impl("conv5x5_backward_weight", &conv5x5_backward_weight_cuda);
  m.impl("conv5x5_tanh_pool_backward_weight", &conv5x5_tanh_pool_backward_weight_cuda);
  m.impl("tanh_pool_backward", &tanh_pool_backward_cuda);
  m.impl("avg_pool2x2", &avg_pool2x2_cuda);
  m.impl("avg_pool2x2_backward", &avg_pool2x2_backward_cuda);
  m.impl("tanh", &tanh_cuda);
  m.impl("tanh_backward", &tanh_backward_cuda);
  m.impl("linear", &linear_cuda);
  m.impl("linear_tanh", &linear_tanh_cuda);
  m.impl("linear_backward_input", &linear_backward_input_cuda);
  m.impl("linear_backward_weight", &linear_backward_weight_cuda);
  m.impl("gather_normalize", &gather_normalize_cuda);
  m.impl("lenet5_forward", &lenet5_forward_cuda);
}
