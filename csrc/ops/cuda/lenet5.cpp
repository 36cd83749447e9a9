// The whole-network ops on CUDA, torch side: lenet5_forward (inference), lenet5_forward_train and
// lenet5_backward. LeNet-5's own geometry runs the kernels of kernels/cuda/lenet5.cu (one launch
// forward, three backward); other shapes run the per-layer kernels (inference) or compose the
// per-layer ops (training: lenet5_compose.h), as does a gradient mask other than a training step's.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>
#include <tuple>
#include <vector>

#include "ops/cuda/context.h"
#include "ops/lenet5.h"
#include "ops/lenet5_compose.h"

namespace lenet_fast {
namespace cuda {
namespace {

using T = at::Tensor;
using S = c10::string_view;

bool fused_geometry(const Lenet5Shape& s, int64_t padding) {
  return net_geometry_fits(s.c1.IC, s.c1.H, s.c1.W, padding, s.c1.OC, s.c2.OC, s.J1, s.J2, s.J3) &&
         s.c1.N <= int64_t{2147483647} * 8;
}

NetParams net_params(const std::vector<at::Tensor>& c) {  // Lenet5Params::contiguous()
  return {ptr(c[0]), ptr(c[1]), ptr(c[2]), ptr(c[3]), ptr(c[4]), ptr(c[5]), ptr(c[6]), ptr(c[7]), ptr(c[8]), ptr(c[9])};
}

const Lenet5Layers& layers() {
  static const Lenet5Layers l(op_namespace());
  return l;
}

// The inference forward: one kernel (lenet5.cu) for LeNet-5's geometry; other shapes run the
// per-layer kernels back to back, intermediate activations in temporary buffers.
at::Tensor lenet5_forward_cuda(const T& x, const T& w1, const T& b1, const T& w2, const T& b2, const T& f1w,
                               const T& f1b, const T& f2w, const T& f2b, const T& f3w, const T& f3b, int64_t padding,
                               double mean, double std, S activation, S pooling, double negative_slope) {
  const char* op = "lenet5_forward";
  const Variant v = parse_variant(op, activation, pooling, negative_slope);
  const Lenet5Params p{w1, b1, w2, b2, f1w, f1b, f2w, f2b, f3w, f3b};
  const Lenet5Shape s = check_lenet5(op, x, p, padding, device_type(), /*x_may_be_uint8=*/true);
  check_lenet5_normalize(op, x, mean, std);
  const Guard guard(x);
  const int64_t N = s.c1.N;
  const bool u8 = x.scalar_type() == at::kByte;
  at::Tensor y = new_output({N, s.J3}, x.options().dtype(at::kFloat));
  if (N == 0) return y;
  const std::vector<at::Tensor> c = p.contiguous();
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

// The training forward in one launch of net_forward_kernel, keeping what backward needs; nothing
// when the shapes are not the kernel's.
std::optional<std::tuple<at::Tensor, std::vector<at::Tensor>>> forward_train_fused(const Lenet5Shape& s, const T& x,
                                                                                   const Lenet5Params& p,
                                                                                   int64_t padding, const Variant& v) {
  const char* op = "lenet5_forward_train";
  if (s.c1.N == 0 || !fused_geometry(s, padding)) return std::nullopt;
  const Guard guard(x);
  const int64_t N = s.c1.N;
  const std::vector<at::Tensor> c = p.contiguous();
  const at::Tensor xc = x.contiguous();
  const auto o = x.options();
  at::Tensor logits = new_output({N, s.J3}, o);
  std::vector<at::Tensor> saved;
  for (const auto& shape : Lenet5Saved::shapes(s)) saved.push_back(new_output(shape, o));
  const NetSaved ns{mut(saved[0]), mut(saved[1]), mut(saved[2]), mut(saved[3]), mut(saved[4]), mut(saved[5])};
  check_launch(op, launch_net_forward(ptr(xc), nullptr, 0.0f, 1.0f, net_params(c), mut(logits), &ns, N, s.c1.H,
                                      s.c1.W, padding, s.J3, v, stream()));
  return std::make_tuple(logits, saved);
}

// A training step's backward in the three launches of launch_net_backward; nothing for another
// gradient mask or shapes that are not the kernels'.
std::optional<std::vector<at::Tensor>> backward_fused(const T& grad, const T& x, const Lenet5Weights& w,
                                                      const Lenet5Saved& sv, int64_t padding, const Lenet5Mask& need,
                                                      const Variant& v) {
  using G = NetGeometry;
  const char* op = "lenet5_backward";
  // The fused kernels compute every parameter's gradient and not x's: the mask of a training step.
  if (!is_training_step(need)) return std::nullopt;
  const int64_t N = x.size(0), J3 = w.fc3_weight.size(0);
  if (N == 0 || x.dim() != 4 ||
      !net_geometry_fits(x.size(1), x.size(2), x.size(3), padding, w.conv1_weight.size(0), w.conv2_weight.size(0),
                         w.fc1_weight.size(0), w.fc2_weight.size(0), J3))
    return std::nullopt;
  // The saved tensors must be the fused forward's: same shapes as the per-layer composition's.
  const ConvShape c1{N, 1, x.size(2), x.size(3), G::kC1, padding, G::kO1, G::kO1};
  const ConvShape c2{N, G::kC1, G::kQ1, G::kQ1, G::kC2, 0, G::kO2, G::kO2};
  const auto shapes = Lenet5Saved::shapes({c1, c2, G::kF, G::kJ1, G::kJ2, J3});
  const std::vector<at::Tensor> saved = sv.list();
  for (size_t i = 0; i < shapes.size(); ++i)
    LF_CHECK(saved[i].sizes() == at::IntArrayRef(shapes[i]), op, "expected saved[", i, "] of shape ",
             at::IntArrayRef(shapes[i]), ", got ", saved[i].sizes());
  LF_CHECK(grad.dim() == 2 && grad.size(0) == N && grad.size(1) == J3, op, "expected grad of shape (", N, ", ", J3,
           "), got ", grad.sizes());
  check_float32(op, "every tensor", grad);
  check_float32(op, "every tensor", x);
  for (const at::Tensor* t : w.list()) check_float32(op, "every tensor", *t);
  const Guard guard(x);
  auto c = [](const at::Tensor& t) { return t.contiguous(); };
  const at::Tensor gc = c(grad), xc = c(x), w2c = c(w.conv2_weight), f1wc = c(w.fc1_weight), f2wc = c(w.fc2_weight),
                   f3wc = c(w.fc3_weight);
  std::vector<at::Tensor> sc;
  for (const at::Tensor& t : saved) sc.push_back(c(t));
  const auto o = x.options();
  at::Tensor g2 = at::empty({N, G::kJ2}, o), g1 = at::empty({N, G::kJ1}, o);
  at::Tensor dpre2 = at::empty(shapes[2], o), dp1 = at::empty(shapes[1], o);
  const NetLayout L = net_layout(J3);
  at::Tensor partial = at::empty({grad_chunks(N) * L.total}, o);
  const NetParams p{nullptr, nullptr, ptr(w2c), nullptr, ptr(f1wc), nullptr, ptr(f2wc), nullptr, ptr(f3wc), nullptr};
  const NetSaved ns{const_cast<float*>(ptr(sc[0])), const_cast<float*>(ptr(sc[1])), const_cast<float*>(ptr(sc[2])),
                    const_cast<float*>(ptr(sc[3])), const_cast<float*>(ptr(sc[4])), const_cast<float*>(ptr(sc[5]))};
  const NetGrads d{mut(g2), mut(g1), mut(dpre2), mut(dp1)};
  std::vector<at::Tensor> grads = {at::empty({0}, o)};
  NetGradOut out{};
  for (const at::Tensor* wt : w.list()) {
    grads.push_back(new_output(wt->sizes(), o));
    grads.push_back(new_output({wt->size(0)}, o));
  }
  for (int i = 0; i < 10; ++i) out.p[i] = mut(grads[i + 1]);
  check_launch(op, launch_net_backward(ptr(gc), ptr(xc), p, ns, d, mut(partial), out, N, x.size(2), x.size(3),
                                       padding, J3, v, stream()));
  return grads;
}

std::tuple<at::Tensor, std::vector<at::Tensor>> lenet5_forward_train_cuda(
    const T& x, const T& w1, const T& b1, const T& w2, const T& b2, const T& f1w, const T& f1b, const T& f2w,
    const T& f2b, const T& f3w, const T& f3b, int64_t padding, S activation, S pooling, double negative_slope) {
  return lenet5_forward_train_op(device_type(), &forward_train_fused, layers(), x,
                                 {w1, b1, w2, b2, f1w, f1b, f2w, f2b, f3w, f3b}, padding,
                                 {activation, pooling, negative_slope});
}

std::vector<at::Tensor> lenet5_backward_cuda(const T& grad, const T& x, const T& w1, const T& w2, const T& f1w,
                                             const T& f2w, const T& f3w, at::TensorList saved, int64_t padding,
                                             Lenet5Mask need, S activation, S pooling, double negative_slope) {
  return lenet5_backward_op(device_type(), &backward_fused, layers(), grad, x, {w1, w2, f1w, f2w, f3w}, saved,
                            padding, need, {activation, pooling, negative_slope});
}

}  // namespace

void register_lenet5(torch::Library& m) {
  m.impl("lenet5_forward", &lenet5_forward_cuda);
  m.impl("lenet5_forward_train", &lenet5_forward_train_cuda);
  m.impl("lenet5_backward", &lenet5_backward_cuda);
}

}  // namespace cuda
}  // namespace lenet_fast
