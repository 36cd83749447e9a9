// CPU fully connected kernels on nn.Linear's layouts: x (N, K), W (J, K), y (N, J); forward with
// the activation applied a vector at a time, dL/dx and dL/dW + dL/db. Vectors of L lanes run
// along K; a K that is not a multiple of L ends in one masked (partial) vector, not scalar code.
// Part of the CPU kernels compiled once per ISA: include kernels_impl.h, not this file.
#pragma once

#include "kernel_common.h"
#include "pool_act.h"  // act_forward

namespace lenet_fast {
namespace cpu {
namespace {

// out[r][c] = dot(x row r, W row c) over K: RN x RJ dot products, vectorised along K.
template <int L, int RN, int RJ>
LF_INLINE void dot_tile(const float* const (&xr)[RN], const float* const (&wr)[RJ], int64_t K,
                        float (&out)[RN][RJ]) {
  using VL = Lanes<L>;
  using V = typename VL::V;
  V acc[RN][RJ];
  LF_UNROLL for (int r = 0; r < RN; ++r) {
    LF_UNROLL for (int c = 0; c < RJ; ++c) acc[r][c] = V{};
  }
  const auto step = [&](int64_t k, auto load) {
    V xv[RN];
    LF_UNROLL for (int r = 0; r < RN; ++r) xv[r] = load(xr[r] + k);
    LF_UNROLL for (int c = 0; c < RJ; ++c) {
      const V wv = load(wr[c] + k);
      LF_UNROLL for (int r = 0; r < RN; ++r) acc[r][c] += xv[r] * wv;
    }
  };
  int64_t k = 0;
  for (; k + L <= K; k += L) step(k, [](const float* p) { return VL::load(p); });
  if (k < K) step(k, [n = K - k](const float* p) { return VL::load_n(p, n); });
  LF_UNROLL for (int r = 0; r < RN; ++r) {
    LF_UNROLL for (int c = 0; c < RJ; ++c) out[r][c] = VL::hsum(acc[r][c]);
  }
}

template <int L, int RN, int RJ>
LF_INLINE void linear_rows(const LinearArgs& a, int64_t n, int64_t j0) {
  const float* xr[RN];
  const float* wr[RJ];
  LF_UNROLL for (int r = 0; r < RN; ++r) xr[r] = a.x + (n + r) * a.K;
  LF_UNROLL for (int c = 0; c < RJ; ++c) wr[c] = a.w + min64(j0 + c, a.J - 1) * a.K;
  float out[RN][RJ];
  dot_tile<L, RN, RJ>(xr, wr, a.K, out);
  for (int r = 0; r < RN; ++r)
    for (int c = 0; c < RJ && j0 + c < a.J; ++c)
      a.y[(n + r) * a.J + j0 + c] = out[r][c] + (a.bias ? a.bias[j0 + c] : 0.0f);
}

template <int L>
void linear_forward(const LinearArgs& a, int64_t n0, int64_t n1) {
  constexpr int RN = 3, RJ = 4;  // 12 accumulators; W's 4 rows stay in L1 while x streams past
  const int64_t n3 = n0 + (n1 - n0) / RN * RN;
  for (int64_t j0 = 0; j0 < a.J; j0 += RJ)
    for (int64_t n = n0; n < n3; n += RN) linear_rows<L, RN, RJ>(a, n, j0);
  // The rows left over (all of them at batch 1) one at a time, 8 outputs per tile: 8 independent
  // sums, where 4 would wait on the FMA latency. Each output's sum runs in the same order
  // whatever the tile, so a row's bits do not depend on which path took it.
  constexpr int RJ1 = 8;
  for (int64_t j0 = 0; j0 < a.J; j0 += RJ1)
    for (int64_t n = n3; n < n1; ++n) linear_rows<L, 1, RJ1>(a, n, j0);
  // The activation over the rows just written (contiguous, in cache), 8 at a time: one scalar tanh
  // per output cost more than the layer's dot products.
  if (a.activate) act_forward<L>(a.y, a.y, n0 * a.J, n1 * a.J, a.v);
}

// A tile's NV vectors of L lanes along K from k0, the last of them only `last` lanes wide (L for
// a full tile; fewer for the masked tail of a row).
template <int L, int NV>
struct KVectors {
  using VL = Lanes<L>;
  using V = typename VL::V;
  int64_t last;
  LF_INLINE V load(const float* p, int v) const {
    return v == NV - 1 && last < L ? VL::load_n(p + L * v, last) : VL::load(p + L * v);
  }
  LF_INLINE void store(float* p, int v, V x) const {
    if (v == NV - 1 && last < L) VL::store_n(p + L * v, x, last);
    else VL::store(p + L * v, x);
  }
};

// dx rows r of a tile: dx[n][k0 .. k0 + L NV) = sum_j g[n][j] W[j][k0 ..]
template <int L, int RN, int NV>
LF_INLINE void dx_tile(const float* g, const float* w, float* dx, int64_t K, int64_t J, int64_t n,
                       int64_t k0, KVectors<L, NV> kv) {
  using V = typename Lanes<L>::V;
  V acc[RN][NV];
  LF_UNROLL for (int r = 0; r < RN; ++r) {
    LF_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] = V{};
  }
  for (int64_t j = 0; j < J; ++j) {
    V wv[NV];
    LF_UNROLL for (int v = 0; v < NV; ++v) wv[v] = kv.load(w + j * K + k0, v);
    LF_UNROLL for (int r = 0; r < RN; ++r) {
      const V gv = Lanes<L>::splat(g[(n + r) * J + j]);
      LF_UNROLL for (int v = 0; v < NV; ++v) acc[r][v] += gv * wv[v];
    }
  }
  LF_UNROLL for (int r = 0; r < RN; ++r) {
    LF_UNROLL for (int v = 0; v < NV; ++v) kv.store(dx + (n + r) * K + k0, v, acc[r][v]);
  }
}

template <int L, int RN>
LF_INLINE void dx_rows(const float* g, const float* w, float* dx, int64_t K, int64_t J, int64_t n) {
  int64_t k0 = 0;
  for (; k0 + 2 * L <= K; k0 += 2 * L) dx_tile<L, RN, 2>(g, w, dx, K, J, n, k0, {L});
  for (; k0 < K; k0 += L) dx_tile<L, RN, 1>(g, w, dx, K, J, n, k0, {min64(L, K - k0)});
}

template <int L>
void linear_backward_input(const float* g, const float* w, float* dx, int64_t K, int64_t J,
                           int64_t n0, int64_t n1) {
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) dx_rows<L, 4>(g, w, dx, K, J, n);
  for (; n < n1; ++n) dx_rows<L, 1>(g, w, dx, K, J, n);
}

// dw[j .. j+RJ)[k0 .. k0 + L NV) += sum_{n in [nb, ne)} g[n][j] x[n][k0 ..]
template <int L, int RJ, int NV>
LF_INLINE void dw_tile(const float* g, const float* x, float* dw, int64_t K, int64_t J, int64_t j,
                       int64_t k0, int64_t nb, int64_t ne, KVectors<L, NV> kv) {
  using V = typename Lanes<L>::V;
  V acc[RJ][NV];  // summed from zero, then added to dw: blocked summation keeps the error of a
                  // long batch to that of one block
  LF_UNROLL for (int c = 0; c < RJ; ++c) {
    LF_UNROLL for (int v = 0; v < NV; ++v) acc[c][v] = V{};
  }
  for (int64_t n = nb; n < ne; ++n) {
    V xv[NV];
    LF_UNROLL for (int v = 0; v < NV; ++v) xv[v] = kv.load(x + n * K + k0, v);
    LF_UNROLL for (int c = 0; c < RJ; ++c) {
      const V gv = Lanes<L>::splat(g[n * J + j + c]);
      LF_UNROLL for (int v = 0; v < NV; ++v) acc[c][v] += gv * xv[v];
    }
  }
  LF_UNROLL for (int c = 0; c < RJ; ++c) {
    LF_UNROLL for (int v = 0; v < NV; ++v) {
      float* d = dw + (j + c) * K + k0;
      kv.store(d, v, kv.load(d, v) + acc[c][v]);
    }
  }
}

template <int L, int RJ>
LF_INLINE void dw_rows(const float* g, const float* x, float* dw, int64_t K, int64_t J, int64_t j,
                       int64_t nb, int64_t ne) {
  int64_t k0 = 0;
  for (; k0 + 2 * L <= K; k0 += 2 * L) dw_tile<L, RJ, 2>(g, x, dw, K, J, j, k0, nb, ne, {L});
  for (; k0 < K; k0 += L) dw_tile<L, RJ, 1>(g, x, dw, K, J, j, k0, nb, ne, {min64(L, K - k0)});
}

template <int L>
void linear_backward_weight(const float* g, const float* x, float* dw, float* db, int64_t N,
                            int64_t K, int64_t J, int64_t j0, int64_t j1) {
  constexpr int64_t kRowBlock = 256;  // a block of x rows (<= 400 KB for fc1) stays in L2
  for (int64_t j = j0; j < j1; ++j)
    for (int64_t k = 0; k < K; ++k) dw[j * K + k] = 0.0f;
  for (int64_t j = j0; j < j1; ++j) db[j] = 0.0f;
  for (int64_t nb = 0; nb < N; nb += kRowBlock) {
    const int64_t ne = min64(N, nb + kRowBlock);
    int64_t j = j0;
    for (; j + 4 <= j1; j += 4) dw_rows<L, 4>(g, x, dw, K, J, j, nb, ne);
    for (; j < j1; ++j) dw_rows<L, 1>(g, x, dw, K, J, j, nb, ne);
    for (int64_t jj = j0; jj < j1; ++jj) {
      float s = 0.0f;
      for (int64_t n = nb; n < ne; ++n) s += g[n * J + jj];
      db[jj] += s;
    }
  }
}

}  // namespace
}  // namespace cpu
}  // namespace lenet_fast
