// CPU fully connected kernels on nn.Linear's layouts: x (N, K), W (J, K), y (N, J); forward with
// the activation applied 8 lanes at a time, dL/dx and dL/dW + dL/db.
// Part of the CPU kernels compiled once per ISA: include kernels_impl.h, not this file.
#pragma once

#include "kernel_common.h"
#include "pool_act.h"  // act_forward

namespace lenet_fast {
namespace cpu {
namespace {

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

}  // namespace
}  // namespace cpu
}  // namespace lenet_fast
