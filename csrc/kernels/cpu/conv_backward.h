// CPU convolution backward: the weight gradient (with the fused op's pool + activation backward
// done as each row is staged) and the input gradient.
// Part of the CPU kernels compiled once per ISA: include kernels_impl.h, not this file.
#pragma once

#include "kernel_common.h"
#include "pool_act.h"  // pool_backward_row

namespace lenet_fast {
namespace cpu {
namespace {

// ------------------------------------------------------------------------------------------------
// Convolution weight gradient

// The gradient at conv output row (oc, yy) of image n, out[0 .. Wo): read as is, or, for the
// fused op, taken back through the 2x2 pool and the activation from the pooled gradient and the
// saved activation. Row at a time, so the index arithmetic is paid once per row rather than per
// pixel (per pixel, it cost more than the weight-gradient products themselves for conv1).
template <Act A, Pool PL>
LF_INLINE void conv_out_grad_row(const ConvWeightGradArgs& a, int64_t n, int64_t oc, int64_t yy,
                                 float* out) {
  if (!a.act) {
    const float* g = a.grad + ((n * a.OC + oc) * a.Ho + yy) * a.Wo;
    for (int64_t xx = 0; xx < a.Wo; ++xx) out[xx] = g[xx];
    return;
  }
  const int64_t Hq = a.Ho / 2, Wq = a.Wo / 2;
  if (yy >= 2 * Hq) {  // a dropped odd last row
    for (int64_t xx = 0; xx < a.Wo; ++xx) out[xx] = 0.0f;
    return;
  }
  const float* act = a.act + ((n * a.OC + oc) * a.Ho + yy) * a.Wo;
  const bool bottom = yy % 2;
  pool_backward_row<A, PL>(a.grad + ((n * a.OC + oc) * Hq + yy / 2) * Wq, act, bottom ? act - a.Wo : act + a.Wo,
                           bottom, out, a.Wo, a.v.slope);
}

// Channel lanes (OCP a multiple of L NV): the gradient staged pixel-major, (P, OCP), then a tile
// of RW kernel rows (KB = 5 RW taps) x NV vectors of L channels per pass over the image.
template <int L, int NV, int RW, Act A, Pool PL>
void conv_weight_grad_channel_lanes(const ConvWeightGradArgs& a, int64_t n0, int64_t n1, float* dwt,
                                    float* db, float* scratch) {
  using VL = Lanes<L>;
  using V = typename VL::V;
  constexpr int KB = kKernel * RW;
  const int64_t Hp = a.H + 2 * a.pad, Wp = a.W + 2 * a.pad, P = a.Ho * a.Wo, K = a.IC * kTaps;
  float* gt = scratch + (a.pad ? a.IC * Hp * Wp : 0);  // (P, OCP): pixel-major, channels in lanes
  float* row = gt + P * a.OCP;                          // (Wo): one output row's gradient
  for (int64_t n = n0; n < n1; ++n) {
    const float* xp = padded_image(a.x + n * a.IC * a.H * a.W, a.IC, a.H, a.W, a.pad, scratch);
    for (int64_t oc = 0; oc < a.OCP; ++oc) {
      for (int64_t yy = 0; yy < a.Ho; ++yy) {
        float* col = gt + yy * a.Wo * a.OCP + oc;
        if (oc < a.OC) {
          conv_out_grad_row<A, PL>(a, n, oc, yy, row);
          for (int64_t xx = 0; xx < a.Wo; ++xx) col[xx * a.OCP] = row[xx];
        } else {
          for (int64_t xx = 0; xx < a.Wo; ++xx) col[xx * a.OCP] = 0.0f;
        }
      }
    }
    for (int64_t oc0 = 0; oc0 < a.OCP; oc0 += L) {
      V s = V{};
      for (int64_t p = 0; p < P; ++p) s += VL::load(gt + p * a.OCP + oc0);
      VL::store(db + oc0, VL::load(db + oc0) + s);
    }
    for (int64_t oc0 = 0; oc0 < a.OCP; oc0 += L * NV) {
      for (int64_t k0 = 0; k0 < K; k0 += KB) {
        // The 5 taps of a kernel row (kw = 0..4) are one pointer plus kw: RW pointers for KB taps
        // (a short last tile repeats the last row).
        const float* trow[RW];
        LF_UNROLL for (int j = 0; j < RW; ++j) trow[j] = xp + a.taps[min64(k0 + kKernel * j, K - kKernel)];
        V acc[KB][NV];
        LF_UNROLL for (int i = 0; i < KB; ++i) {
          LF_UNROLL for (int v = 0; v < NV; ++v) acc[i][v] = V{};
        }
        for (int64_t yy = 0; yy < a.Ho; ++yy) {
          const float* row[RW];
          LF_UNROLL for (int j = 0; j < RW; ++j) row[j] = trow[j] + yy * Wp;
          const float* grow = gt + yy * a.Wo * a.OCP + oc0;
          for (int64_t xx = 0; xx < a.Wo; ++xx) {
            V gv[NV];
            LF_UNROLL for (int v = 0; v < NV; ++v) gv[v] = VL::load(grow + xx * a.OCP + L * v);
            LF_UNROLL for (int i = 0; i < KB; ++i) {
              const V xv = VL::splat(row[i / kKernel][xx + i % kKernel]);
              LF_UNROLL for (int v = 0; v < NV; ++v) acc[i][v] += xv * gv[v];
            }
          }
        }
        for (int i = 0; i < KB && k0 + i < K; ++i) {
          LF_UNROLL for (int v = 0; v < NV; ++v) {
            float* d = dwt + (k0 + i) * a.OCP + oc0 + L * v;
            VL::store(d, VL::load(d) + acc[i][v]);
          }
        }
      }
    }
  }
}

// Weight gradient for few output channels (conv1), pixels in the lanes: with the output gradient
// laid out on the padded image's row stride (zeros in the extra columns), each weight's gradient
// is one long contiguous dot product, dW[oc][k] = sum_q g[oc][q] x[q + tap k]. A tile is OCB
// channels x KB taps: KB + OCB loads for OCB*KB FMAs, and a horizontal sum per weight at the end.
template <int L, int OCB, int KB, Act A, Pool PL>
void conv_weight_grad_pixel_lanes(const ConvWeightGradArgs& a, int64_t n0, int64_t n1, float* dwt,
                                  float* db, float* scratch) {
  using VL = Lanes<L>;
  using V = typename VL::V;
  const int64_t Hp = a.H + 2 * a.pad, Wp = a.W + 2 * a.pad, K = a.IC * kTaps;
  const int64_t Q = (a.Ho * Wp + L - 1) / L * L;  // <= conv_weight_grad_scratch's (rounded to 16)
  float* xbuf = scratch;                        // padded image + slack
  float* gw = scratch + a.IC * Hp * Wp + kSlack;  // (OC, Q)
  for (int64_t n = n0; n < n1; ++n) {
    const float* xp = padded_image_copy(a.x + n * a.IC * a.H * a.W, a.IC, a.H, a.W, a.pad, xbuf);
    for (int64_t oc = 0; oc < a.OC; ++oc) {
      float* row = gw + oc * Q;
      for (int64_t yy = 0; yy < a.Ho; ++yy) {
        float* r = row + yy * Wp;
        conv_out_grad_row<A, PL>(a, n, oc, yy, r);
        for (int64_t xx = a.Wo; xx < Wp; ++xx) r[xx] = 0.0f;
      }
      for (int64_t q = a.Ho * Wp; q < Q; ++q) row[q] = 0.0f;
      // The bias gradient in L lanes, then across them: one add per L values, not a serial chain
      // of scalar adds (which cost more than all of this kernel's multiply-adds).
      V sum[4] = {};  // four chains: one add's latency each, not the whole row's
      int64_t q = 0;
      for (; q + 4 * L <= Q; q += 4 * L) {
        LF_UNROLL for (int i = 0; i < 4; ++i) sum[i] += VL::load(row + q + L * i);
      }
      for (; q < Q; q += L) sum[0] += VL::load(row + q);
      db[oc] += VL::hsum((sum[0] + sum[1]) + (sum[2] + sum[3]));
    }
    for (int64_t oc0 = 0; oc0 < a.OC; oc0 += OCB) {
      const float* gc[OCB];
      LF_UNROLL for (int c = 0; c < OCB; ++c) gc[c] = gw + min64(oc0 + c, a.OC - 1) * Q;
      for (int64_t k0 = 0; k0 < K; k0 += KB) {
        const float* xk[KB];
        LF_UNROLL for (int i = 0; i < KB; ++i) xk[i] = xp + a.taps[min64(k0 + i, K - 1)];
        V acc[OCB][KB];
        LF_UNROLL for (int c = 0; c < OCB; ++c) {
          LF_UNROLL for (int i = 0; i < KB; ++i) acc[c][i] = V{};
        }
        for (int64_t q = 0; q < Q; q += L) {
          V xv[KB];
          LF_UNROLL for (int i = 0; i < KB; ++i) xv[i] = VL::load(xk[i] + q);
          LF_UNROLL for (int c = 0; c < OCB; ++c) {
            const V gv = VL::load(gc[c] + q);
            LF_UNROLL for (int i = 0; i < KB; ++i) acc[c][i] += gv * xv[i];
          }
        }
        for (int c = 0; c < OCB && oc0 + c < a.OC; ++c)
          for (int i = 0; i < KB && k0 + i < K; ++i) dwt[(k0 + i) * a.OCP + oc0 + c] += VL::hsum(acc[c][i]);
      }
    }
  }
}

// Tiles: with pixel lanes 6 channels x 2 taps (12 accumulators of AVX2's 16 registers) or x 4 taps
// (24 of AVX-512's 32: fewer passes over the image, and conv1's weight gradient 27% faster than with
// 2 taps, 198 vs 269 us per 64 images on Zen 5); with channel lanes one kernel row (5 taps) x 2
// 8-lane vectors, or two rows (10 taps) x one 16-lane vector: 10 accumulators.
template <int L>
void conv_weight_grad(const ConvWeightGradArgs& a, int64_t n0, int64_t n1, float* dwt, float* db,
                      float* scratch) {
  const auto run = [&](auto act, auto pool) {
    constexpr Act A = decltype(act)::value;
    constexpr Pool PL = decltype(pool)::value;
    if (conv_pixel_lanes(a.OC))
      conv_weight_grad_pixel_lanes<L, kPixelLaneChannelBlock, L == 16 ? 4 : 2, A, PL>(a, n0, n1, dwt, db, scratch);
    else
      conv_weight_grad_channel_lanes<L, 16 / L, L == 16 ? 2 : 1, A, PL>(a, n0, n1, dwt, db, scratch);
  };
  if (a.act)
    with_variant(a.v, run);
  else  // the gradient at the convolution's output: no activation or pooling to go back through
    run(ActC<Act::kNone>{}, PoolC<Pool::kAvg>{});
}

// ------------------------------------------------------------------------------------------------
// Convolution input gradient

// T[k0 + r][p0 .. p0 + L NV) = sum_oc W[oc][k0 + r] gp[oc][p0 ..], for KR taps at once: L NV
// pixels as NV vectors.
template <int L, int KR, int NV>
LF_INLINE void tap_pixel_tile(const float* w, const float* gp, float* t, int64_t OC, int64_t K,
                              int64_t PP, int64_t k0, int64_t p0) {
  using VL = Lanes<L>;
  using V = typename VL::V;
  int64_t kk[KR];
  LF_UNROLL for (int r = 0; r < KR; ++r) kk[r] = min64(k0 + r, K - 1);
  V acc[KR][NV];
  LF_UNROLL for (int r = 0; r < KR; ++r) {
    LF_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = V{};
  }
  for (int64_t oc = 0; oc < OC; ++oc) {
    V g[NV];
    LF_UNROLL for (int v = 0; v < NV; ++v) g[v] = VL::load(gp + oc * PP + p0 + L * v);
    LF_UNROLL for (int r = 0; r < KR; ++r) {
      const V wb = VL::splat(w[oc * K + kk[r]]);
      LF_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] += wb * g[v];
    }
  }
  for (int r = 0; r < KR && k0 + r < K; ++r) {
    LF_UNROLL for (int v = 0; v < NV; ++v) VL::store(t + (k0 + r) * PP + p0 + L * v, acc[r][v]);
  }
}

template <int L>
void conv_input_grad(const ConvInputGradArgs& a, int64_t n0, int64_t n1, float* scratch) {
  using VL = Lanes<L>;
  using V = typename VL::V;
  using I = typename VL::I;
  // Tiles of KR taps x NV vectors of pixels: 4 taps x 2 8-lane vectors (8 accumulators of AVX2's
  // 16 registers), or 8 taps x 2 16-lane vectors (16 of AVX-512's 32), then one vector for the
  // last 16 pixels of a row of PP when PP is not a multiple of 32.
  constexpr int KR = L == 16 ? 8 : 4, NV = 2;
  const int64_t P = a.Ho * a.Wo, PP = (P + 15) / 16 * 16, K = a.IC * kTaps;
  const int64_t Hp = a.H + 2 * a.pad, Wp = a.W + 2 * a.pad, NVL = (Wp + L - 1) / L * L;
  float* gp = scratch;        // (OC, PP): grad with zeroed pixel tails, so tiles need no masks
  float* t = gp + a.OC * PP;  // (K, PP)
  int32_t* mask = reinterpret_cast<int32_t*>(t + K * PP);  // (5, NVL)
  float* dxp = t + K * PP + kKernel * conv_input_grad_row(Wp);  // (IC, Hp, Wp) + 16: padded input grad
  // Lane c of a padded-input row takes tap column kw from output column c - kw, if that exists.
  for (int64_t kw = 0; kw < kKernel; ++kw)
    for (int64_t c = 0; c < NVL; ++c) mask[kw * NVL + c] = (c >= kw && c - kw < a.Wo) ? -1 : 0;
  for (int64_t n = n0; n < n1; ++n) {
    const float* g = a.grad + n * a.OC * P;
    for (int64_t oc = 0; oc < a.OC; ++oc) {  // the row, its partial last vector, zeros up to PP
      const float* src = g + oc * P;
      float* dst = gp + oc * PP;
      int64_t p = 0;
      for (; p + L <= P; p += L) VL::store(dst + p, VL::load(src + p));
      for (; p < PP; p += L) VL::store(dst + p, p < P ? VL::load_n(src + p, P - p) : V{});
    }
    for (int64_t k0 = 0; k0 < K; k0 += KR) {
      int64_t p0 = 0;
      for (; p0 + L * NV <= PP; p0 += L * NV) tap_pixel_tile<L, KR, NV>(a.w, gp, t, a.OC, K, PP, k0, p0);
      for (; p0 < PP; p0 += L) tap_pixel_tile<L, KR, 1>(a.w, gp, t, a.OC, K, PP, k0, p0);
    }
    // col2im as a gather: padded-input row r of plane ic sums, over taps (kh, kw), the tap's
    // output row r - kh shifted right by kw. L columns at a time in a register, each load
    // masked to the tap's Wo real columns (the rest of a load belongs to a neighbouring row or
    // tap, or to the buffers around t, and is never used). One sum per kw (over kh), added at
    // the end: five independent chains of adds, not one chain of 25 waiting on each add's latency.
    for (int64_t ic = 0; ic < a.IC; ++ic) {
      for (int64_t r = 0; r < Hp; ++r) {
        float* drow = dxp + (ic * Hp + r) * Wp;
        for (int64_t c0 = 0; c0 < NVL; c0 += L) {
          V acc[kKernel] = {};
          for (int64_t kh = 0; kh < kKernel; ++kh) {
            const int64_t yy = r - kh;
            if (yy < 0 || yy >= a.Ho) continue;
            const float* trow = t + (ic * kTaps + kh * kKernel) * PP + yy * a.Wo + c0;
            LF_UNROLL for (int kw = 0; kw < kKernel; ++kw) {
              const I m = VL::load_i(mask + kw * NVL + c0);
              const I v = __builtin_bit_cast(I, VL::load(trow + kw * PP - kw));
              acc[kw] += __builtin_bit_cast(V, v & m);
            }
          }
          // may run past the row: the next row's stores overwrite it
          VL::store(drow + c0, ((acc[0] + acc[1]) + (acc[2] + acc[3])) + acc[4]);
        }
      }
    }
    float* out = a.dx + n * a.IC * a.H * a.W;  // crop the padding the forward added
    for (int64_t ic = 0; ic < a.IC; ++ic)
      for (int64_t yy = 0; yy < a.H; ++yy)
        for (int64_t xx = 0; xx < a.W; ++xx)
          out[(ic * a.H + yy) * a.W + xx] = dxp[(ic * Hp + yy + a.pad) * Wp + xx + a.pad];
  }
}

}  // namespace
}  // namespace cpu
}  // namespace lenet_fast
