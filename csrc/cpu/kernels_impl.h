// lenet_fast CPU kernels, written once and compiled once per ISA: csrc/cpu/isa_*.cpp include this
// file inside a `#pragma GCC target` region and export the table through make_kernels().
// Everything has internal linkage (see kernel_math.h for why).
//
// Layout strategy: activations stay NCHW (the ops' contract); inside a kernel the output channels
// of a convolution are the vector lanes (8 or 16 per register tile), so one broadcast input value
// feeds 8-16 FMAs and the packed weights (IC*25 x OCP, under 10 KB for LeNet) stay in L1.
//
//   conv_forward      direct convolution, R output pixels x OCT channels in registers;
//                     the fused version takes the 4 pixels of each 2x2 pooling window as its rows
//                     and applies bias, the activation and the pooling before anything is stored.
//   conv_weight_grad  dW^T[k][oc] += sum_p x[p + tap k] g[p][oc], KB taps x OCT channels in registers.
//   conv_input_grad   T[k][p] = sum_oc W[oc][k] g[oc][p] vectorised over pixels (no zero padding
//                     multiplied, unlike a "full" convolution), then col2im as a masked gather,
//                     eight input columns at a time.
//   linear_*          register-tiled small GEMMs on the nn.Linear layouts, no weight packing.
#pragma once

#include "kernels.h"
#include "simd.h"

#define LF_INLINE inline __attribute__((always_inline))
#define LF_UNROLL _Pragma("GCC unroll 16")

