// The CPU training step of the whole network (net_ops.h): the per-layer ops' kernels, called on a
// block of images at a time inside a few parallel regions instead of one region per op.
//
//   forward    one region; a job is a block of images carried through every layer while its
//              activations are in cache, writing what backward needs (as lenet5_forward does,
//              plus the saved tensors).
//   backward   region 1, a job per weight-gradient chunk of images (weight_grad_chunk): the fc
//              layers' input gradients, the pool/activation backward, conv2's input gradient, and both
//              convolutions' weight-gradient partials, all on the chunk while it is in cache;
//              region 2: the fc weight gradients, split over output rows (each row summed over
//              the whole batch in order), and the convolutions' partials added in chunk order.
//
// Per image every value is computed by the same kernel, in the same order, as by the per-layer
// ops (and the chunks are theirs), so both paths give the same bits, for every thread count.
#include "ops/cpu/net_ops.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <vector>

#include "ops/cpu/conv_pack.h"
#include "kernels/cpu/kernels.h"
#include "ops/cpu/parallel.h"

namespace lenet_fast {
namespace cpu {
namespace {

constexpr int64_t kTrainBlock = 8;  // images per forward job

float* f32(const at::Tensor& t) { return t.data_ptr<float>(); }

// One output-row range of one fc layer's weight gradient (linear_backward_weight's arguments).
struct FcRows {
  const float *g, *x;
  float *dw, *db;
  int64_t K, J, j0, j1;
};

// Cuts a layer's rows into jobs of about 3200 multiply-adds per image (8 rows of fc1), in
// multiples of 4 rows (the kernel's register tile).
void add_fc_jobs(std::vector<FcRows>& jobs, const float* g, const float* x, float* dw, float* db, int64_t K,
                 int64_t J) {
  const int64_t rows = std::max<int64_t>(4, round_up((3200 + K - 1) / K, 4));
  for (int64_t j0 = 0; j0 < J; j0 += rows) jobs.push_back({g, x, dw, db, K, J, j0, std::min(J, j0 + rows)});
}

}  // namespace

std::optional<std::tuple<at::Tensor, std::vector<at::Tensor>>> lenet5_forward_train_fused(
    const Lenet5Shape& s, const at::Tensor& x, const Lenet5Params& p, int64_t padding, const Variant& v) {
  const char* op = "lenet5_forward_train";
  const int64_t N = s.c1.N;
  const auto o = x.options();
  const Lenet5Saved sv = Lenet5Saved::empty(s, o);
  const at::Tensor &act1 = sv.act1, &p1 = sv.pool1, &act2 = sv.act2, &flat = sv.flat, &h1 = sv.h1, &h2 = sv.h2;
  at::Tensor logits = at::empty({N, s.J3}, o);
  if (N == 0) return std::make_tuple(logits, sv.list());
  const int64_t Hp = s.c1.H + 2 * padding, Wp = s.c1.W + 2 * padding;
  check_image_size(op, s.c1.IC, Hp, Wp);
  check_image_size(op, s.c2.IC, s.c2.H, s.c2.W);

  const at::Tensor xc = x.contiguous(), f1wc = p.fc1_weight.contiguous(), f1bc = p.fc1_bias.contiguous(),
                   f2wc = p.fc2_weight.contiguous(), f2bc = p.fc2_bias.contiguous(), f3wc = p.fc3_weight.contiguous(),
                   f3bc = p.fc3_bias.contiguous();
  const PackedConv k1(p.conv1_weight, p.conv1_bias, Hp, Wp), k2(p.conv2_weight, p.conv2_bias, s.c2.H, s.c2.W);
  ConvForwardArgs c1 = forward_args(s.c1, k1, f32(xc));
  c1.y = f32(p1);
  c1.act = f32(act1);
  c1.fused = true;
  c1.v = v;
  ConvForwardArgs c2 = forward_args(s.c2, k2, f32(p1));
  c2.y = f32(flat);
  c2.act = f32(act2);
  c2.fused = true;
  c2.v = v;
  const LinearArgs l1{f32(flat), f32(f1wc), f32(f1bc), f32(h1), s.F, s.J1, true, v};
  const LinearArgs l2{f32(h1), f32(f2wc), f32(f2bc), f32(h2), s.J1, s.J2, true, v};
  const LinearArgs l3{f32(h2), f32(f3wc), f32(f3bc), f32(logits), s.J2, s.J3, false, v};
  const int64_t scratch =
      std::max(conv_forward_scratch(s.c1.IC, Hp, Wp), conv_forward_scratch(s.c2.IC, s.c2.H, s.c2.W));

  run_jobs((N + kTrainBlock - 1) / kTrainBlock, threads_for(N * lenet5_flops(s)),
           [&] { return scratch_buffer(scratch); },
           [&](int64_t j, std::unique_ptr<float[]>& buf) {
             const int64_t n0 = j * kTrainBlock;
             network_forward(kernels(), c1, c2, l1, l2, l3, n0, std::min(N, n0 + kTrainBlock), buf.get());
           });
  return std::make_tuple(logits, sv.list());
}

namespace {

// The network's shape when the backward's arguments are a training step's that the whole-network
// step serves: every tensor float32 and shaped as a fused forward of these weights saves. Anything
// else is the per-layer ops' to diagnose.
std::optional<Lenet5Shape> served_shape(const at::Tensor& grad, const at::Tensor& x, const Lenet5Weights& w,
                                        const Lenet5Saved& sv, int64_t padding) {
  const at::Tensor &w1 = w.conv1_weight, &w2 = w.conv2_weight, &f1w = w.fc1_weight, &f2w = w.fc2_weight,
                   &f3w = w.fc3_weight;
  const std::vector<at::Tensor> saved = sv.list();
  if (x.dim() != 4 || w1.dim() != 4 || w2.dim() != 4 || f1w.dim() != 2 ||
      f2w.dim() != 2 || f3w.dim() != 2 || grad.dim() != 2 || padding < 0 || padding > kMaxPad)
    return std::nullopt;
  for (const at::Tensor* t : {&grad, &x, &w1, &w2, &f1w, &f2w, &f3w})
    if (t->scalar_type() != at::kFloat) return std::nullopt;
  for (const at::Tensor& t : saved)
    if (t.scalar_type() != at::kFloat) return std::nullopt;
  const int64_t N = x.size(0), OC1 = w1.size(0), OC2 = w2.size(0);
  const ConvShape s1{N, x.size(1), x.size(2), x.size(3), OC1, padding, conv_out_extent(x.size(2), padding),
                     conv_out_extent(x.size(3), padding)};
  const ConvShape s2{N, OC1, s1.Ho / 2, s1.Wo / 2, OC2, 0, s1.Ho / 2 - 4, s1.Wo / 2 - 4};
  const int64_t F = OC2 * (s2.Ho / 2) * (s2.Wo / 2), J1 = f1w.size(0), J2 = f2w.size(0), J3 = f3w.size(0);
  if (N == 0 || s1.Ho < 2 || s1.Wo < 2 || s2.Ho < 2 || s2.Wo < 2 ||
      w1.sizes() != at::IntArrayRef({OC1, s1.IC, kKernel, kKernel}) ||
      w2.sizes() != at::IntArrayRef({OC2, OC1, kKernel, kKernel}) || f1w.size(1) != F || f2w.size(1) != J1 ||
      f3w.size(1) != J2 || grad.sizes() != at::IntArrayRef({N, J3}))
    return std::nullopt;
  const Lenet5Shape s{s1, s2, F, J1, J2, J3};
  const auto shapes = Lenet5Saved::shapes(s);
  for (size_t i = 0; i < shapes.size(); ++i)
    if (saved[i].sizes() != at::IntArrayRef(shapes[i])) return std::nullopt;
  return s;
}

}  // namespace

std::optional<std::vector<at::Tensor>> lenet5_backward_fused(const at::Tensor& grad, const at::Tensor& x,
                                                             const Lenet5Weights& w, const Lenet5Saved& sv,
                                                             int64_t padding, const Lenet5Mask& need,
                                                             const Variant& v) {
  const char* op = "lenet5_backward";
  if (!is_training_step(need)) return std::nullopt;
  const std::optional<Lenet5Shape> served = served_shape(grad, x, w, sv, padding);
  if (!served) return std::nullopt;
  const ConvShape &s1 = served->c1, &s2 = served->c2;
  const int64_t N = s1.N, OC2 = s2.OC, F = served->F, J1 = served->J1, J2 = served->J2, J3 = served->J3;
  const auto shapes = Lenet5Saved::shapes(*served);
  check_image_size(op, s1.IC, s1.H + 2 * padding, s1.W + 2 * padding);
  check_image_size(op, s2.IC, s2.H, s2.W);
  const at::Tensor &w2 = w.conv2_weight, &f1w = w.fc1_weight, &f2w = w.fc2_weight, &f3w = w.fc3_weight;

  const auto c = [](const at::Tensor& t) { return t.contiguous(); };
  const at::Tensor gc = c(grad), xc = c(x), w2c = c(w2), f1wc = c(f1w), f2wc = c(f2w), f3wc = c(f3w);
  const at::Tensor act1 = c(sv.act1), p1 = c(sv.pool1), act2 = c(sv.act2), flat = c(sv.flat), h1 = c(sv.h1),
                   h2 = c(sv.h2);
  const auto o = x.options();
  const at::Tensor g2 = at::empty({N, J2}, o), g1 = at::empty({N, J1}, o), dp2 = at::empty({N, F}, o),
                   dpre2 = at::empty(shapes[2], o), dp1 = at::empty(shapes[1], o);
  std::vector<at::Tensor> grads = {at::empty({0}, o)};
  for (const at::Tensor* wt : w.list()) {
    grads.push_back(at::empty(wt->sizes(), o));
    grads.push_back(at::empty({wt->size(0)}, o));
  }

  const std::vector<int32_t> taps1 = PackedConv::tap_offsets(s1.IC, s1.H + 2 * padding, s1.W + 2 * padding),
                             taps2 = PackedConv::tap_offsets(s2.IC, s2.H, s2.W);
  const ConvWeightGradArgs a1 = weight_grad_args(s1, taps1.data(), f32(dp1), f32(act1), f32(xc), v);
  const ConvWeightGradArgs a2 = weight_grad_args(s2, taps2.data(), f32(dpre2), nullptr, f32(p1), v);
  const ConvInputGradArgs ai{f32(dpre2), f32(w2c), f32(dp1), s2.IC, s2.H, s2.W, OC2, 0, s2.Ho, s2.Wo};
  const int64_t chunk = weight_grad_chunk(N), chunks = (N + chunk - 1) / chunk;
  const int64_t part1 = weight_grad_partial_size(a1), part2 = weight_grad_partial_size(a2);
  std::vector<float> partial1(chunks * part1, 0.0f), partial2(chunks * part2, 0.0f);
  const int64_t scratch = std::max({conv_weight_grad_scratch(a1), conv_weight_grad_scratch(a2),
                                    conv_input_grad_scratch(ai)});
  const int64_t fc = fc_flops(F, J1, J2, J3);

  run_jobs(chunks, threads_for(N * (fc + 2 * conv_flops(s2) + conv_flops(s1))),
           [&] { return scratch_buffer(scratch); },
           [&](int64_t ch, std::unique_ptr<float[]>& buf) {
             const Kernels& k = kernels();
             const int64_t n0 = ch * chunk, n1 = std::min(N, n0 + chunk);
             k.linear_backward_input(f32(gc), f32(f3wc), f32(g2), J2, J3, n0, n1);
             k.act_backward(f32(g2), f32(h2), f32(g2), n0 * J2, n1 * J2, v);
             k.linear_backward_input(f32(g2), f32(f2wc), f32(g1), J1, J2, n0, n1);
             k.act_backward(f32(g1), f32(h1), f32(g1), n0 * J1, n1 * J1, v);
             k.linear_backward_input(f32(g1), f32(f1wc), f32(dp2), F, J1, n0, n1);
             k.act_pool_backward(f32(dp2), f32(act2), f32(dpre2), s2.Ho, s2.Wo, n0 * OC2, n1 * OC2, v);
             float* d2 = partial2.data() + ch * part2;
             k.conv_weight_grad(a2, n0, n1, d2, d2 + part2 - a2.OCP, buf.get());
             k.conv_input_grad(ai, n0, n1, buf.get());
             float* d1 = partial1.data() + ch * part1;
             k.conv_weight_grad(a1, n0, n1, d1, d1 + part1 - a1.OCP, buf.get());
           });

  std::vector<FcRows> rows;
  add_fc_jobs(rows, f32(g1), f32(flat), f32(grads[5]), f32(grads[6]), F, J1);
  add_fc_jobs(rows, f32(g2), f32(h1), f32(grads[7]), f32(grads[8]), J1, J2);
  add_fc_jobs(rows, f32(gc), f32(h2), f32(grads[9]), f32(grads[10]), J2, J3);
  run_jobs(static_cast<int64_t>(rows.size()) + 2, threads_for(N * fc), [] { return 0; },
           [&](int64_t j, int) {
             if (j == 0) {
               sum_weight_grad_partials(a1, partial1.data(), chunks, f32(grads[1]), f32(grads[2]));
             } else if (j == 1) {
               sum_weight_grad_partials(a2, partial2.data(), chunks, f32(grads[3]), f32(grads[4]));
             } else {
               const FcRows& r = rows[j - 2];
               kernels().linear_backward_weight(r.g, r.x, r.dw, r.db, N, r.K, r.J, r.j0, r.j1);
             }
           });
  return grads;
}

}  // namespace cpu
}  // namespace lenet_fast
