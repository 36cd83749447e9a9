// CUDA fully connected ops: linear (+ fused tanh) and its backward, on one tiled GEMM kernel with
// strided operands, so the forward, dL/dx and dL/dW are the same kernel read three ways:
//   forward  y  (N, J) = x (N, K) . W^T           A = x,       B(k, j) = W[j, k]
//   dL/dx    dx (N, K) = g (N, J) . W             A = g,       B(j, k) = W[j, k]
//   dL/dW    dW (J, K) = g^T . x                  A(j, n) = g[n, j], B(n, k) = x[n, k]
// Each output is summed by one thread in a fixed order (deterministic); dL/db is channel_sum.
//
// NOTE: not yet run on a GPU (see README, "GPU status"). A 16x16 tile with one output per thread
// is the simple, verifiable first version; LeNet's widths (120, 84, 10) leave most of a larger
// tile idle anyway.
#include <torch/library.h>

#include "kernels.cuh"
#include "launch.h"

namespace lenet_fast {
namespace cuda {
namespace {

constexpr int kTile = 16;

__global__ void gemm_kernel(const float* __restrict__ A, int64_t sam, int64_t sak,
                            const float* __restrict__ B, int64_t sbk, int64_t sbn,
                            float* __restrict__ C,           // (M, Nc) contiguous
                            int64_t M, int64_t Nc, int64_t K,
                            const float* __restrict__ bias,  // (Nc) or null
                            bool apply_tanh) {
  __shared__ float s_a[kTile][kTile + 1];  // +1: no bank conflicts on the transposed reads
  __shared__ float s_b[kTile][kTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t col = blockIdx.x * int64_t{kTile} + tx;
  // Rows in a grid-stride loop: gridDim.y is capped at 65535.
  for (int64_t row0 = blockIdx.y * int64_t{kTile}; row0 < M; row0 += int64_t{gridDim.y} * kTile) {
    const int64_t row = row0 + ty;
    float acc = 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += kTile) {
      const int64_t ka = k0 + tx, kb = k0 + ty;
      s_a[ty][tx] = (row < M && ka < K) ? A[row * sam + ka * sak] : 0.0f;
      s_b[ty][tx] = (kb < K && col < Nc) ? B[kb * sbk + col * sbn] : 0.0f;
      __syncthreads();
      float part = 0.0f;  // blocked summation: long reductions (dW over a big batch) stay accurate
#pragma unroll
      for (int k = 0; k < kTile; ++k) part += s_a[ty][k] * s_b[k][tx];
      acc += part;
      __syncthreads();
    }
    if (row < M && col < Nc) {
      float v = acc + (bias ? bias[col] : 0.0f);
      C[row * Nc + col] = apply_tanh ? tanh_f32(v) : v;
    }
  }
}

}  // namespace

void launch_gemm(const float* A, int64_t sam, int64_t sak, const float* B, int64_t sbk,
                 int64_t sbn, float* C, int64_t M, int64_t Nc, int64_t K, const float* bias,
                 bool apply_tanh) {
  if (M == 0 || Nc == 0) return;
  const int64_t gx = (Nc + kTile - 1) / kTile, gy = (M + kTile - 1) / kTile;
  TORCH_CHECK(gx <= 2147483647, "lenet_fast: GEMM with ", Nc, " columns exceeds the CUDA grid");
  const dim3 grid(static_cast<unsigned int>(gx), static_cast<unsigned int>(std::min<int64_t>(gy, 65535)));
  gemm_kernel<<<grid, dim3(kTile, kTile), 0, c10::cuda::getCurrentCUDAStream()>>>(
      A, sam, sak, B, sbk, sbn, C, M, Nc, K, bias, apply_tanh);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

namespace {

at::Tensor linear_impl(const char* op, const at::Tensor& x, const at::Tensor& w,
                       const at::Tensor& b, bool apply_tanh) {
  check_linear(op, x, w, b, at::kCUDA);
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t K = w.size(1), J = w.size(0);
  const at::Tensor x2 = as_matrix(x).contiguous(), wc = w.contiguous(), bc = b.contiguous();
  const int64_t N = x2.size(0);
  at::Tensor y = at::empty({N, J}, x.options());
  // K == 0 too: the sum over no features is 0, so y is the bias (through tanh_f32, as on the CPU)
  launch_gemm(x2.data_ptr<float>(), K, 1, wc.data_ptr<float>(), 1, K, y.data_ptr<float>(), N, J,
              K, bc.data_ptr<float>(), apply_tanh);
  return y.view(linear_out_sizes(x, J));
}

at::Tensor linear_cuda(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return linear_impl("linear", x, w, b, false);
}

at::Tensor linear_tanh_cuda(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return linear_impl("linear_tanh", x, w, b, true);
}

at::Tensor linear_backward_input_cuda(const at::Tensor& grad, const at::Tensor& w) {
  const char* op = "linear_backward_input";
  check_linear_input_grad(op, grad, w, at::kCUDA);
  const c10::cuda::CUDAGuard guard(grad.device());
  const int64_t K = w.size(1), J = w.size(0);
  const at::Tensor g2 = as_matrix(grad).contiguous(), wc = w.contiguous();
  at::Tensor dx = at::empty({g2.size(0), K}, grad.options());  // the GEMM writes every element
  launch_gemm(g2.data_ptr<float>(), J, 1, wc.data_ptr<float>(), K, 1, dx.data_ptr<float>(),
              g2.size(0), K, J, nullptr, false);
  return dx.view(linear_out_sizes(grad, K));
}

std::tuple<at::Tensor, at::Tensor> linear_backward_weight_cuda(const at::Tensor& grad,
                                                               const at::Tensor& x) {
  const char* op = "linear_backward_weight";
  check_linear_weight_grad(op, grad, x, at::kCUDA);
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t K = x.size(-1), J = grad.size(-1);
  const at::Tensor g2 = as_matrix(grad).contiguous(), x2 = as_matrix(x).contiguous();
  const int64_t N = g2.size(0);
  if (N == 0) return {at::zeros({J, K}, x.options()), at::zeros({J}, x.options())};
  at::Tensor dw = at::empty({J, K}, x.options());  // the GEMM and the channel sum write all of it
  at::Tensor db = at::empty({J}, x.options());
  launch_gemm(g2.data_ptr<float>(), 1, J, x2.data_ptr<float>(), K, 1, dw.data_ptr<float>(), J, K,
              N, nullptr, false);
  launch_channel_sum(g2.data_ptr<float>(), db.data_ptr<float>(), N, J, 1);
  return {dw, db};
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_fast, CUDA, m) {
  m.impl("linear", &linear_cuda);
  m.impl("linear_tanh", &linear_tanh_cuda);
  m.impl("linear_backward_input", &linear_backward_input_cuda);
  m.impl("linear_backward_weight", &linear_backward_weight_cuda);
}

}  // namespace cuda
}  // namespace lenet_fast
