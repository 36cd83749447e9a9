// CUDA fully connected kernel and its launcher: one tiled GEMM with strided operands, so linear's
// forward, dL/dx and dL/dW are the same kernel read three ways (csrc/ops/cuda/):
//   forward  y  (N, J) = x (N, K) . W^T           A = x,       B(k, j) = W[j, k]
//   dL/dx    dx (N, K) = g (N, J) . W             A = g,       B(j, k) = W[j, k]
//   dL/dW    dW (J, K) = g^T . x                  A(j, n) = g[n, j], B(n, k) = x[n, k]
// Each output is summed by one thread in a fixed order (deterministic). dL/db comes out of the dL/dW
// launch: a virtual column of ones appended to B (bias_grad), so the bias needs no pass of its own.
// No torch here: the file builds under nvcc and under the CPU harness (csrc/cudasim/).
//
// A 16x16 tile with one output per thread: LeNet's widths (120, 84, 10) would leave most of a larger
// tile idle.
#include "../kernel_math.h"
#include "device.h"
#include "launchers.h"

namespace lenet_fast {
namespace cuda {
namespace {

constexpr int kTile = 16;

// ACT: apply the activation A in the epilogue.
template <bool ACT, Act A>
__global__ void __launch_bounds__(kTile * kTile) gemm_kernel(const float* __restrict__ A_, int64_t sam, int64_t sak,
                            const float* __restrict__ B, int64_t sbk, int64_t sbn,
                            float* __restrict__ C,           // (M, Nc) contiguous
                            int64_t M, int64_t Nc, int64_t K,
                            const float* __restrict__ bias,  // (Nc) or null
                            float slope,
                            float* __restrict__ bias_grad) {  // (M): sum_k A(m, k), as column Nc; or null
  __shared__ float s_a[kTile][kTile + 1];  // +1: no bank conflicts on the transposed reads
  __shared__ float s_b[kTile][kTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t col = blockIdx.x * int64_t{kTile} + tx;
  // Rows in a grid-stride loop: gridDim.y is capped at 65535.
  for (int64_t row0 = blockIdx.y * int64_t{kTile}; row0 < M; row0 += int64_t{gridDim.y} * kTile) {
    const int64_t row = row0 + ty;
    float acc = 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += kTile) {
      // Each tile is read with the lanes (tx) along the index that is contiguous in memory, so a
      // half-warp reads 64 consecutive bytes: forward's B is W^T (k contiguous), dL/dW's A is g^T
      // (m contiguous). s_a is (m, k) and s_b (k, n) either way; the +1 padding keeps the
      // transposed stores conflict-free.
      if (sak == 1 || sam != 1) {
        const int64_t ka = k0 + tx;
        s_a[ty][tx] = (row < M && ka < K) ? A_[row * sam + ka * sak] : 0.0f;
      } else {
        const int64_t m = row0 + tx, ka = k0 + ty;
        s_a[tx][ty] = (m < M && ka < K) ? A_[m * sam + ka * sak] : 0.0f;
      }
      if (sbn == 1 || sbk != 1) {
        const int64_t kb = k0 + ty;
        s_b[ty][tx] = kb < K ? (col < Nc ? B[kb * sbk + col * sbn] : (bias_grad && col == Nc ? 1.0f : 0.0f)) : 0.0f;
      } else {
        const int64_t kb = k0 + tx, c = blockIdx.x * int64_t{kTile} + ty;
        s_b[tx][ty] = kb < K ? (c < Nc ? B[kb * sbk + c * sbn] : (bias_grad && c == Nc ? 1.0f : 0.0f)) : 0.0f;
      }
      __syncthreads();
      float part = 0.0f;  // blocked summation: long reductions (dW over a big batch) stay accurate
#pragma unroll
      for (int k = 0; k < kTile; ++k) part += s_a[ty][k] * s_b[k][tx];
      acc += part;
      __syncthreads();
    }
    if (row < M && col < Nc) {
      float v = acc + (bias ? bias[col] : 0.0f);
      C[row * Nc + col] = ACT ? act_f32<A>(v, slope) : v;
    } else if (row < M && bias_grad && col == Nc) {
      bias_grad[row] = acc;
    }
  }
}

}  // namespace

cudaError_t launch_gemm(const float* A, int64_t sam, int64_t sak, const float* B, int64_t sbk, int64_t sbn,
                        float* C, int64_t M, int64_t Nc, int64_t K, const float* bias, const Variant* act,
                        float* bias_grad, cudaStream_t stream) {
  if (M == 0 || (Nc == 0 && !bias_grad)) return cudaSuccess;
  const int64_t cols = Nc + (bias_grad ? 1 : 0);
  const int64_t gx = (cols + kTile - 1) / kTile, gy = (M + kTile - 1) / kTile;
  // Rows beyond 65535 tiles are covered by the kernel's grid-stride loop.
  const dim3 grid(static_cast<unsigned int>(gx), static_cast<unsigned int>(gy < 65535 ? gy : 65535));
  if (act) {
    with_act(act->act, [&](auto a) {
      const auto kernel = gemm_kernel<true, decltype(a)::value>;
      LF_LAUNCH(kernel, grid, dim3(kTile, kTile), 0, stream)(A, sam, sak, B, sbk, sbn, C, M, Nc, K, bias, act->slope,
                                                            bias_grad);
    });
  } else {
    const auto kernel = gemm_kernel<false, Act::kNone>;
    LF_LAUNCH(kernel, grid, dim3(kTile, kTile), 0, stream)(A, sam, sak, B, sbk, sbn, C, M, Nc, K, bias, 0.0f,
                                                          bias_grad);
  }
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace lenet_fast
