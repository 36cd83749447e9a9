// CUDA convolution kernels and their launchers: 5x5 stride-1 convolution, fused with bias + tanh +
// 2x2 average pooling, and the weight gradient. No torch here (see launchers.h): the same file
// builds under nvcc and, as C++, under the CPU harness (csrc/cuda/sim/) that CI runs it in.
//
//   conv5x5_forward_kernel  one block per image; the zero-padded image (a chunk of input channels
//                           at a time) and its weights are staged in shared memory, and each thread
//                           owns an output: a pooled value (its 2x2 window of conv pixels in
//                           registers, so the full-resolution map is never written unless act is
//                           kept) or a plain conv pixel. dL/dx is this kernel again, on the
//                           rotated, transposed weights.
//   conv_weight_grad_kernel grid (image chunk, input channel): one input channel of one image and
//                           the output gradient staged in shared memory, each thread owns weights
//                           (oc, tap) and sums over pixels and the chunk's images; per-chunk
//                           partials are added by conv_weight_reduce_kernel in a fixed order, so
//                           the result is deterministic without atomics.
//   channel_sum_kernel      the bias gradient: one block per channel, a fixed-shape tree.
//
// NOTE: none of these kernels has run on a GPU yet (see README, "GPU status"); they run in CI under
// the CPU harness.
#include "../kernel_math.h"
#include "device.h"
#include "launchers.h"

