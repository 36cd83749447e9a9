// The CPU kernel table: raw-pointer kernels compiled once per instruction set (isa_*.cpp) and
// picked at run time by the CPU's features (dispatch.cpp). Nothing here depends on ATen, so the
// same kernels serve the PyTorch ops and any C++ caller.
//
// Every kernel works on a half-open range of images [n0, n1) so that callers can split a batch
// over threads; they never allocate, and any scratch they need is handed in by the caller.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>

#include "../variant.h"

namespace lenet_fast {
namespace cpu {

// Which lanes the convolution kernels vectorise over, for OC output channels: with few channels
// (conv1's 6) the pixels, which would otherwise leave lanes idle, in passes of
// kPixelLaneChannelBlock channels; with more, the channels, 16 per register tile (two 8-lane
// vectors or one 16-lane one). The kernels and the weight packing all ask these.
constexpr int64_t kPixelLaneChannels = 8;
constexpr int kPixelLaneChannelBlock = 6;
inline bool conv_pixel_lanes(int64_t OC) { return OC <= kPixelLaneChannels; }
inline int conv_oc_tile(int64_t OC) { return conv_pixel_lanes(OC) ? 8 : 16; }

// 5x5 stride-1 convolution, optionally fused with bias + activation + 2x2/2 pooling (v: which).
struct ConvForwardArgs {
  const float* x;        // (N, IC, H, W) contiguous
  const float* wt;       // (IC*25, OCP) packed: wt[(ic*25 + kh*5 + kw)*OCP + oc], zero for oc >= OC
  const float* w;        // (OC, IC*25), read by the fused kernel with pixel lanes
  const float* bias;     // (OCP) zero-padded, or nullptr for none
  const int32_t* taps;   // (IC*25) offset of each tap into the padded image: ic*Hp*Wp + kh*Wp + kw
  float* y;              // plain: (N, OC, Ho, Wo); fused: (N, OC, Ho/2, Wo/2)
  float* act;            // fused only: act(conv + bias) as (N, OC, Ho, Wo), or nullptr to skip
  int64_t IC, H, W, OC, OCP, pad, Ho, Wo;
  int oc_tile;           // 8 or 16 output channels per register tile; OCP is a multiple of it
  bool fused;
  Variant v;             // fused only: the activation and pooling
};

// Weight and bias gradients of the 5x5 convolution, accumulated over a range of images.
struct ConvWeightGradArgs {
  const float* grad;     // (N, OC, Ho, Wo): gradient at the convolution's output (before tanh/pool);
                         // with act: the pooled gradient (N, OC, Ho/2, Wo/2) of the fused op
  const float* act;      // nullptr, or the fused op's saved activation (N, OC, Ho, Wo): the kernel
                         // then takes the gradient back through the pool and activation itself
  const float* x;        // (N, IC, H, W)
  const int32_t* taps;   // as in ConvForwardArgs
  int64_t IC, H, W, OC, OCP, pad, Ho, Wo;
  int oc_tile;
  Variant v;             // with act: the fused op's activation and pooling
};

// Input gradient of the 5x5 convolution.
struct ConvInputGradArgs {
  const float* grad;     // (N, OC, Ho, Wo): gradient at the convolution's output
  const float* w;        // (OC, IC, 5, 5) contiguous
  float* dx;             // (N, IC, H, W), H = Ho + 4 - 2 pad
  int64_t IC, H, W, OC, pad, Ho, Wo;
};

// y = x W^T + b, or act(x W^T + b) when `activate`: x (N, K), W (J, K), b (J), y (N, J).
struct LinearArgs {
  const float* x;
  const float* w;
  const float* bias;     // may be nullptr
  float* y;
  int64_t K, J;
  bool activate;
  Variant v;             // the activation (v.pool unused)
};

struct Kernels {
  const char* isa;  // "avx512", "avx2" or "baseline"

  // scratch: conv_forward_scratch() floats (the zero-padded image plus slack).
  void (*conv_forward)(const ConvForwardArgs& a, int64_t n0, int64_t n1, float* scratch);
  // Accumulates into dwt (IC*25, OCP) and db (OCP), which the caller zeroes.
  // scratch: conv_weight_grad_scratch() floats.
  void (*conv_weight_grad)(const ConvWeightGradArgs& a, int64_t n0, int64_t n1, float* dwt,
                           float* db, float* scratch);

  // scratch: conv_input_grad_scratch(a) floats.
  void (*conv_input_grad)(const ConvInputGradArgs& a, int64_t n0, int64_t n1, float* scratch);

  void (*linear_forward)(const LinearArgs& a, int64_t n0, int64_t n1);
  // dx (N, K) = g (N, J) W (J, K), rows [n0, n1).
  void (*linear_backward_input)(const float* g, const float* w, float* dx, int64_t K, int64_t J,
                                int64_t n0, int64_t n1);
  // dw (J, K) = g^T x and db (J) = sum_n g, rows [j0, j1) of dw; every n in [0, N).
  void (*linear_backward_weight)(const float* g, const float* x, float* dw, float* db, int64_t N,
                                 int64_t K, int64_t J, int64_t j0, int64_t j1);

