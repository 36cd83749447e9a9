// lenet_fast CPU kernels, written once and compiled once per ISA: isa_*.cpp include this
// file inside a `#pragma GCC target` region and export the table through make_kernels().
// Everything has internal linkage (see kernel_math.h for why).
//
// Every family with a lane count takes it as its template parameter L (8: baseline and AVX2; 16:
// AVX-512): one source per family, instantiated per ISA by make_kernels<L>().
//
// Layout strategy: activations stay NCHW (the ops' contract); inside a kernel the output channels
// of a convolution are the vector lanes (16 per register tile), so one broadcast input value
// feeds 16 FMAs and the packed weights (IC*25 x OCP, under 10 KB for LeNet) stay in L1.
//
//   conv_forward      direct convolution, R output pixels x OCT channels in registers;
//                     the fused version takes the 4 pixels of each 2x2 pooling window as its rows
//                     and applies bias, the activation and the pooling before anything is stored.
//   conv_weight_grad  dW^T[k][oc] += sum_p x[p + tap k] g[p][oc], KB taps x OCT channels in registers.
//   conv_input_grad   T[k][p] = sum_oc W[oc][k] g[oc][p] vectorised over pixels (no zero padding
//                     multiplied, unlike a "full" convolution), then col2im as a masked gather,
//                     L input columns at a time.
//   linear_*          register-tiled small GEMMs on the nn.Linear layouts, no weight packing.
#pragma once

#include "kernel_common.h"
#include "pool_act.h"
#include "conv_forward.h"
#include "conv_backward.h"
#include "linear.h"

namespace lenet_fast {
namespace cpu {
namespace {

// FMA chains on L-lane vectors: 12 independent accumulators cover the latency of two FMA pipes
// (4 cycles x 2) with room to spare, in 16 registers (AVX2) or 32 (AVX-512).
template <int L>
double fma_loop(int64_t iters) {
  using VL = Lanes<L>;
  using V = typename VL::V;
  constexpr int kChains = 12;
  V acc[kChains];
  LF_UNROLL for (int i = 0; i < kChains; ++i) acc[i] = VL::splat(1e-3f * static_cast<float>(i));
  const V b = VL::splat(0.999999f), c = VL::splat(1e-7f);
  for (int64_t n = 0; n < iters; ++n) {
    LF_UNROLL for (int i = 0; i < kChains; ++i) acc[i] = acc[i] * b + c;  // one FMA (-ffp-contract=fast)
  }
  V s = acc[0];
  LF_UNROLL for (int i = 1; i < kChains; ++i) s += acc[i];
  volatile float sink = VL::hsum(s);  // the chains' results are used: the loop stays
  (void)sink;
  return 2.0 * L * kChains * static_cast<double>(iters);
}

// The table this ISA's copy of the kernels exports (isa_*.cpp), with L-lane vectors in the
// families that take a lane count.
template <int L>
Kernels make_kernels(const char* isa) {
  Kernels k;
  k.isa = isa;
  k.conv_forward = conv_forward<L>;
  k.conv_weight_grad = conv_weight_grad<L>;
  k.conv_input_grad = conv_input_grad<L>;
  k.linear_forward = linear_forward<L>;
  k.linear_backward_input = linear_backward_input<L>;
  k.linear_backward_weight = linear_backward_weight<L>;
  k.act_forward = act_forward<L>;
  k.act_backward = act_backward<L>;
  k.avg_pool_forward = avg_pool_forward;
  k.avg_pool_backward = avg_pool_backward;
  k.act_pool_backward = act_pool_backward;
  k.fma_loop = fma_loop<L>;
  return k;
}

}  // namespace
}  // namespace cpu
}  // namespace lenet_fast

#undef LF_INLINE
#undef LF_UNROLL