namespace lenet_fast {
namespace cuda {
namespace {

template <bool FUSED>
__global__ void conv5x5_forward_kernel(
    const float* __restrict__ x,     // (N, IC, H, W)
    const float* __restrict__ w,     // (OC, IC, 5, 5)
    const float* __restrict__ bias,  // (OC) or null
    float* __restrict__ y,           // plain (N, OC, Ho, Wo); fused (N, OC, Ho/2, Wo/2)
    float* __restrict__ act,         // fused: tanh(conv) (N, OC, Ho, Wo), or null
    int IC, int H, int W, int OC, int pad, int ic_chunk) {
  LF_DYNAMIC_SHARED(float, smem);
  const int Hp = H + 2 * pad, Wp = W + 2 * pad;
  const int Ho = Hp - (kKernel - 1), Wo = Wp - (kKernel - 1), Hq = Ho / 2, Wq = Wo / 2;
  float* s_x = smem;                         // (ic_chunk, Hp, Wp)
  float* s_w = smem + ic_chunk * Hp * Wp;    // (OC, ic_chunk, 25)
  const int64_t n = blockIdx.x;
  const float* xn = x + n * IC * H * W;

  // Work items: fused -> OC*Hq*Wq pooled windows, then (if act is kept) the pixels of an odd last
  // column/row, which no window covers; plain -> OC*Ho*Wo pixels.
  const int edge_col = (FUSED && act && (Wo % 2)) ? 2 * Hq : 0;
  const int edge_row = (FUSED && act && (Ho % 2)) ? Wo : 0;
  const int per_oc = FUSED ? Hq * Wq : Ho * Wo;
  const int items = OC * per_oc + OC * (edge_col + edge_row);
  const bool one_chunk = ic_chunk >= IC;

  for (int base = 0; base < items; base += blockDim.x) {  // uniform trip count: safe to sync
    const int item = base + threadIdx.x;
    const bool valid = item < items;
    int oc = 0, oy = 0, ox = 0;
    bool window = FUSED;
    if (item < OC * per_oc) {
      oc = item / per_oc;
      const int r = item % per_oc;
      if (FUSED) {
        oy = 2 * (r / Wq);
        ox = 2 * (r % Wq);
      } else {
        oy = r / Wo;
        ox = r % Wo;
      }
    } else if (valid) {
      if constexpr (FUSED) {  // the odd-edge pixels exist only in the fused kernel
        const int e = item - OC * per_oc, per = edge_col + edge_row;
        oc = e / per;
        const int r = e % per;
        window = false;
        if (r < edge_col) {
          oy = r;
          ox = Wo - 1;
        } else {
          oy = Ho - 1;
          ox = r - edge_col;
        }
      }
    }
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int ic0 = 0; ic0 < IC; ic0 += ic_chunk) {
      const int icn = min(ic_chunk, IC - ic0);
      if (!(one_chunk && base > 0)) {  // stage this chunk (once, when all channels fit)
        __syncthreads();
        for (int i = threadIdx.x; i < icn * Hp * Wp; i += blockDim.x) {
          const int c = i / (Hp * Wp), yy = (i / Wp) % Hp - pad, xx = i % Wp - pad;
          s_x[i] = (yy >= 0 && yy < H && xx >= 0 && xx < W)
                       ? xn[(int64_t)(ic0 + c) * H * W + yy * W + xx]
                       : 0.0f;
        }
        for (int i = threadIdx.x; i < OC * icn * kTaps; i += blockDim.x) {
          const int o = i / (icn * kTaps), r = i % (icn * kTaps);
          s_w[i] = w[((int64_t)o * IC + ic0) * kTaps + r];
        }
        __syncthreads();
      }
      if (valid) {
        for (int c = 0; c < icn; ++c) {
          const float* wp = s_w + (oc * icn + c) * kTaps;
          const float* xp = s_x + c * Hp * Wp + oy * Wp + ox;
#pragma unroll
          for (int kh = 0; kh < kKernel; ++kh) {
#pragma unroll
            for (int kw = 0; kw < kKernel; ++kw) {
              const float wv = wp[kh * kKernel + kw];
              const float* p = xp + kh * Wp + kw;
              acc[0] += wv * p[0];
              if (window) {
                acc[1] += wv * p[1];
                acc[2] += wv * p[Wp];
                acc[3] += wv * p[Wp + 1];
              }
            }
          }
        }
      }
    }
    if (!valid) continue;
    const float b = bias ? bias[oc] : 0.0f;
    const int64_t plane = n * OC + oc;
    if (!FUSED) {
      y[(plane * Ho + oy) * Wo + ox] = acc[0] + b;
    } else if (window) {
      float t[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) t[i] = tanh_f32(acc[i] + b);
      y[(plane * Hq + oy / 2) * Wq + ox / 2] = avg4(t[0], t[1], t[2], t[3]);
      if (act) {
        float* a = act + (plane * Ho + oy) * Wo + ox;
        a[0] = t[0];
        a[1] = t[1];
        a[Wo] = t[2];
        a[Wo + 1] = t[3];
      }
    } else {
      act[(plane * Ho + oy) * Wo + ox] = tanh_f32(acc[0] + b);
    }
  }
}

__global__ void conv_weight_grad_kernel(
    const float* __restrict__ g,   // (N, OC, Ho, Wo): gradient at the conv output
    const float* __restrict__ x,   // (N, IC, H, W)
    float* __restrict__ partial,   // (chunks, OC, IC, 25)
    int64_t N, int64_t chunk, int IC, int H, int W, int OC, int pad) {
  LF_DYNAMIC_SHARED(float, smem);
  const int Hp = H + 2 * pad, Wp = W + 2 * pad;
  const int Ho = Hp - (kKernel - 1), Wo = Wp - (kKernel - 1), P = Ho * Wo;
  float* s_x = smem;               // (Hp, Wp): input channel ic of one image, zero-padded
  float* s_g = s_x + Hp * Wp;      // (OC, P)
  float* s_acc = s_g + OC * P;     // (OC, 25): owned one entry per thread, no races
  const int ic = blockIdx.y;
  const int64_t n0 = blockIdx.x * chunk, n1 = min(N, n0 + chunk);
  for (int i = threadIdx.x; i < OC * kTaps; i += blockDim.x) s_acc[i] = 0.0f;
  for (int64_t n = n0; n < n1; ++n) {
    __syncthreads();
    const float* xn = x + (n * IC + ic) * H * W;
    for (int i = threadIdx.x; i < Hp * Wp; i += blockDim.x) {
      const int yy = i / Wp - pad, xx = i % Wp - pad;
      s_x[i] = (yy >= 0 && yy < H && xx >= 0 && xx < W) ? xn[yy * W + xx] : 0.0f;
    }
    const float* gn = g + n * OC * P;
    for (int i = threadIdx.x; i < OC * P; i += blockDim.x) s_g[i] = gn[i];
    __syncthreads();
    for (int i = threadIdx.x; i < OC * kTaps; i += blockDim.x) {
      const int oc = i / kTaps, kh = (i % kTaps) / kKernel, kw = i % kKernel;
      const float* gp = s_g + oc * P;
      float acc = 0.0f;
      for (int yy = 0; yy < Ho; ++yy) {
        const float* xr = s_x + (yy + kh) * Wp + kw;
        for (int xx = 0; xx < Wo; ++xx) acc += gp[yy * Wo + xx] * xr[xx];
      }
      s_acc[i] += acc;
    }
  }
  __syncthreads();
  float* out = partial + (int64_t)blockIdx.x * OC * IC * kTaps;
  for (int i = threadIdx.x; i < OC * kTaps; i += blockDim.x) {
    const int oc = i / kTaps, t = i % kTaps;
    out[((int64_t)oc * IC + ic) * kTaps + t] = s_acc[i];
  }
}

// dw[i] = sum over chunks c of partial[c][i], in chunk order.
__global__ void conv_weight_reduce_kernel(const float* __restrict__ partial,
                                          float* __restrict__ dw, int64_t chunks, int64_t size) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < size;
       i += int64_t{blockDim.x} * gridDim.x) {
    float s = 0.0f;
    for (int64_t c = 0; c < chunks; ++c) s += partial[c * size + i];
    dw[i] = s;
  }
}