namespace lenet_fast {
namespace cpu {
namespace {

LF_INLINE int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

struct Vec4Ops {
  using V = v4f;
  LF_INLINE static v4f splat(float s) { return v4f{s, s, s, s}; }
};

template <Act A>
LF_INLINE v8f act8(v8f x, float slope) { return act_forward<A, Vec8Ops>(x, slope); }

// ------------------------------------------------------------------------------------------------
// Convolution forward

// The zero-padded copy of one image, (IC, H, W) -> (IC, H + 2 pad, W + 2 pad), built in scratch;
// with no padding the image itself is used.
LF_INLINE const float* padded_image(const float* img, int64_t IC, int64_t H, int64_t W,
                                    int64_t pad, float* scratch) {
  if (pad == 0) return img;
  const int64_t Hp = H + 2 * pad, Wp = W + 2 * pad;
  for (int64_t c = 0; c < IC; ++c) {
    float* dst = scratch + c * Hp * Wp;
    for (int64_t i = 0; i < pad * Wp; ++i) dst[i] = 0.0f;
    for (int64_t yy = 0; yy < H; ++yy) {
      float* row = dst + (yy + pad) * Wp;
      const float* src = img + (c * H + yy) * W;
      for (int64_t xx = 0; xx < pad; ++xx) row[xx] = 0.0f;
      for (int64_t xx = 0; xx < W; ++xx) row[pad + xx] = src[xx];
      for (int64_t xx = pad + W; xx < Wp; ++xx) row[xx] = 0.0f;
    }
    for (int64_t i = (pad + H) * Wp; i < Hp * Wp; ++i) dst[i] = 0.0f;
  }
  return scratch;
}

// As padded_image, but always a copy, followed by kSlack zeros that vector loads may touch.
constexpr int64_t kSlack = 32;
LF_INLINE const float* padded_image_copy(const float* img, int64_t IC, int64_t H, int64_t W,
                                         int64_t pad, float* scratch) {
  const int64_t size = IC * (H + 2 * pad) * (W + 2 * pad);
  if (pad == 0) {
    for (int64_t i = 0; i < size; ++i) scratch[i] = img[i];
  } else {
    padded_image(img, IC, H, W, pad, scratch);
  }
  for (int64_t i = size; i < size + kSlack; ++i) scratch[i] = 0.0f;
  return scratch;
}

// acc[r][v] = sum_k base[r][taps[k]] * wt[k*OCP + 8v .. 8v+7]: R pixels x 8*NV channels.
template <int R, int NV>
LF_INLINE void conv_tile(const float* const (&base)[R], const int32_t* taps, int64_t K,
                         const float* wt, int64_t OCP, v8f (&acc)[R][NV]) {
  LF_UNROLL for (int r = 0; r < R; ++r) {
    LF_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = v8f{};
  }
  for (int64_t k = 0; k < K; ++k) {
    v8f wv[NV];
    LF_UNROLL for (int v = 0; v < NV; ++v) wv[v] = load8(wt + k * OCP + 8 * v);
    const int32_t o = taps[k];
    LF_UNROLL for (int r = 0; r < R; ++r) {
      const v8f xv = splat8(base[r][o]);
      LF_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] += xv * wv[v];
    }
  }
}

// Stores the first `lanes` channels of v to out[c * plane_stride], c = 0, 1, ...
LF_INLINE void store_lanes(float* out, int64_t plane_stride, v8f v, int64_t lanes) {
  float tmp[8];
  store8(tmp, v);
  for (int64_t l = 0; l < lanes && l < 8; ++l) out[l * plane_stride] = tmp[l];
}

// Plain convolution + bias of pixels [p0, p1) of one image (or the activation A of it into `act`
// when `to_act`, for the pixels a fused kernel leaves out of its pooling windows).
template <int NV, int R, Act A = Act::kTanh>
void conv_pixels(const ConvForwardArgs& a, const float* xp, int64_t Wp, int64_t oc0, int64_t p0,
                 int64_t p1, float* out, bool to_act) {
  const int64_t K = a.IC * kTaps, P = a.Ho * a.Wo;
  v8f bias[NV];
  LF_UNROLL for (int v = 0; v < NV; ++v) bias[v] = a.bias ? load8(a.bias + oc0 + 8 * v) : v8f{};
  int64_t py = p0 / a.Wo, px = p0 % a.Wo;  // (row, column) of pixel p, advanced without dividing
  for (int64_t p = p0; p < p1; p += R) {
    const float* base[R];
    int64_t qy = py, qx = px;
    LF_UNROLL for (int r = 0; r < R; ++r) {
      base[r] = xp + qy * Wp + qx;
      if (p + r + 1 < p1 && ++qx == a.Wo) {  // a short tail recomputes its last pixel
        qx = 0;
        ++qy;
      }
    }
    for (int r = 0; r < R; ++r) {
      if (++px == a.Wo) {
        px = 0;
        ++py;
      }
    }
    v8f acc[R][NV];
    conv_tile<R, NV>(base, a.taps, K, a.wt + oc0, a.OCP, acc);
    for (int r = 0; r < R && p + r < p1; ++r) {
      LF_UNROLL for (int v = 0; v < NV; ++v) {
        v8f o = acc[r][v] + bias[v];
        if (to_act) o = act8<A>(o, a.v.slope);
        store_lanes(out + (oc0 + 8 * v) * P + p + r, P, o, a.OC - oc0 - 8 * v);
      }
    }
  }
}

// Fused conv + bias + activation + 2x2 pool of one image: each tile is WPB pooling windows
// (R = 4 WPB conv pixels) by 8*NV channels, and only the pooled value leaves the registers
// (plus the activation itself when the caller keeps it for backward).
template <int NV, int WPB, Act A, Pool PL>
void conv_fused_image(const ConvForwardArgs& a, const float* xp, int64_t Wp, float* y, float* act) {
  constexpr int R = 4 * WPB;
  const int64_t K = a.IC * kTaps, Hq = a.Ho / 2, Wq = a.Wo / 2, P = a.Ho * a.Wo, Pq = Hq * Wq;
  for (int64_t oc0 = 0; oc0 < a.OCP; oc0 += 8 * NV) {
    v8f bias[NV];
    LF_UNROLL for (int v = 0; v < NV; ++v) bias[v] = a.bias ? load8(a.bias + oc0 + 8 * v) : v8f{};
    for (int64_t qy = 0; qy < Hq; ++qy) {
      for (int64_t qx0 = 0; qx0 < Wq; qx0 += WPB) {
        const float* base[R];
        LF_UNROLL for (int w = 0; w < WPB; ++w) {
          const int64_t qx = min64(qx0 + w, Wq - 1);
          LF_UNROLL for (int i = 0; i < 4; ++i)
            base[4 * w + i] = xp + (2 * qy + i / 2) * Wp + 2 * qx + i % 2;
        }
        v8f acc[R][NV];
        conv_tile<R, NV>(base, a.taps, K, a.wt + oc0, a.OCP, acc);
        for (int w = 0; w < WPB && qx0 + w < Wq; ++w) {
          const int64_t qx = qx0 + w;
          LF_UNROLL for (int v = 0; v < NV; ++v) {
            const int64_t lanes = a.OC - oc0 - 8 * v;
            v8f t[4];
            LF_UNROLL for (int i = 0; i < 4; ++i) t[i] = act8<A>(acc[4 * w + i][v] + bias[v], a.v.slope);
            const v8f pooled = pool4<PL, Vec8Ops>(t[0], t[1], t[2], t[3]);
            store_lanes(y + (oc0 + 8 * v) * Pq + qy * Wq + qx, Pq, pooled, lanes);
            if (act) {
              LF_UNROLL for (int i = 0; i < 4; ++i) {
                const int64_t pix = (2 * qy + i / 2) * a.Wo + 2 * qx + i % 2;
                store_lanes(act + (oc0 + 8 * v) * P + pix, P, t[i], lanes);
              }
            }
          }
        }
      }
    }
    if (act) {  // an odd last column / row lies outside every window; backward ignores it, but
                // the saved activation is still act(conv) there
      if (a.Wo % 2) {
        for (int64_t yy = 0; yy < 2 * Hq; ++yy) {
          const int64_t pix = yy * a.Wo + a.Wo - 1;
          conv_pixels<NV, 1, A>(a, xp, Wp, oc0, pix, pix + 1, act, true);
        }
      }
      if (a.Ho % 2) conv_pixels<NV, 1, A>(a, xp, Wp, oc0, (a.Ho - 1) * a.Wo, P, act, true);
    }
  }
}

// Fused conv + activation + pool for few output channels (conv1: OC = 6), with pixels in the lanes:
// a tile is 8 neighbouring columns of two conv rows (one row of 4 pooling windows) by OCB
// channels, so each tap costs 2 contiguous loads and OCB broadcasts for 2*OCB FMAs, and the
// activation is stored as whole vectors. Channel lanes would leave 2 of 8 lanes idle and need a
// broadcast per FMA. xp is a padded copy with at least 8 floats of slack past its end: the last
// tile of a row reads up to 7 columns into the next row (those lanes are discarded).
template <int OCB, Act A, Pool PL>
void conv_fused_pixel_lanes(const ConvForwardArgs& a, const float* xp, int64_t Wp,
                            const float* w, float* y, float* act) {
  const int64_t K = a.IC * kTaps, Hq = a.Ho / 2, Wq = a.Wo / 2, P = a.Ho * a.Wo, Pq = Hq * Wq;
  for (int64_t oc0 = 0; oc0 < a.OC; oc0 += OCB) {
    const float* wc[OCB];  // (K) weights of each channel of the tile; a short tail repeats the last
    v8f bias[OCB];
    LF_UNROLL for (int c = 0; c < OCB; ++c) {
      const int64_t oc = min64(oc0 + c, a.OC - 1);
      wc[c] = w + oc * K;
      bias[c] = splat8(a.bias ? a.bias[oc] : 0.0f);
    }
    for (int64_t qy = 0; qy < Hq; ++qy) {
      for (int64_t x0 = 0; x0 < 2 * Wq; x0 += 8) {
        const float* r0 = xp + 2 * qy * Wp + x0;
        const float* r1 = r0 + Wp;
        v8f acc[OCB][2];
        LF_UNROLL for (int c = 0; c < OCB; ++c) acc[c][0] = acc[c][1] = v8f{};
        for (int64_t k = 0; k < K; ++k) {
          const int32_t o = a.taps[k];
          const v8f v0 = load8(r0 + o), v1 = load8(r1 + o);
          LF_UNROLL for (int c = 0; c < OCB; ++c) {
            const v8f wb = splat8(wc[c][k]);
            acc[c][0] += wb * v0;
            acc[c][1] += wb * v1;
          }
        }
        const int64_t cols = min64(8, a.Wo - x0), windows = min64(4, Wq - x0 / 2);
        for (int c = 0; c < OCB && oc0 + c < a.OC; ++c) {
          const int64_t oc = oc0 + c;
          const v8f t0 = act8<A>(acc[c][0] + bias[c], a.v.slope), t1 = act8<A>(acc[c][1] + bias[c], a.v.slope);
          if (act) {
            float* a0 = act + oc * P + 2 * qy * a.Wo + x0;
            if (cols == 8) {
              store8(a0, t0);
              store8(a0 + a.Wo, t1);
            } else {
              for (int64_t l = 0; l < cols; ++l) {
                a0[l] = t0[l];
                a0[a.Wo + l] = t1[l];
              }
            }
          }
          // window order: top-left, top-right, bottom-left, bottom-right
          const v4f tl = __builtin_shufflevector(t0, t0, 0, 2, 4, 6);
          const v4f tr = __builtin_shufflevector(t0, t0, 1, 3, 5, 7);
          const v4f bl = __builtin_shufflevector(t1, t1, 0, 2, 4, 6);
          const v4f br = __builtin_shufflevector(t1, t1, 1, 3, 5, 7);
          const v4f pooled = pool4<PL, Vec4Ops>(tl, tr, bl, br);
          float* yq = y + oc * Pq + qy * Wq + x0 / 2;
          for (int64_t l = 0; l < windows; ++l) yq[l] = pooled[l];
        }
      }
    }
  }
  if (act) {  // odd last column / row, outside every window (as in conv_fused_image)
    for (int64_t oc0 = 0; oc0 < a.OCP; oc0 += 8) {
      if (a.Wo % 2) {
        for (int64_t yy = 0; yy < 2 * Hq; ++yy) {
          const int64_t pix = yy * a.Wo + a.Wo - 1;
          conv_pixels<1, 1, A>(a, xp, Wp, oc0, pix, pix + 1, act, true);
        }
      }
      if (a.Ho % 2) conv_pixels<1, 1, A>(a, xp, Wp, oc0, (a.Ho - 1) * a.Wo, P, act, true);
    }
  }
}

template <int NV, Act A, Pool PL>
void conv_forward_nv(const ConvForwardArgs& a, int64_t n0, int64_t n1, float* scratch) {
  const int64_t Wp = a.W + 2 * a.pad, P = a.Ho * a.Wo, Pq = (a.Ho / 2) * (a.Wo / 2);
  for (int64_t n = n0; n < n1; ++n) {
    const float* img = a.x + n * a.IC * a.H * a.W;
    float* act = a.act ? a.act + n * a.OC * P : nullptr;
    if constexpr (NV == 1) {  // up to 8 channels: the fused kernel puts pixels in the lanes
      if (a.fused) {          // (always a copy, for the slack its loads rely on)
        const float* xp = padded_image_copy(img, a.IC, a.H, a.W, a.pad, scratch);
        conv_fused_pixel_lanes<6, A, PL>(a, xp, Wp, a.w, a.y + n * a.OC * Pq, act);
        continue;
      }
    }
    const float* xp = padded_image(img, a.IC, a.H, a.W, a.pad, scratch);
    if (a.fused) {
      conv_fused_image<NV, 1, A, PL>(a, xp, Wp, a.y + n * a.OC * Pq, act);  // 16 channels x 1 window
    } else {
      for (int64_t oc0 = 0; oc0 < a.OCP; oc0 += 8 * NV)
        conv_pixels<NV, NV == 1 ? 8 : 6>(a, xp, Wp, oc0, 0, P, a.y + n * a.OC * P, false);
    }
  }
}

void conv_forward(const ConvForwardArgs& a, int64_t n0, int64_t n1, float* scratch) {
  const auto run = [&](auto act, auto pool) {
    if (a.oc_tile == 8)
      conv_forward_nv<1, decltype(act)::value, decltype(pool)::value>(a, n0, n1, scratch);
    else
      conv_forward_nv<2, decltype(act)::value, decltype(pool)::value>(a, n0, n1, scratch);
  };
  if (a.fused)
    with_variant(a.v, run);
  else  // no activation or pooling to choose
    run(ActC<Act::kTanh>{}, PoolC<Pool::kAvg>{});
}

// ------------------------------------------------------------------------------------------------
// Convolution weight gradient

// One row of the 2x2 pool's backward, through the activation when act (this row's saved
// activation) is given: d[0 .. W) from the pooled gradient row gr[0 .. W/2). `pair` is the other
// row of the windows, which max pooling reads to find the element each window took, and `bottom`
// says whether this row is the windows' second. Four windows at a time; an odd last column gets 0.
// Per element the arithmetic of act_pool_backward_f32, so vector and scalar columns give the same
// bits.
template <Act A, Pool PL>
LF_INLINE void pool_backward_row(const float* gr, const float* act, const float* pair, bool bottom, float* d,
                                 int64_t W, float slope) {
  const int64_t Wq = W / 2;
  const int32_t pos = bottom ? 2 : 0;  // window positions of this row's even and odd columns: pos, pos + 1
  int64_t qx = 0;
  for (; qx + 4 <= Wq; qx += 4) {
    v4f g4;
    __builtin_memcpy(&g4, gr + qx, sizeof g4);
    v8f gg;
    if constexpr (PL == Pool::kAvg) {
      gg = __builtin_shufflevector(g4, g4, 0, 0, 1, 1, 2, 2, 3, 3) * splat8(0.25f);
    } else {  // the element each window took, by pool4<kMax>'s scan, as max_index4
      const v8f r = load8(act + 2 * qx), o = load8(pair + 2 * qx);
      const v8f top = bottom ? o : r, bot = bottom ? r : o;
      const v4f tl = __builtin_shufflevector(top, top, 0, 2, 4, 6), tr = __builtin_shufflevector(top, top, 1, 3, 5, 7);
      const v4f bl = __builtin_shufflevector(bot, bot, 0, 2, 4, 6), br = __builtin_shufflevector(bot, bot, 1, 3, 5, 7);
      v4f m = tl;
      v4i taken = v4i{};
      v4i k = max_takes(tr, m);
      m = k ? tr : m;
      taken = k ? v4i{1, 1, 1, 1} : taken;
      k = max_takes(bl, m);
      m = k ? bl : m;
      taken = k ? v4i{2, 2, 2, 2} : taken;
      k = max_takes(br, m);
      taken = k ? v4i{3, 3, 3, 3} : taken;
      const v4i even = v4i{} + pos, odd = even + 1;
      const v4f ge = taken == even ? g4 : v4f{}, go = taken == odd ? g4 : v4f{};
      gg = __builtin_shufflevector(ge, go, 0, 4, 1, 5, 2, 6, 3, 7);
    }
    store8(d + 2 * qx, act ? act_backward<A, Vec8Ops>(gg, load8(act + 2 * qx), slope) : gg);
  }
  for (; qx < Wq; ++qx) {
    int taken = 0;
    if constexpr (PL == Pool::kMax) {
      const float* t = bottom ? pair : act;
      const float* b = bottom ? act : pair;
      taken = max_index4(t[2 * qx], t[2 * qx + 1], b[2 * qx], b[2 * qx + 1]);
    }
    for (int c = 0; c < 2; ++c) {
      const float gq = pool_grad<PL>(gr[qx], pos + c, taken);
      d[2 * qx + c] = act ? act_backward_f32<A>(gq, act[2 * qx + c], slope) : gq;
    }
  }
  if (W % 2) d[W - 1] = 0.0f;
}

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

template <int NV, int KB, Act A, Pool PL>
void conv_weight_grad_nv(const ConvWeightGradArgs& a, int64_t n0, int64_t n1, float* dwt,
                         float* db, float* scratch) {
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
    for (int64_t oc0 = 0; oc0 < a.OCP; oc0 += 8) {
      v8f s = v8f{};
      for (int64_t p = 0; p < P; ++p) s += load8(gt + p * a.OCP + oc0);
      store8(db + oc0, load8(db + oc0) + s);
    }
    for (int64_t oc0 = 0; oc0 < a.OCP; oc0 += 8 * NV) {
      for (int64_t k0 = 0; k0 < K; k0 += KB) {
        int32_t tap[KB];
        LF_UNROLL for (int i = 0; i < KB; ++i) tap[i] = a.taps[min64(k0 + i, K - 1)];
        v8f acc[KB][NV];
        LF_UNROLL for (int i = 0; i < KB; ++i) {
          LF_UNROLL for (int v = 0; v < NV; ++v) acc[i][v] = v8f{};
        }
        for (int64_t yy = 0; yy < a.Ho; ++yy) {
          const float* row = xp + yy * Wp;
          const float* grow = gt + yy * a.Wo * a.OCP + oc0;
          for (int64_t xx = 0; xx < a.Wo; ++xx) {
            v8f gv[NV];
            LF_UNROLL for (int v = 0; v < NV; ++v) gv[v] = load8(grow + xx * a.OCP + 8 * v);
            LF_UNROLL for (int i = 0; i < KB; ++i) {
              const v8f xv = splat8(row[tap[i] + xx]);
              LF_UNROLL for (int v = 0; v < NV; ++v) acc[i][v] += xv * gv[v];
            }
          }
        }
        for (int i = 0; i < KB && k0 + i < K; ++i) {
          LF_UNROLL for (int v = 0; v < NV; ++v) {
            float* d = dwt + (k0 + i) * a.OCP + oc0 + 8 * v;
            store8(d, load8(d) + acc[i][v]);
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
template <int OCB, int KB, Act A, Pool PL>
void conv_weight_grad_pixel_lanes(const ConvWeightGradArgs& a, int64_t n0, int64_t n1, float* dwt,
                                  float* db, float* scratch) {
  const int64_t Hp = a.H + 2 * a.pad, Wp = a.W + 2 * a.pad, K = a.IC * kTaps;
  const int64_t Q = (a.Ho * Wp + 7) / 8 * 8;
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
      // The bias gradient in 8 lanes, then across them: one add per 8 values, not a serial chain
      // of scalar adds (which cost more than all of this kernel's multiply-adds).
      v8f sum = v8f{};
      for (int64_t q = 0; q < Q; q += 8) sum += load8(row + q);
      db[oc] += hsum8(sum);
    }
    for (int64_t oc0 = 0; oc0 < a.OC; oc0 += OCB) {
      const float* gc[OCB];
      LF_UNROLL for (int c = 0; c < OCB; ++c) gc[c] = gw + min64(oc0 + c, a.OC - 1) * Q;
      for (int64_t k0 = 0; k0 < K; k0 += KB) {
        const float* xk[KB];
        LF_UNROLL for (int i = 0; i < KB; ++i) xk[i] = xp + a.taps[min64(k0 + i, K - 1)];
        v8f acc[OCB][KB];
        LF_UNROLL for (int c = 0; c < OCB; ++c) {
          LF_UNROLL for (int i = 0; i < KB; ++i) acc[c][i] = v8f{};
        }
        for (int64_t q = 0; q < Q; q += 8) {
          v8f xv[KB];
          LF_UNROLL for (int i = 0; i < KB; ++i) xv[i] = load8(xk[i] + q);
          LF_UNROLL for (int c = 0; c < OCB; ++c) {
            const v8f gv = load8(gc[c] + q);
            LF_UNROLL for (int i = 0; i < KB; ++i) acc[c][i] += gv * xv[i];
          }
        }
        for (int c = 0; c < OCB && oc0 + c < a.OC; ++c)
          for (int i = 0; i < KB && k0 + i < K; ++i) dwt[(k0 + i) * a.OCP + oc0 + c] += hsum8(acc[c][i]);
      }
    }
  }
}

void conv_weight_grad(const ConvWeightGradArgs& a, int64_t n0, int64_t n1, float* dwt, float* db,
                      float* scratch) {
  const auto run = [&](auto act, auto pool) {
    if (a.OC <= 8)  // oc_tile 8: pixel lanes
      conv_weight_grad_pixel_lanes<6, 2, decltype(act)::value, decltype(pool)::value>(a, n0, n1, dwt, db, scratch);
    else
      conv_weight_grad_nv<2, 4, decltype(act)::value, decltype(pool)::value>(a, n0, n1, dwt, db, scratch);
  };
  if (a.act)
    with_variant(a.v, run);
  else  // the gradient at the convolution's output: no activation or pooling to go back through
    run(ActC<Act::kTanh>{}, PoolC<Pool::kAvg>{});
}

// ------------------------------------------------------------------------------------------------
// Convolution input gradient

// T[k0 + r][p0 .. p0 + 16) = sum_oc W[oc][k0 + r] gp[oc][p0 ..], for KR taps at once.
template <int KR>
LF_INLINE void tap_pixel_tile(const float* w, const float* gp, float* t, int64_t OC, int64_t K,
                              int64_t PP, int64_t k0, int64_t p0) {
  int64_t kk[KR];
  LF_UNROLL for (int r = 0; r < KR; ++r) kk[r] = min64(k0 + r, K - 1);
  v8f acc[KR][2];
  LF_UNROLL for (int r = 0; r < KR; ++r) acc[r][0] = acc[r][1] = v8f{};
  for (int64_t oc = 0; oc < OC; ++oc) {
    const v8f g0 = load8(gp + oc * PP + p0), g1 = load8(gp + oc * PP + p0 + 8);
    LF_UNROLL for (int r = 0; r < KR; ++r) {
      const v8f wb = splat8(w[oc * K + kk[r]]);
      acc[r][0] += wb * g0;
      acc[r][1] += wb * g1;
    }
  }
  for (int r = 0; r < KR && k0 + r < K; ++r) {
    store8(t + (k0 + r) * PP + p0, acc[r][0]);
    store8(t + (k0 + r) * PP + p0 + 8, acc[r][1]);
  }
}

void conv_input_grad(const ConvInputGradArgs& a, int64_t n0, int64_t n1, float* scratch) {
  constexpr int KR = 4;  // 4 taps x 16 pixels: 8 accumulators
  const int64_t P = a.Ho * a.Wo, PP = (P + 15) / 16 * 16, K = a.IC * kTaps;
  const int64_t Hp = a.H + 2 * a.pad, Wp = a.W + 2 * a.pad, NV8 = (Wp + 7) / 8 * 8;
  float* gp = scratch;        // (OC, PP): grad with zeroed pixel tails, so tiles need no masks
  float* t = gp + a.OC * PP;  // (K, PP)
  int32_t* mask = reinterpret_cast<int32_t*>(t + K * PP);  // (5, NV8)
  float* dxp = t + K * PP + kKernel * NV8;                  // (IC, Hp, Wp) + 8: padded input grad
  // Lane c of a padded-input row takes tap column kw from output column c - kw, if that exists.
  for (int64_t kw = 0; kw < kKernel; ++kw)
    for (int64_t c = 0; c < NV8; ++c) mask[kw * NV8 + c] = (c >= kw && c - kw < a.Wo) ? -1 : 0;
  for (int64_t n = n0; n < n1; ++n) {
    const float* g = a.grad + n * a.OC * P;
    for (int64_t oc = 0; oc < a.OC; ++oc)
      for (int64_t p = 0; p < PP; ++p) gp[oc * PP + p] = p < P ? g[oc * P + p] : 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += KR)
      for (int64_t p0 = 0; p0 < PP; p0 += 16) tap_pixel_tile<KR>(a.w, gp, t, a.OC, K, PP, k0, p0);
    // col2im as a gather: padded-input row r of plane ic sums, over taps (kh, kw), the tap's
    // output row r - kh shifted right by kw. Eight columns at a time in a register, each load
    // masked to the tap's Wo real columns (the rest of a load belongs to a neighbouring row or
    // tap, or to the buffers around t, and is never used). Taps are added in the order
    // (kh, kw), with exact zeros where a tap does not reach, so every sum is the scatter's.
    for (int64_t ic = 0; ic < a.IC; ++ic) {
      for (int64_t r = 0; r < Hp; ++r) {
        float* drow = dxp + (ic * Hp + r) * Wp;
        for (int64_t c0 = 0; c0 < NV8; c0 += 8) {
          v8f acc = v8f{};
          for (int64_t kh = 0; kh < kKernel; ++kh) {
            const int64_t yy = r - kh;
            if (yy < 0 || yy >= a.Ho) continue;
            const float* trow = t + (ic * kTaps + kh * kKernel) * PP + yy * a.Wo + c0;
            LF_UNROLL for (int kw = 0; kw < kKernel; ++kw) {
              v8i m;
              __builtin_memcpy(&m, mask + kw * NV8 + c0, sizeof m);  // scratch: 16-byte aligned
              const v8i v = __builtin_bit_cast(v8i, load8(trow + kw * PP - kw));
              acc += __builtin_bit_cast(v8f, v & m);
            }
          }
          store8(drow + c0, acc);  // may run past the row: the next row's stores overwrite it
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

// ------------------------------------------------------------------------------------------------
// Linear layers, on nn.Linear's layouts: x (N, K), W (J, K), y (N, J).

// Elementwise activation A over [i0, i1) of a flat array (in place allowed). Every element goes
// through act8, the tail too (through a padded copy), so a value's bits never depend on where a
// range boundary falls.
template <Act A>
void act_forward_range(const float* x, float* y, int64_t i0, int64_t i1, float slope) {
  int64_t i = i0;
  for (; i + 8 <= i1; i += 8) store8(y + i, act8<A>(load8(x + i), slope));
  if (i < i1) {
    float tmp[8] = {};
    for (int64_t l = 0; l < i1 - i; ++l) tmp[l] = x[i + l];
    store8(tmp, act8<A>(load8(tmp), slope));
    for (int64_t l = 0; l < i1 - i; ++l) y[i + l] = tmp[l];
  }
}

void act_forward(const float* x, float* y, int64_t i0, int64_t i1, const Variant& v) {
  with_act(v.act, [&](auto act) { act_forward_range<decltype(act)::value>(x, y, i0, i1, v.slope); });
}


// out[r][c] = dot(x row r, W row c) over K: RN x RJ dot products, vectorised along K.
template <int RN, int RJ>
LF_INLINE void dot_tile(const float* const (&xr)[RN], const float* const (&wr)[RJ], int64_t K,
                        float (&out)[RN][RJ]) {
  v8f acc[RN][RJ];
  LF_UNROLL for (int r = 0; r < RN; ++r) {
    LF_UNROLL for (int c = 0; c < RJ; ++c) acc[r][c] = v8f{};
  }
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    v8f xv[RN];
    LF_UNROLL for (int r = 0; r < RN; ++r) xv[r] = load8(xr[r] + k);
    LF_UNROLL for (int c = 0; c < RJ; ++c) {
      const v8f wv = load8(wr[c] + k);
      LF_UNROLL for (int r = 0; r < RN; ++r) acc[r][c] += xv[r] * wv;
    }
  }
  LF_UNROLL for (int r = 0; r < RN; ++r) {
    LF_UNROLL for (int c = 0; c < RJ; ++c) {
      float s = hsum8(acc[r][c]);
      for (int64_t kk = k; kk < K; ++kk) s += xr[r][kk] * wr[c][kk];
      out[r][c] = s;
    }
  }
}

template <int RN, int RJ>
LF_INLINE void linear_rows(const LinearArgs& a, int64_t n, int64_t j0) {
  const float* xr[RN];
  const float* wr[RJ];
  LF_UNROLL for (int r = 0; r < RN; ++r) xr[r] = a.x + (n + r) * a.K;
  LF_UNROLL for (int c = 0; c < RJ; ++c) wr[c] = a.w + min64(j0 + c, a.J - 1) * a.K;
  float out[RN][RJ];
  dot_tile<RN, RJ>(xr, wr, a.K, out);
  for (int r = 0; r < RN; ++r)
    for (int c = 0; c < RJ && j0 + c < a.J; ++c)
      a.y[(n + r) * a.J + j0 + c] = out[r][c] + (a.bias ? a.bias[j0 + c] : 0.0f);
}

void linear_forward(const LinearArgs& a, int64_t n0, int64_t n1) {
  constexpr int RN = 3, RJ = 4;  // 12 accumulators; W's 4 rows stay in L1 while x streams past
  for (int64_t j0 = 0; j0 < a.J; j0 += RJ) {
    int64_t n = n0;
    for (; n + RN <= n1; n += RN) linear_rows<RN, RJ>(a, n, j0);
    for (; n < n1; ++n) linear_rows<1, RJ>(a, n, j0);
  }
  // The activation over the rows just written (contiguous, in cache), 8 at a time: one scalar tanh
  // per output cost more than the layer's dot products.
  if (a.activate) act_forward(a.y, a.y, n0 * a.J, n1 * a.J, a.v);
}

// dx rows r of a tile: dx[n][k0 .. k0 + 8 NV) = sum_j g[n][j] W[j][k0 ..]
template <int RN, int NV>
LF_INLINE void dx_tile(const float* g, const float* w, float* dx, int64_t K, int64_t J, int64_t n,
                       int64_t k0) {
  v8f acc[RN][NV];
  LF_UNROLL for (int r = 0; r < RN; ++r) {
    LF_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = v8f{};
  }
  for (int64_t j = 0; j < J; ++j) {
    v8f wv[NV];
    LF_UNROLL for (int v = 0; v < NV; ++v) wv[v] = load8(w + j * K + k0 + 8 * v);
    LF_UNROLL for (int r = 0; r < RN; ++r) {
      const v8f gv = splat8(g[(n + r) * J + j]);
      LF_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] += gv * wv[v];
    }
  }
  LF_UNROLL for (int r = 0; r < RN; ++r) {
    LF_UNROLL for (int v = 0; v < NV; ++v) store8(dx + (n + r) * K + k0 + 8 * v, acc[r][v]);
  }
}

template <int RN>
LF_INLINE void dx_rows(const float* g, const float* w, float* dx, int64_t K, int64_t J, int64_t n) {
  int64_t k0 = 0;
  for (; k0 + 16 <= K; k0 += 16) dx_tile<RN, 2>(g, w, dx, K, J, n, k0);
  for (; k0 + 8 <= K; k0 += 8) dx_tile<RN, 1>(g, w, dx, K, J, n, k0);
  for (; k0 < K; ++k0) {
    for (int r = 0; r < RN; ++r) {
      float s = 0.0f;
      for (int64_t j = 0; j < J; ++j) s += g[(n + r) * J + j] * w[j * K + k0];
      dx[(n + r) * K + k0] = s;
    }
  }
}

void linear_backward_input(const float* g, const float* w, float* dx, int64_t K, int64_t J,
                           int64_t n0, int64_t n1) {
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) dx_rows<4>(g, w, dx, K, J, n);
  for (; n < n1; ++n) dx_rows<1>(g, w, dx, K, J, n);
}

// dw[j .. j+RJ)[k0 .. k0 + 8 NV) += sum_{n in [nb, ne)} g[n][j] x[n][k0 ..]
template <int RJ, int NV>
LF_INLINE void dw_tile(const float* g, const float* x, float* dw, int64_t K, int64_t J, int64_t j,
                       int64_t k0, int64_t nb, int64_t ne) {
  v8f acc[RJ][NV];  // summed from zero, then added to dw: blocked summation keeps the error of a
                    // long batch to that of one block
  LF_UNROLL for (int c = 0; c < RJ; ++c) {
    LF_UNROLL for (int v = 0; v < NV; ++v) acc[c][v] = v8f{};
  }
  for (int64_t n = nb; n < ne; ++n) {
    v8f xv[NV];
    LF_UNROLL for (int v = 0; v < NV; ++v) xv[v] = load8(x + n * K + k0 + 8 * v);
    LF_UNROLL for (int c = 0; c < RJ; ++c) {
      const v8f gv = splat8(g[n * J + j + c]);
      LF_UNROLL for (int v = 0; v < NV; ++v) acc[c][v] += gv * xv[v];
    }
  }
  LF_UNROLL for (int c = 0; c < RJ; ++c) {
    LF_UNROLL for (int v = 0; v < NV; ++v) {
      float* d = dw + (j + c) * K + k0 + 8 * v;
      store8(d, load8(d) + acc[c][v]);
    }
  }
}

template <int RJ>
LF_INLINE void dw_rows(const float* g, const float* x, float* dw, int64_t K, int64_t J, int64_t j,
                       int64_t nb, int64_t ne) {
  int64_t k0 = 0;
  for (; k0 + 16 <= K; k0 += 16) dw_tile<RJ, 2>(g, x, dw, K, J, j, k0, nb, ne);
  for (; k0 + 8 <= K; k0 += 8) dw_tile<RJ, 1>(g, x, dw, K, J, j, k0, nb, ne);
  for (; k0 < K; ++k0) {
    for (int c = 0; c < RJ; ++c) {
      float s = 0.0f;
      for (int64_t n = nb; n < ne; ++n) s += g[n * J + j + c] * x[n * K + k0];
      dw[(j + c) * K + k0] += s;
    }
  }
}

void linear_backward_weight(const float* g, const float* x, float* dw, float* db, int64_t N,
                            int64_t K, int64_t J, int64_t j0, int64_t j1) {
  constexpr int64_t kRowBlock = 256;  // a block of x rows (<= 400 KB for fc1) stays in L2
  for (int64_t j = j0; j < j1; ++j)
    for (int64_t k = 0; k < K; ++k) dw[j * K + k] = 0.0f;
  for (int64_t j = j0; j < j1; ++j) db[j] = 0.0f;
  for (int64_t nb = 0; nb < N; nb += kRowBlock) {
    const int64_t ne = min64(N, nb + kRowBlock);
    int64_t j = j0;
    for (; j + 4 <= j1; j += 4) dw_rows<4>(g, x, dw, K, J, j, nb, ne);
    for (; j < j1; ++j) dw_rows<1>(g, x, dw, K, J, j, nb, ne);
    for (int64_t jj = j0; jj < j1; ++jj) {
      float s = 0.0f;
      for (int64_t n = nb; n < ne; ++n) s += g[n * J + jj];
      db[jj] += s;
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Elementwise and pooling

void act_backward(const float* g, const float* y, float* dx, int64_t i0, int64_t i1, const Variant& v) {
  with_act(v.act, [&](auto act) {
    for (int64_t i = i0; i < i1; ++i) dx[i] = act_backward_f32<decltype(act)::value>(g[i], y[i], v.slope);
  });
}

void avg_pool_forward(const float* x, float* y, int64_t H, int64_t W, int64_t p0, int64_t p1) {
  const int64_t Hq = H / 2, Wq = W / 2;
  for (int64_t p = p0; p < p1; ++p) {
    const float* xp = x + p * H * W;
    float* yp = y + p * Hq * Wq;
    for (int64_t qy = 0; qy < Hq; ++qy) {
      const float* r0 = xp + 2 * qy * W;
      const float* r1 = r0 + W;
      for (int64_t qx = 0; qx < Wq; ++qx)
        yp[qy * Wq + qx] = avg4(r0[2 * qx], r0[2 * qx + 1], r1[2 * qx], r1[2 * qx + 1]);
    }
  }
}

// dx (planes, H, W) from g (planes, H/2, W/2): each pooled gradient taken back to its 2x2 window,
// then through the activation's backward from the saved activation when act is given (average
// pooling may go without). A row at a time; an odd last row / column gets 0.
template <Act A, Pool PL>
LF_INLINE void pool_backward_planes(const float* g, const float* act, float* dx, int64_t H,
                                    int64_t W, int64_t p0, int64_t p1, float slope) {
  const int64_t Hq = H / 2, Wq = W / 2;
  for (int64_t p = p0; p < p1; ++p) {
    for (int64_t yy = 0; yy < H; ++yy) {
      float* d = dx + (p * H + yy) * W;
      if (yy >= 2 * Hq) {
        for (int64_t xx = 0; xx < W; ++xx) d[xx] = 0.0f;
        continue;
      }
      const float* a = act ? act + (p * H + yy) * W : nullptr;
      const bool bottom = yy % 2;
      pool_backward_row<A, PL>(g + (p * Hq + yy / 2) * Wq, a, a ? (bottom ? a - W : a + W) : nullptr, bottom, d,
                               W, slope);
    }
  }
}

void avg_pool_backward(const float* g, float* dx, int64_t H, int64_t W, int64_t p0, int64_t p1) {
  pool_backward_planes<Act::kTanh, Pool::kAvg>(g, nullptr, dx, H, W, p0, p1, 0.0f);
}

void act_pool_backward(const float* g, const float* act, float* dpre, int64_t H, int64_t W,
                       int64_t p0, int64_t p1, const Variant& v) {
  with_variant(v, [&](auto a, auto pool) { pool_backward_planes<decltype(a)::value, decltype(pool)::value>(g, act, dpre, H, W, p0, p1, v.slope); });
}

Kernels make_kernels(const char* isa) {
  Kernels k;
  k.isa = isa;
  k.conv_forward = conv_forward;
  k.conv_weight_grad = conv_weight_grad;
  k.conv_input_grad = conv_input_grad;
  k.linear_forward = linear_forward;
  k.linear_backward_input = linear_backward_input;
  k.linear_backward_weight = linear_backward_weight;
  k.act_forward = act_forward;
  k.act_backward = act_backward;
  k.avg_pool_forward = avg_pool_forward;
  k.avg_pool_backward = avg_pool_backward;
  k.act_pool_backward = act_pool_backward;
  return k;
}

}  // namespace
}  // namespace cpu
}  // namespace lenet_fast

#undef LF_INLINE
#undef LF_UNROLL
