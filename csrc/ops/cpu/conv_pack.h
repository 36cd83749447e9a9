// Packing of convolution weights for the CPU kernels, shared by the conv ops and lenet5_forward.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <vector>

#include "ops/checks.h"
#include "kernels/cpu/kernels.h"

namespace lenet_fast {
namespace cpu {

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Weights packed for the kernels: (IC*25, OCP), output channels in the vector lanes, zero-padded.
// With 8 or fewer output channels the fused kernel puts pixels in the lanes instead and reads the
// weights in their own (OC, IC*25) layout: `rows`.
struct PackedConv {
  std::vector<float> wt, bias;
  std::vector<int32_t> taps;
  at::Tensor wc;  // the weights, contiguous
  const float* rows = nullptr;
  int64_t OCP;
  int oc_tile;

  PackedConv(const at::Tensor& w, const at::Tensor& b, int64_t Hp, int64_t Wp) : wc(w.contiguous()) {
    const at::Tensor bc = b.contiguous();
    const float* src = wc.data_ptr<float>();
    const int64_t OC = w.size(0), IC = w.size(1);
    oc_tile = conv_oc_tile(OC);
    OCP = round_up(OC, oc_tile);
    // Written in order, read across rows: the reads hit L1, where OCP-strided writes would each
    // wait on a line of their own (a microsecond of a batch-1 forward, which packs every call).
    const int64_t K = IC * kTaps;
    wt.resize(K * OCP);
    for (int64_t k = 0; k < K; ++k) {
      float* row = wt.data() + k * OCP;
      for (int64_t o = 0; o < OC; ++o) row[o] = src[o * K + k];
      for (int64_t o = OC; o < OCP; ++o) row[o] = 0.0f;
    }
    bias.assign(OCP, 0.0f);
    std::copy(bc.data_ptr<float>(), bc.data_ptr<float>() + OC, bias.begin());
    taps = tap_offsets(IC, Hp, Wp);
    if (conv_pixel_lanes(OC)) rows = src;
  }

  static std::vector<int32_t> tap_offsets(int64_t IC, int64_t Hp, int64_t Wp) {
    std::vector<int32_t> taps(IC * kTaps);
    for (int64_t i = 0; i < IC; ++i)
      for (int64_t t = 0; t < kTaps; ++t)
        taps[i * kTaps + t] = static_cast<int32_t>(i * Hp * Wp + (t / kKernel) * Wp + t % kKernel);
    return taps;
  }
};

inline void check_image_size(const char* op, int64_t IC, int64_t Hp, int64_t Wp) {
  LF_CHECK(IC * Hp * Wp < (int64_t{1} << 31), op, "one padded image of ", IC, " x ", Hp, " x ",
           Wp, " values is too large for 32-bit tap offsets; split the channels");
}

// FLOPs (a multiply-add counting 2) of one image through a convolution, and through the network.
inline int64_t conv_flops(const ConvShape& s) { return 2 * s.Ho * s.Wo * s.OC * s.IC * kTaps; }
inline int64_t fc_flops(int64_t F, int64_t J1, int64_t J2, int64_t J3) {
  return 2 * (F * J1 + J1 * J2 + J2 * J3);
}
inline int64_t lenet5_flops(const Lenet5Shape& s) {
  return conv_flops(s.c1) + conv_flops(s.c2) + fc_flops(s.F, s.J1, s.J2, s.J3);
}

// Images per thread chunk: enough work (~2 MFLOP) to pay for waking a thread.
inline int64_t conv_grain(const ConvShape& s) {
  return std::max<int64_t>(1, 2000000 / std::max<int64_t>(conv_flops(s), 1));
}

// Images per weight-gradient partial sum. It depends only on N, never on the thread count: each
// chunk sums into its own partial and the partials are added in chunk order, so the gradient is
// bit-identical however many threads run.
inline int64_t weight_grad_chunk(int64_t N) { return std::max<int64_t>(4, (N + 31) / 32); }

// conv_weight_grad's arguments for a convolution of shape s; taps from PackedConv::tap_offsets.
inline ConvWeightGradArgs weight_grad_args(const ConvShape& s, const int32_t* taps, const float* grad,
                                           const float* act, const float* x, const Variant& v) {
  ConvWeightGradArgs a{};
  a.v = v;
  a.grad = grad;
  a.act = act;
  a.x = x;
  a.taps = taps;
  a.IC = s.IC;
  a.H = s.H;
  a.W = s.W;
  a.OC = s.OC;
  a.oc_tile = conv_oc_tile(s.OC);
  a.OCP = round_up(s.OC, a.oc_tile);
  a.pad = s.pad;
  a.Ho = s.Ho;
  a.Wo = s.Wo;
  return a;
}

// Floats of one chunk's partial: dW^T (IC*25, OCP) then db (OCP).
inline int64_t weight_grad_partial_size(const ConvWeightGradArgs& a) { return (a.IC * kTaps + 1) * a.OCP; }

// dw (OC, IC*25) and db (OC) from `chunks` partials, added in chunk order (into partial 0).
inline void sum_weight_grad_partials(const ConvWeightGradArgs& a, float* partial, int64_t chunks, float* dw,
                                     float* db) {
  const int64_t part = weight_grad_partial_size(a), K = a.IC * kTaps;
  for (int64_t c = 1; c < chunks; ++c)
    for (int64_t i = 0; i < part; ++i) partial[i] += partial[c * part + i];
  for (int64_t o = 0; o < a.OC; ++o) {
    for (int64_t k = 0; k < K; ++k) dw[o * K + k] = partial[k * a.OCP + o];
    db[o] = partial[K * a.OCP + o];
  }
}

inline ConvForwardArgs forward_args(const ConvShape& s, const PackedConv& p, const float* x) {
  ConvForwardArgs a{};
  a.x = x;
  a.wt = p.wt.data();
  a.w = p.rows;
  a.bias = p.bias.data();
  a.taps = p.taps.data();
  a.IC = s.IC;
  a.H = s.H;
  a.W = s.W;
  a.OC = s.OC;
  a.OCP = p.OCP;
  a.pad = s.pad;
  a.Ho = s.Ho;
  a.Wo = s.Wo;
  a.oc_tile = p.oc_tile;
  return a;
}

}  // namespace cpu
}  // namespace lenet_fast
