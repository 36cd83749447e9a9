// Launchers of the CUDA kernels, shared by the ops that compose them (e.g. lenet5_forward).
// Each launches on the current stream of the current device (callers hold a device guard) and
// checks the launch.
#pragma once

#include <cstdint>

namespace lenet_fast {
namespace cuda {

// 5x5 stride-1 convolution of x (N, IC, H, W) with w (OC, IC, 5, 5) + bias (OC, or null):
// plain -> y (N, OC, Ho, Wo); fused -> y = pool(tanh(.)) (N, OC, Ho/2, Wo/2) and, if act is not
// null, act = tanh(.) (N, OC, Ho, Wo).
void launch_conv_forward(const char* op, const float* x, const float* w, const float* bias,
                         float* y, float* act, int64_t N, int64_t IC, int64_t H, int64_t W,
                         int64_t OC, int64_t pad, bool fused);

// dpre (planes, H, W) from the pooled gradient g (planes, H/2, W/2): through tanh when act is
// given (fused backward), the plain average-pool backward when act is null.
void launch_tanh_pool_backward(const float* g, const float* act, float* dpre, int64_t planes,
                               int64_t H, int64_t W);

// out[c] = sum over a < A, b < B of in[(a * C + c) * B + b], in a fixed order (deterministic).
void launch_channel_sum(const float* in, float* out, int64_t A, int64_t C, int64_t B);

// C (M, Nc) = epilogue(sum_k A(m, k) B(k, n)), with A(m, k) = A[m * sam + k * sak] and
// B(k, n) = B[k * sbk + n * sbn]; epilogue adds bias[n] (if not null) then tanh (if asked).
void launch_gemm(const float* A, int64_t sam, int64_t sak, const float* B, int64_t sbk,
                 int64_t sbn, float* C, int64_t M, int64_t Nc, int64_t K, const float* bias,
                 bool apply_tanh);

}  // namespace cuda
}  // namespace lenet_fast