  // Elementwise activation (v.act) and its backward from the saved output, over [i0, i1) of the
  // flattened tensor.
  void (*act_forward)(const float* x, float* y, int64_t i0, int64_t i1, const Variant& v);
  void (*act_backward)(const float* g, const float* y, float* dx, int64_t i0, int64_t i1, const Variant& v);
  // 2x2/2 average pooling over planes [p0, p1) of (planes, H, W) -> (planes, H/2, W/2).
  void (*avg_pool_forward)(const float* x, float* y, int64_t H, int64_t W, int64_t p0, int64_t p1);
  void (*avg_pool_backward)(const float* g, float* dx, int64_t H, int64_t W, int64_t p0,
                            int64_t p1);
  // Fused pool + activation backward over planes [p0, p1): dpre (planes, H, W) from the pooled
  // gradient (planes, H/2, W/2) and the saved activation (planes, H, W), for variant v.
  void (*act_pool_backward)(const float* g, const float* act, float* dpre, int64_t H, int64_t W,
                            int64_t p0, int64_t p1, const Variant& v);

  // `iters` rounds of independent FMAs on this ISA's widest vectors (enough chains to cover the
  // FMA latency); returns the FLOPs done. What cpu_fma_peak_gflops times.
  double (*fma_loop)(int64_t iters);
};

// Images [n0, n1) through the whole network: conv1 and conv2 (fused with activation and pooling), then
// the three fc layers, on whatever buffers the arguments name. Shared by the inference op (block
// scratch buffers) and the training forward (the saved tensors), so both run the same kernels.
inline void network_forward(const Kernels& k, const ConvForwardArgs& c1, const ConvForwardArgs& c2,
                            const LinearArgs& l1, const LinearArgs& l2, const LinearArgs& l3, int64_t n0,
                            int64_t n1, float* scratch) {
  k.conv_forward(c1, n0, n1, scratch);
  k.conv_forward(c2, n0, n1, scratch);
  k.linear_forward(l1, n0, n1);
  k.linear_forward(l2, n0, n1);
  k.linear_forward(l3, n0, n1);
}

// Per-thread scratch, deliberately uninitialised: every kernel writes its scratch before reading
// it, and zero-filling ~100 KB per call showed up in batch-1 latency.
inline std::unique_ptr<float[]> scratch_buffer(int64_t n) {
  return std::unique_ptr<float[]>(new float[static_cast<size_t>(std::max<int64_t>(n, 1))]);
}

inline int64_t conv_forward_scratch(int64_t IC, int64_t Hp, int64_t Wp) { return IC * Hp * Wp + 32; }

// Sizes below are rounded to 16 floats, the widest vector of any ISA, so one buffer serves all.
inline int64_t conv_weight_grad_scratch(const ConvWeightGradArgs& a) {
  const int64_t Hp = a.H + 2 * a.pad, Wp = a.W + 2 * a.pad;
  const int64_t per_channel_lanes = a.Ho * a.Wo * a.OCP + a.Wo;  // + one row of conv_out_grad_row
  const int64_t per_pixel_lanes = a.OC * ((a.Ho * Wp + 15) / 16 * 16);
  return conv_forward_scratch(a.IC, Hp, Wp) + std::max(per_channel_lanes, per_pixel_lanes);
}

// One col2im lane-mask row of conv_input_grad: a padded-input row of Wp floats in whole vectors.
inline int64_t conv_input_grad_row(int64_t Wp) { return (Wp + 15) / 16 * 16; }

// Scratch floats conv_input_grad needs per thread: the output gradient with its pixel rows padded
// to 16, the (IC*25, P) tap-by-pixel products, the col2im lane masks (5 x conv_input_grad_row),
// and the padded input gradient with 16 floats of slack (a row's last vector store may run one
// vector past it). The gather's masked loads may touch up to 4 floats before the products (in the
// gradient copy) and up to a vector after (in the masks).
inline int64_t conv_input_grad_scratch(const ConvInputGradArgs& a) {
  const int64_t PP = (a.Ho * a.Wo + 15) / 16 * 16, Wp = a.W + 2 * a.pad;
  return a.OC * PP + a.IC * 25 * PP + 5 * conv_input_grad_row(Wp) + a.IC * (a.H + 2 * a.pad) * Wp + 16;
}

// The kernel table for this CPU (the best ISA it supports, or the one LENET_FAST_CPU_ISA names).
const Kernels& kernels();
// Forces an ISA by name ("avx512", "avx2", "baseline"); returns false if unknown or unsupported here.
bool set_isa(const char* name);
// ISAs compiled into this build and supported by this CPU, best first, comma-separated.
const char* available_isas();

// The float32 FMA throughput this machine gives `threads` threads right now, in GFLOP/s: each runs
// the best supported ISA's fma_loop for about `seconds`, all at once. A measurement, so it counts
// the clock the cores really run at (turbo, a VM's host) where /proc/cpuinfo's nominal MHz may not.
double cpu_fma_peak_gflops(int threads, double seconds);

const Kernels* kernels_baseline();
// Call only where the CPU has the ISA (dispatch.cpp asks first): the tables are built in code
// compiled for it. nullptr where not compiled (non-x86).
const Kernels* kernels_avx2();
const Kernels* kernels_avx512();

}  // namespace cpu
}  // namespace lenet_fast
