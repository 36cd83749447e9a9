// The launchers of lenet_fast's CUDA kernels: raw pointers, sizes and a stream in, a cudaError_t
// out (the launch's own error: cudaGetLastError() after it), and no torch, in the style of llm.c's
// dev/cuda and tiny-cuda-nn. The torch-facing code (csrc/ops/cuda/) checks arguments, allocates,
// picks the stream and turns errors into exceptions; the kernels and these launchers live in the
// .cu files, which build under nvcc and, as C++, under the CPU harness csrc/cudasim/.
//
// Layouts are contiguous, NCHW for images; "planes" is N * C.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../kernel_math.h"  // kTaps, kMaxPad: torch-free too

#if defined(LENET_FAST_CUDASIM)
#include "../../cudasim/runtime.h"
#else
#include <cuda_runtime_api.h>
#endif

namespace lenet_fast {
namespace cuda {

constexpr int64_t kSharedBytes = 48 * 1024;  // every kernel keeps to what a block gets without opting in

// conv5x5_forward_kernel stages a zero-padded input plane per input channel and 25 weights per
// output channel for each channel of a pass, as many channels a pass as fit.
struct ConvForwardPlan {
  int64_t floats_per_channel;  // (H + 2 pad)(W + 2 pad) + 25 OC
  int64_t ic_chunk;            // input channels staged per pass
  size_t shared_bytes;
  bool fits;                   // one channel fits at all
};

inline ConvForwardPlan conv_forward_plan(int64_t IC, int64_t H, int64_t W, int64_t OC, int64_t pad) {
  ConvForwardPlan p{};
  p.floats_per_channel = (H + 2 * pad) * (W + 2 * pad) + kTaps * OC;
  p.fits = p.floats_per_channel * 4 <= kSharedBytes;
  const int64_t most = p.fits ? kSharedBytes / 4 / p.floats_per_channel : 0;
  p.ic_chunk = IC < most ? IC : most;
  p.shared_bytes = static_cast<size_t>(p.ic_chunk * p.floats_per_channel * 4);
  return p;
}

// 5x5 stride-1 convolution of x (N, IC, H, W) with w (OC, IC, 5, 5) + bias (OC, or null):
// plain -> y (N, OC, Ho, Wo); fused -> y = pool(act(.)) (N, OC, Ho/2, Wo/2) and, if act is not
// null, act = act(.) (N, OC, Ho, Wo), for the activation and pooling of v. One block per image
// (N < 2^31).
cudaError_t launch_conv_forward(const float* x, const float* w, const float* bias, float* y, float* act,
                                int64_t N, int64_t IC, int64_t H, int64_t W, int64_t OC, int64_t pad,
                                bool fused, const Variant& v, cudaStream_t stream);

// Images per partial sum of every CUDA weight gradient (the per-layer kernel's and the whole
// network's): a function of N alone, so the sum order never depends on the hardware; at most 256
// partials, at least 8 images each.
inline int64_t grad_chunk(int64_t N) {
  const int64_t c = (N + 255) / 256;
  return c > 8 ? c : 8;
}
inline int64_t grad_chunks(int64_t N) { return (N + grad_chunk(N) - 1) / grad_chunk(N); }

// The shared memory one block of the weight gradient needs.
inline int64_t conv_weight_grad_shared_bytes(int64_t H, int64_t W, int64_t pad) {
  const int64_t Ho = H + 2 * pad - 4, Wo = W + 2 * pad - 4;
  return 4 * ((H + 2 * pad) * (W + 2 * pad) + Ho * Wo + 256);
}

// dw (OC, IC, 5, 5) and db (OC) of conv5x5, two launches (the bias in the same kernel), from x
// (N, IC, H, W) and the gradient at the conv output g (N, OC, Ho, Wo) -- or, with act (the fused
// op's saved activation, variant v), from its pooled gradient g (N, OC, Ho/2, Wo/2). partial:
// grad_chunks(N) * (OC * IC * 25 + OC) floats of workspace. N >= 1 and OC >= 1; IC may
// be 0 (then only db is computed); IC + 1 and OC at most 65535 (grid limits).
cudaError_t launch_conv_weight_grad(const float* g, const float* act, const float* x, float* partial, float* dw,
                                    float* db, int64_t N, int64_t IC, int64_t H, int64_t W, int64_t OC, int64_t pad,
                                    const Variant& v, cudaStream_t stream);

// dpre (planes, H, W) from the pooled gradient g (planes, H/2, W/2): back through v's pooling and
// activation when act is given (the fused op's backward; max pooling re-finds each window's
// element in act), the plain average-pool backward when act is null.
cudaError_t launch_act_pool_backward(const float* g, const float* act, float* dpre, int64_t planes, int64_t H,
                                     int64_t W, const Variant& v, cudaStream_t stream);

// y (planes, H/2, W/2) = 2x2/2 average pool (floor mode) of x (planes, H, W).
cudaError_t launch_avg_pool_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W,
                                    cudaStream_t stream);

// y = act(x); dx = act's backward from y (g (1 - y^2) for tanh); n elements; v.act and v.slope.
cudaError_t launch_act_forward(const float* x, float* y, int64_t n, const Variant& v, cudaStream_t stream);
cudaError_t launch_act_backward(const float* g, const float* y, float* dx, int64_t n, const Variant& v,
                                cudaStream_t stream);

// C (M, Nc) = epilogue(sum_k A(m, k) B(k, n)), with A(m, k) = A[m * sam + k * sak] and
// B(k, n) = B[k * sbk + n * sbn]; epilogue adds bias[n] (if not null) then the activation act->act
// (if act is not null).
// K may be 0 (C is then the epilogue of 0). With bias_grad, also bias_grad[m] = sum_k A(m, k), in
// the same launch (a column of ones after B's last): a linear layer's dL/db beside its dL/dW.
cudaError_t launch_gemm(const float* A, int64_t sam, int64_t sak, const float* B, int64_t sbk, int64_t sbn,
                        float* C, int64_t M, int64_t Nc, int64_t K, const float* bias, const Variant* act,
                        float* bias_grad, cudaStream_t stream);

// out (B, row) = normalize(images[index[b]]) for uint8 images (n, row); an index outside [0, n)
// trips a device-side assertion.
cudaError_t launch_gather_normalize(const uint8_t* images, const int64_t* index, float* out, int64_t n,
                                    int64_t B, int64_t row, float mean, float std, cudaStream_t stream);


// ---- The whole network (lenet5.cu) -------------------------------------------------------------
// The fused kernels are written for LeNet-5's own geometry; net_geometry_fits says whether a call
// has it (the tutorial's 28x28 input with conv1 padding 2, or the classic 32x32 unpadded, and
// 1..kMaxClasses classes). Other shapes take the per-layer kernels.
struct NetGeometry {
  static constexpr int kPadded = 32;             // the input once zero-padded
  static constexpr int kC1 = 6, kO1 = 28, kQ1 = 14;   // conv1 channels, output, pooled extents
  static constexpr int kC2 = 16, kO2 = 10, kQ2 = 5;   // conv2's
  static constexpr int kF = kC2 * kQ2 * kQ2;     // 400 features into fc1
  static constexpr int kJ1 = 120, kJ2 = 84;
  static constexpr int kMaxClasses = 128;
};

inline bool net_geometry_fits(int64_t IC, int64_t H, int64_t W, int64_t pad, int64_t C1, int64_t C2, int64_t J1,
                              int64_t J2, int64_t J3) {
  using G = NetGeometry;
  return IC == 1 && H + 2 * pad == G::kPadded && W + 2 * pad == G::kPadded && C1 == G::kC1 && C2 == G::kC2 &&
         J1 == G::kJ1 && J2 == G::kJ2 && J3 >= 1 && J3 <= G::kMaxClasses;
}

struct NetParams {  // contiguous, in the stock model's shapes
  const float *w1, *b1, *w2, *b2, *f1w, *f1b, *f2w, *f2b, *f3w, *f3b;
};
struct NetSaved {  // what lenet5_forward_train saves: act1, p1, act2, p2 (flattened), h1, h2
  float *act1, *p1, *act2, *p2, *h1, *h2;
};
struct NetGrads {  // the backward's per-image gradients: (N, 84), (N, 120), (N, 16, 10, 10), (N, 6, 14, 14)
  float *g2, *g1, *dpre2, *dp1;
};
struct NetJobArgs {  // what the weight-gradient jobs read
  const float *x, *act1, *p1, *p2, *h1, *h2, *dp1, *dpre2, *g1, *g2, *g3;
  int H, W, pad, J3;
  float slope;  // the variant's LeakyReLU slope
};

struct NetGradOut {  // where the ten parameter gradients go, in model order (conv1 weight ... fc3 bias)
  float* p[10];
};

// Offsets of each parameter's gradient in the flat partial sums (the model's parameter order).
struct NetLayout {
  int64_t w1, b1, w2, b2, f1w, f1b, f2w, f2b, f3w, f3b, total;
  int64_t J3;  // fc3's rows (classes)
};
// Every part starts on a 32-float (128-byte) boundary, and so does every chunk's row of partial
// sums: a warp's 32 consecutive entries are 4 whole sectors and never straddle two parameters.
LF_HD NetLayout net_layout(int64_t J3) {
  using G = NetGeometry;
  const auto after = [](int64_t start, int64_t size) { return (start + size + 31) / 32 * 32; };
  NetLayout L{};
  L.J3 = J3;
  L.w1 = 0;
  L.b1 = after(L.w1, G::kC1 * kTaps);
  L.w2 = after(L.b1, G::kC1);
  L.b2 = after(L.w2, G::kC2 * G::kC1 * kTaps);
  L.f1w = after(L.b2, G::kC2);
  L.f1b = after(L.f1w, G::kJ1 * G::kF);
  L.f2w = after(L.f1b, G::kJ1);
  L.f2b = after(L.f2w, G::kJ2 * G::kJ1);
  L.f3w = after(L.f2b, G::kJ2);
  L.f3b = after(L.f3w, J3 * G::kJ2);
  L.total = after(L.f3b, J3);
  return L;
}

// Images per block of the forward kernel: 1 while that leaves the GPU's SMs short of work, 8 for
// large batches (a function of N alone).
inline int net_forward_tile(int64_t N) { return N < 4096 ? 1 : 8; }
// Images per block of the backward-data kernel: 1 below the same batch (at batch 64, 64 blocks
// instead of 16), 4 above it (each fc weight read from global memory serves 4 images).
inline int net_backward_tile(int64_t N) { return N < 4096 ? 1 : 4; }

// The weight gradients' split: images per partial sum (grad_chunk); rows of a fully connected
// layer per job; jobs per chunk.
constexpr int kNetFcRows = 8;
inline int64_t net_jobs(int64_t J3) {
  using G = NetGeometry;
  const auto rows = [](int64_t j) { return (j + kNetFcRows - 1) / kNetFcRows; };
  return G::kC1 + G::kC2 + rows(G::kJ1) + rows(G::kJ2) + rows(J3);
}
inline int64_t net_weight_grad_smem_floats() {
  using G = NetGeometry;
  const int64_t conv1 = G::kPadded * G::kPadded + G::kO1 * G::kO1 + 256;
  const int64_t conv2 = G::kC1 * G::kQ1 * G::kQ1 + G::kO2 * G::kO2 + 256;
  const int64_t fc = 8 * kNetFcRows + 8 * G::kF;
  return conv1 > conv2 ? (conv1 > fc ? conv1 : fc) : (conv2 > fc ? conv2 : fc);
}

// The inference forward (saved null) or the training forward (saved: every buffer), one launch:
// logits (N, J3) from x (N, 1, H, W), float32, or for inference uint8 (x_u8; x null) normalised in
// the kernel as normalize_u8(v, mean, std); the network's variant v.
cudaError_t launch_net_forward(const float* x, const uint8_t* x_u8, float mean, float std, const NetParams& p,
                               float* logits, const NetSaved* saved, int64_t N, int64_t H, int64_t W, int64_t pad,
                               int64_t J3, const Variant& v, cudaStream_t stream);

// The backward of the whole network from g3 = dL/dlogits, every parameter's gradient (not x's),
// three launches: d's per-image gradients (workspace), the per-chunk partial sums of every weight
// and bias gradient into partial (grad_chunks(N) * total floats), then their sums into the ten
// gradient tensors of out (separate tensors: a custom op's outputs must not alias one another).
cudaError_t launch_net_backward(const float* g3, const float* x, const NetParams& p, const NetSaved& s,
                                const NetGrads& d, float* partial, const NetGradOut& out, int64_t N, int64_t H, int64_t W,
                                int64_t pad, int64_t J3, const Variant& v, cudaStream_t stream);

}  // namespace cuda
}  // namespace lenet_fast
