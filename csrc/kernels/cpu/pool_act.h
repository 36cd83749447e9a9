// CPU elementwise kernels: the activation and its backward, 2x2 average pooling and its
// backward, and the fused pool + activation backward. The activation and its backward take the ISA's lane
// count; the pooling rows stay at 8 lanes (4 windows) on every ISA: they are a small part of any
// step, and their shuffles are written for that width.
// Part of the CPU kernels compiled once per ISA: include kernels_impl.h, not this file.
#pragma once

#include "kernel_common.h"

namespace lenet_fast {
namespace cpu {
namespace {

// One row of the 2x2 pool's backward, through the activation when act (this row's saved
// activation) is given: d[0 .. W) from the pooled gradient row gr[0 .. W/2). `pair` is the other
// row of the windows, which max pooling reads to find the element each window took, and `bottom`
// says whether this row is the windows' second. Four windows at a time; an odd last column gets 0.
// Per element the arithmetic of act_pool_backward_f32.
template <Act A, Pool PL>
LF_INLINE void pool_backward_row(const float* gr, const float* act, const float* pair, bool bottom, float* d,
                                 int64_t W, float slope) {
  using V8 = Lanes<8>;
  const int64_t Wq = W / 2;
  const int32_t pos = bottom ? 2 : 0;  // window positions of this row's even and odd columns: pos, pos + 1
  // Windows [qx, qx + n), n <= 4: a full group, or (where masks are cheap) the row's last, partial
  // one through masked loads and stores.
  const auto group = [&](int64_t qx, int64_t n, auto full_c) {
    constexpr bool full = decltype(full_c)::value;
    const auto load8n = [&](const float* p) { return full ? V8::load(p) : V8::load_n(p, 2 * n); };
    const v4f g4 = full ? Lanes<4>::load(gr + qx) : Lanes<4>::load_n(gr + qx, n);
    v8f gg;
    if constexpr (PL == Pool::kAvg) {
      gg = __builtin_shufflevector(g4, g4, 0, 0, 1, 1, 2, 2, 3, 3) * splat8(0.25f);
    } else {  // the element each window took, by pool4<kMax>'s scan, as max_index4
      const v8f r = load8n(act + 2 * qx), o = load8n(pair + 2 * qx);
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
    const v8f out = act ? lenet_fast::act_backward<A, Vec8Ops>(gg, load8n(act + 2 * qx), slope) : gg;
    if constexpr (full) V8::store(d + 2 * qx, out);
    else V8::store_n(d + 2 * qx, out, 2 * n);
  };
  int64_t qx = 0;
  for (; qx + 4 <= Wq; qx += 4) group(qx, 4, std::true_type{});
  if constexpr (kCheapMasks) {  // conv1's weight gradient: 164 us per 64 images against 196 scalar (Zen 5)
    if (qx < Wq) group(qx, Wq - qx, std::false_type{});
  } else {  // scalar windows: AVX's vmaskmovps is slow on AMD
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
  }
  if (W % 2) d[W - 1] = 0.0f;
}

// Elementwise activation A over [i0, i1) of a flat array (in place allowed). Every element goes
// through the vector arithmetic, the tail too (one masked vector), so a value's bits never depend
// on where a range boundary falls.
template <int L, Act A>
void act_forward_range(const float* x, float* y, int64_t i0, int64_t i1, float slope) {
  using VL = Lanes<L>;
  int64_t i = i0;
  for (; i + L <= i1; i += L) VL::store(y + i, act_lanes<L, A>(VL::load(x + i), slope));
  if (i < i1) VL::store_n(y + i, act_lanes<L, A>(VL::load_n(x + i, i1 - i), slope), i1 - i);
}

template <int L>
void act_forward(const float* x, float* y, int64_t i0, int64_t i1, const Variant& v) {
  with_act(v.act, [&](auto act) { act_forward_range<L, decltype(act)::value>(x, y, i0, i1, v.slope); });
}



// The activation's backward from its saved output over [i0, i1) (in place allowed), a vector at a
// time and the tail masked, as act_forward_range.
template <int L>
void act_backward(const float* g, const float* y, float* dx, int64_t i0, int64_t i1, const Variant& v) {
  using VL = Lanes<L>;
  with_act(v.act, [&](auto act) {
    constexpr Act A = decltype(act)::value;
    int64_t i = i0;
    for (; i + L <= i1; i += L)
      VL::store(dx + i, lenet_fast::act_backward<A, VL>(VL::load(g + i), VL::load(y + i), v.slope));
    if (i < i1) {
      const int64_t n = i1 - i;
      VL::store_n(dx + i, lenet_fast::act_backward<A, VL>(VL::load_n(g + i, n), VL::load_n(y + i, n), v.slope), n);
    }
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
  pool_backward_planes<Act::kNone, Pool::kAvg>(g, nullptr, dx, H, W, p0, p1, 0.0f);
}

void act_pool_backward(const float* g, const float* act, float* dpre, int64_t H, int64_t W,
                       int64_t p0, int64_t p1, const Variant& v) {
  with_variant(v, [&](auto a, auto pool) { pool_backward_planes<decltype(a)::value, decltype(pool)::value>(g, act, dpre, H, W, p0, p1, v.slope); });
}

}  // namespace
}  // namespace cpu
}  // namespace lenet_fast
