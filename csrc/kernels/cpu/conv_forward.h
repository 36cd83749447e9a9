// CPU convolution forward: the plain 5x5 convolution and the fused conv + bias + activation + 2x2 pool.
// Part of the CPU kernels compiled once per ISA: include kernels_impl.h, not this file.
#pragma once

#include "kernel_common.h"

namespace lenet_fast {
namespace cpu {
namespace {

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

// acc[r][v] = sum_k base[r][taps[k]] * wt[k*OCP + L v .. L v + L): R pixels x L*NV channels.
template <int L, int R, int NV>
LF_INLINE void conv_tile(const float* const (&base)[R], const int32_t* taps, int64_t K,
                         const float* wt, int64_t OCP, typename Lanes<L>::V (&acc)[R][NV]) {
  using VL = Lanes<L>;
  using V = typename VL::V;
  LF_UNROLL for (int r = 0; r < R; ++r) {
    LF_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = V{};
  }
  for (int64_t k = 0; k < K; ++k) {
    V wv[NV];
    LF_UNROLL for (int v = 0; v < NV; ++v) wv[v] = VL::load(wt + k * OCP + L * v);
    const int32_t o = taps[k];
    LF_UNROLL for (int r = 0; r < R; ++r) {
      const V xv = VL::splat(base[r][o]);
      LF_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] += xv * wv[v];
    }
  }
}

// conv_tile for WPB neighbouring 2x2 pooling windows: pixel 4w + i is at row i / 2 (row0 or row1),
// column 2w + i % 2, so every pixel is one of two pointers plus a constant (two registers where R
// pointers would spill).
template <int L, int WPB, int NV>
LF_INLINE void conv_window_tile(const float* row0, const float* row1, const int32_t* taps, int64_t K,
                                const float* wt, int64_t OCP, typename Lanes<L>::V (&acc)[4 * WPB][NV]) {
  using VL = Lanes<L>;
  using V = typename VL::V;
  LF_UNROLL for (int r = 0; r < 4 * WPB; ++r) {
    LF_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = V{};
  }
  for (int64_t k = 0; k < K; ++k) {
    V wv[NV];
    LF_UNROLL for (int v = 0; v < NV; ++v) wv[v] = VL::load(wt + k * OCP + L * v);
    const float* p0 = row0 + taps[k];
    const float* p1 = row1 + taps[k];
    LF_UNROLL for (int r = 0; r < 4 * WPB; ++r) {
      const V xv = VL::splat((r % 4 < 2 ? p0 : p1)[2 * (r / 4) + r % 2]);
      LF_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] += xv * wv[v];
    }
  }
}

// Stores the first `lanes` channels of v to out[c * plane_stride], c = 0, 1, ...
template <int L>
LF_INLINE void store_lanes(float* out, int64_t plane_stride, typename Lanes<L>::V v, int64_t lanes) {
  float tmp[L];
  Lanes<L>::store(tmp, v);
  for (int64_t l = 0; l < lanes && l < L; ++l) out[l * plane_stride] = tmp[l];
}

// Plain convolution + bias of pixels [p0, p1) of one image (or the activation A of it into `act`
// when `to_act`, for the pixels a fused kernel leaves out of its pooling windows).
template <int L, int NV, int R, Act A = Act::kNone>
void conv_pixels(const ConvForwardArgs& a, const float* xp, int64_t Wp, int64_t oc0, int64_t p0,
                 int64_t p1, float* out, bool to_act) {
  using VL = Lanes<L>;
  using V = typename VL::V;
  const int64_t K = a.IC * kTaps, P = a.Ho * a.Wo;
  V bias[NV];
  LF_UNROLL for (int v = 0; v < NV; ++v) bias[v] = a.bias ? VL::load(a.bias + oc0 + L * v) : V{};
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
    V acc[R][NV];
    conv_tile<L, R, NV>(base, a.taps, K, a.wt + oc0, a.OCP, acc);
    for (int r = 0; r < R && p + r < p1; ++r) {
      LF_UNROLL for (int v = 0; v < NV; ++v) {
        V o = acc[r][v] + bias[v];
        if (to_act) o = act_lanes<L, A>(o, a.v.slope);
        store_lanes<L>(out + (oc0 + L * v) * P + p + r, P, o, a.OC - oc0 - L * v);
      }
    }
  }
}