// One block per channel; each thread sums a strided slice, then a fixed-shape tree in shared memory.
__global__ void channel_sum_kernel(const float* __restrict__ in, float* __restrict__ out,
                                   int64_t A, int64_t C, int64_t B) {
  __shared__ float s[kThreads];
  const int64_t c = blockIdx.x;
  float acc = 0.0f;
  for (int64_t i = threadIdx.x; i < A * B; i += blockDim.x) {
    const int64_t a = i / B, b = i % B;
    acc += in[(a * C + c) * B + b];
  }
  s[threadIdx.x] = acc;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) s[threadIdx.x] += s[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[c] = s[0];
}

}  // namespace

cudaError_t launch_conv_forward(const float* x, const float* w, const float* bias, float* y, float* act,
                                int64_t N, int64_t IC, int64_t H, int64_t W, int64_t OC, int64_t pad,
                                bool fused, cudaStream_t stream) {
  if (N == 0) return cudaSuccess;
  const ConvForwardPlan p = conv_forward_plan(IC, H, W, OC, pad);
  if (IC > 0 && !p.fits) return cudaErrorInvalidValue;  // the caller checks this with a message
  const unsigned int blocks = static_cast<unsigned int>(N);
  const int ic = static_cast<int>(IC), h = static_cast<int>(H), wd = static_cast<int>(W),
            oc = static_cast<int>(OC), pd = static_cast<int>(pad), chunk = static_cast<int>(p.ic_chunk);
  if (fused)
    LF_LAUNCH(conv5x5_forward_kernel<true>, blocks, kThreads, p.shared_bytes, stream)(
        x, w, bias, y, act, ic, h, wd, oc, pd, chunk);
  else
    LF_LAUNCH(conv5x5_forward_kernel<false>, blocks, kThreads, p.shared_bytes, stream)(
        x, w, bias, y, static_cast<float*>(nullptr), ic, h, wd, oc, pd, chunk);
  return cudaGetLastError();
}

cudaError_t launch_channel_sum(const float* in, float* out, int64_t A, int64_t C, int64_t B, cudaStream_t stream) {
  if (C == 0) return cudaSuccess;
  LF_LAUNCH(channel_sum_kernel, static_cast<unsigned int>(C), kThreads, 0, stream)(in, out, A, C, B);
  return cudaGetLastError();
}

cudaError_t launch_conv_weight_grad(const float* g, const float* x, float* partial, float* dw, float* db,
                                    int64_t N, int64_t IC, int64_t H, int64_t W, int64_t OC, int64_t pad,
                                    cudaStream_t stream) {
  if (N == 0 || OC == 0) return cudaSuccess;  // the caller returns zeros
  const int64_t Ho = H + 2 * pad - 4, Wo = W + 2 * pad - 4;
  cudaError_t err = launch_channel_sum(g, db, N, OC, Ho * Wo, stream);
  if (err != cudaSuccess || IC == 0) return err;  // no input channels: no weights, only db
  const int64_t chunk = conv_weight_grad_chunk(N), chunks = conv_weight_grad_chunks(N);
  const size_t shared = static_cast<size_t>(conv_weight_grad_shared_bytes(H, W, OC, pad));
  LF_LAUNCH(conv_weight_grad_kernel, dim3(static_cast<unsigned int>(chunks), static_cast<unsigned int>(IC)),
            kThreads, shared, stream)(g, x, partial, N, chunk, static_cast<int>(IC), static_cast<int>(H),
                                      static_cast<int>(W), static_cast<int>(OC), static_cast<int>(pad));
  if ((err = cudaGetLastError()) != cudaSuccess) return err;
  const int64_t size = OC * IC * kTaps;
  LF_LAUNCH(conv_weight_reduce_kernel, grid_for(size), kThreads, 0, stream)(partial, dw, chunks, size);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace lenet_fast
