// Packing of convolution weights for the CPU kernels, shared by the conv ops and lenet5_forward.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <vector>

#include "../checks.h"
#include "kernels.h"

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
    oc_tile = OC <= 8 ? 8 : 16;
    OCP = round_up(OC, oc_tile);
    wt.assign(IC * kTaps * OCP, 0.0f);
    for (int64_t o = 0; o < OC; ++o)
      for (int64_t k = 0; k < IC * kTaps; ++k) wt[k * OCP + o] = src[o * IC * kTaps + k];
    bias.assign(OCP, 0.0f);
    std::copy(bc.data_ptr<float>(), bc.data_ptr<float>() + OC, bias.begin());
    taps = tap_offsets(IC, Hp, Wp);
    if (OC <= 8) rows = src;
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

// Images per thread chunk: enough work (~2 MFLOP) to pay for waking a thread.
inline int64_t conv_grain(const ConvShape& s) {
  const int64_t flops = 2 * s.Ho * s.Wo * s.OC * s.IC * kTaps;
  return std::max<int64_t>(1, 2000000 / std::max<int64_t>(flops, 1));
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