// Fused conv + bias + activation + 2x2 pool of one image: each tile is WPB pooling windows
// (R = 4 WPB conv pixels) by L*NV channels, and only the pooled value leaves the registers
// (plus the activation itself when the caller keeps it for backward).
template <int L, int NV, int WPB, Act A, Pool PL>
void conv_fused_image(const ConvForwardArgs& a, const float* xp, int64_t Wp, float* y, float* act) {
  using VL = Lanes<L>;
  using V = typename VL::V;
  constexpr int R = 4 * WPB;
  const int64_t K = a.IC * kTaps, Hq = a.Ho / 2, Wq = a.Wo / 2, P = a.Ho * a.Wo, Pq = Hq * Wq;
  for (int64_t oc0 = 0; oc0 < a.OCP; oc0 += L * NV) {
    V bias[NV];
    LF_UNROLL for (int v = 0; v < NV; ++v) bias[v] = a.bias ? VL::load(a.bias + oc0 + L * v) : V{};
    for (int64_t qy = 0; qy < Hq; ++qy) {
      for (int64_t q0 = 0; q0 < Wq; q0 += WPB) {
        // The tile's windows start at qx0: a short last tile moves back to end at the row's end
        // (recomputing, bit for bit, windows the previous tile stored), or where the row is
        // narrower than a tile, repeats its last window.
        const int64_t qx0 = Wq >= WPB ? min64(q0, Wq - WPB) : q0;
        V acc[R][NV];
        if (qx0 + WPB <= Wq) {
          const float* row0 = xp + 2 * qy * Wp + 2 * qx0;
          conv_window_tile<L, WPB, NV>(row0, row0 + Wp, a.taps, K, a.wt + oc0, a.OCP, acc);
        } else {
          const float* base[R];
          LF_UNROLL for (int w = 0; w < WPB; ++w) {
            const int64_t qx = min64(qx0 + w, Wq - 1);
            LF_UNROLL for (int i = 0; i < 4; ++i)
              base[4 * w + i] = xp + (2 * qy + i / 2) * Wp + 2 * qx + i % 2;
          }
          conv_tile<L, R, NV>(base, a.taps, K, a.wt + oc0, a.OCP, acc);
        }
        for (int w = 0; w < WPB && qx0 + w < Wq; ++w) {
          const int64_t qx = qx0 + w;
          LF_UNROLL for (int v = 0; v < NV; ++v) {
            const int64_t lanes = a.OC - oc0 - L * v;
            V t[4];
            LF_UNROLL for (int i = 0; i < 4; ++i) t[i] = act_lanes<L, A>(acc[4 * w + i][v] + bias[v], a.v.slope);
            const V pooled = pool4<PL, VL>(t[0], t[1], t[2], t[3]);
            store_lanes<L>(y + (oc0 + L * v) * Pq + qy * Wq + qx, Pq, pooled, lanes);
            if (act) {
              LF_UNROLL for (int i = 0; i < 4; ++i) {
                const int64_t pix = (2 * qy + i / 2) * a.Wo + 2 * qx + i % 2;
                store_lanes<L>(act + (oc0 + L * v) * P + pix, P, t[i], lanes);
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
          conv_pixels<L, NV, 1, A>(a, xp, Wp, oc0, pix, pix + 1, act, true);
        }
      }
      if (a.Ho % 2) conv_pixels<L, NV, 1, A>(a, xp, Wp, oc0, (a.Ho - 1) * a.Wo, P, act, true);
    }
  }
}

// Fused conv + activation + pool for few output channels (conv1: OC = 6), with pixels in the lanes:
// a tile is L neighbouring columns of 2 PR conv rows (PR rows of L/2 pooling windows) by OCB
// channels, so each tap costs 2 PR contiguous loads and OCB broadcasts for 2 PR OCB FMAs, and the
// activation is stored as whole vectors (a row's last, short one masked). Channel lanes would
// leave 2 of 8 lanes idle and need a broadcast per FMA. xp is a padded copy with at least L floats
// of slack past its end: the last tile of a row reads up to L - 1 columns into the next row
// (those lanes are discarded).
template <int L, int OCB, int PR, Act A, Pool PL>
void conv_fused_pixel_lanes(const ConvForwardArgs& a, const float* xp, int64_t Wp,
                            const float* w, float* y, float* act) {
  using VL = Lanes<L>;
  using V = typename VL::V;
  using VH = Lanes<L / 2>;
  constexpr int H = L / 2;  // pooling windows per tile
  const int64_t K = a.IC * kTaps, Hq = a.Ho / 2, Wq = a.Wo / 2, P = a.Ho * a.Wo, Pq = Hq * Wq;
  for (int64_t oc0 = 0; oc0 < a.OC; oc0 += OCB) {
    const float* wc[OCB];  // (K) weights of each channel of the tile; a short tail repeats the last
    V bias[OCB];
    LF_UNROLL for (int c = 0; c < OCB; ++c) {
      const int64_t oc = min64(oc0 + c, a.OC - 1);
      wc[c] = w + oc * K;
      bias[c] = VL::splat(a.bias ? a.bias[oc] : 0.0f);
    }
    for (int64_t qy0 = 0; qy0 < Hq; qy0 += PR) {
      for (int64_t x0 = 0; x0 < 2 * Wq; x0 += L) {
        const float* rows[2 * PR];  // a short last tile repeats its last pooled row
        LF_UNROLL for (int i = 0; i < 2 * PR; ++i) rows[i] = xp + (2 * min64(qy0 + i / 2, Hq - 1) + i % 2) * Wp + x0;
        V acc[OCB][2 * PR];
        LF_UNROLL for (int c = 0; c < OCB; ++c) {
          LF_UNROLL for (int i = 0; i < 2 * PR; ++i) acc[c][i] = V{};
        }
        for (int64_t k = 0; k < K; ++k) {
          const int32_t o = a.taps[k];
          V v[2 * PR];
          LF_UNROLL for (int i = 0; i < 2 * PR; ++i) v[i] = VL::load(rows[i] + o);
          LF_UNROLL for (int c = 0; c < OCB; ++c) {
            const V wb = VL::splat(wc[c][k]);
            LF_UNROLL for (int i = 0; i < 2 * PR; ++i) acc[c][i] += wb * v[i];
          }
        }
        const int64_t cols = min64(L, a.Wo - x0), windows = min64(H, Wq - x0 / 2);
        for (int j = 0; j < PR && qy0 + j < Hq; ++j)
        for (int c = 0; c < OCB && oc0 + c < a.OC; ++c) {
          const int64_t oc = oc0 + c, qy = qy0 + j;
          const V t0 = act_lanes<L, A>(acc[c][2 * j] + bias[c], a.v.slope);
          const V t1 = act_lanes<L, A>(acc[c][2 * j + 1] + bias[c], a.v.slope);
          if (act) {
            float* a0 = act + oc * P + 2 * qy * a.Wo + x0;
            if (cols == L) {
              VL::store(a0, t0);
              VL::store(a0 + a.Wo, t1);
            } else {
              VL::store_n(a0, t0, cols);
              VL::store_n(a0 + a.Wo, t1, cols);
            }
          }
          // window order: top-left, top-right, bottom-left, bottom-right
          const typename VH::V pooled =
              pool4<PL, VH>(even_lanes<L>(t0), odd_lanes<L>(t0), even_lanes<L>(t1), odd_lanes<L>(t1));
          float* yq = y + oc * Pq + qy * Wq + x0 / 2;
          if (windows == H) VH::store(yq, pooled);
          else for (int64_t l = 0; l < windows; ++l) yq[l] = pooled[l];
        }
      }
    }
  }
  if (act) {  // odd last column / row, outside every window (as in conv_fused_image); OCP is 8
    for (int64_t oc0 = 0; oc0 < a.OCP; oc0 += 8) {
      if (a.Wo % 2) {
        for (int64_t yy = 0; yy < 2 * Hq; ++yy) {
          const int64_t pix = yy * a.Wo + a.Wo - 1;
          conv_pixels<8, 1, 1, A>(a, xp, Wp, oc0, pix, pix + 1, act, true);
        }
      }
      if (a.Ho % 2) conv_pixels<8, 1, 1, A>(a, xp, Wp, oc0, (a.Ho - 1) * a.Wo, P, act, true);
    }
  }
}

// Pixel lanes (few output channels, OCP = 8): the fused kernel above; the plain convolution with
// its 8 channels in the lanes of one 8-lane vector, whatever L.
template <int L, Act A, Pool PL>
void conv_forward_pixel_lanes(const ConvForwardArgs& a, int64_t n0, int64_t n1, float* scratch) {
  const int64_t Wp = a.W + 2 * a.pad, P = a.Ho * a.Wo, Pq = (a.Ho / 2) * (a.Wo / 2);
  for (int64_t n = n0; n < n1; ++n) {
    const float* img = a.x + n * a.IC * a.H * a.W;
    if (a.fused) {  // always a copy, for the slack its loads rely on
      const float* xp = padded_image_copy(img, a.IC, a.H, a.W, a.pad, scratch);
      // 2 pooled rows per tile with AVX-512's 32 registers (24 accumulators), 1 with AVX2's 16
      conv_fused_pixel_lanes<L, kPixelLaneChannelBlock, L == 16 ? 2 : 1, A, PL>(a, xp, Wp, a.w, a.y + n * a.OC * Pq,
                                                               a.act ? a.act + n * a.OC * P : nullptr);
    } else {
      const float* xp = padded_image(img, a.IC, a.H, a.W, a.pad, scratch);
      conv_pixels<8, 1, 8>(a, xp, Wp, 0, 0, P, a.y + n * a.OC * P, false);
    }
  }
}

// Channel lanes (OCP a multiple of 16): tiles of NV vectors of L channels. WPB pooling windows per
// fused tile (4 WPB pixels x NV vectors of accumulators: 8 with 8 lanes, 20 with 16, of AVX-512's
// 32 registers; conv2's 5x5 pooled row is one tile), R pixels per plain tile.
template <int L, Act A, Pool PL>
void conv_forward_channel_lanes(const ConvForwardArgs& a, int64_t n0, int64_t n1, float* scratch) {
  constexpr int NV = 16 / L, WPB = L == 16 ? 5 : 1, R = L == 16 ? 12 : 6;
  const int64_t Wp = a.W + 2 * a.pad, P = a.Ho * a.Wo, Pq = (a.Ho / 2) * (a.Wo / 2);
  for (int64_t n = n0; n < n1; ++n) {
    const float* xp = padded_image(a.x + n * a.IC * a.H * a.W, a.IC, a.H, a.W, a.pad, scratch);
    if (a.fused) {
      conv_fused_image<L, NV, WPB, A, PL>(a, xp, Wp, a.y + n * a.OC * Pq, a.act ? a.act + n * a.OC * P : nullptr);
    } else {
      for (int64_t oc0 = 0; oc0 < a.OCP; oc0 += L * NV)
        conv_pixels<L, NV, R>(a, xp, Wp, oc0, 0, P, a.y + n * a.OC * P, false);
    }
  }
}

template <int L>
void conv_forward(const ConvForwardArgs& a, int64_t n0, int64_t n1, float* scratch) {
  const auto run = [&](auto act, auto pool) {
    if (conv_pixel_lanes(a.OC))
      conv_forward_pixel_lanes<L, decltype(act)::value, decltype(pool)::value>(a, n0, n1, scratch);
    else
      conv_forward_channel_lanes<L, decltype(act)::value, decltype(pool)::value>(a, n0, n1, scratch);
  };
  if (a.fused)
    with_variant(a.v, run);
  else  // the plain convolution
    run(ActC<Act::kNone>{}, PoolC<Pool::kAvg>{});
}

}  // namespace
}  // namespace cpu
}  // namespace lenet_fast
