// CUDA convolution ops: 5x5 stride-1 convolution, fused with bias + tanh + 2x2 average pooling,
// and the two backward ops.
//
//   conv5x5_forward_kernel  one block per image; the zero-padded image (a chunk of input channels
//                           at a time) and its weights are staged in shared memory, and each thread
//                           owns an output: a pooled value (its 2x2 window of conv pixels in
//                           registers, so the full-resolution map is never written unless act is
//                           kept) or a plain conv pixel.
//   conv_weight_grad_kernel grid (image chunk, input channel): one input channel of one image and
//                           the output gradient staged in shared memory, each thread owns weights
//                           (oc, tap) and sums over pixels and the chunk's images; per-chunk
//                           partials are added by conv_weight_reduce_kernel in a fixed order, so
//                           the result is deterministic without atomics.
//   dL/dx                   the forward kernel again, on the rotated, transposed weights.
//
// NOTE: none of these kernels has run on a GPU yet (see README, "GPU status").
#include <torch/library.h>

#include "kernels.cuh"
#include "launch.h"

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
  extern __shared__ float smem[];
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
  extern __shared__ float smem[];
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
    if (threadIdx.x < stride) s[threadIdx.x] += s[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[c] = s[0];
}

}  // namespace

void launch_conv_forward(const char* op, const float* x, const float* w, const float* bias,
                         float* y, float* act, int64_t N, int64_t IC, int64_t H, int64_t W,
                         int64_t OC, int64_t pad, bool fused) {
  if (N == 0) return;
  const int64_t Hp = H + 2 * pad, Wp = W + 2 * pad, Ho = Hp - 4, Wo = Wp - 4;
  const int64_t per_chan = Hp * Wp + OC * kTaps;
  LF_CHECK(per_chan <= kSharedFloats, op, "on CUDA, one padded input plane plus 25 weights per "
           "output channel must fit in 48 KB of shared memory: (H+2p)*(W+2p) + 25*OC = ", per_chan,
           " floats > ", kSharedFloats, "; reduce the image size or the output channels");
  check_int32(op, "one image", std::max(IC * H * W, OC * Ho * Wo) + OC * (Ho + Wo));
  LF_CHECK(N <= 2147483647, op, "a batch of ", N, " images exceeds the CUDA grid limit");
  const int64_t ic_chunk = std::min<int64_t>(IC, kSharedFloats / per_chan);
  const size_t shmem = ic_chunk * per_chan * sizeof(float);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  if (fused)
    conv5x5_forward_kernel<true><<<static_cast<unsigned int>(N), kThreads, shmem, stream>>>(
        x, w, bias, y, act, IC, H, W, OC, pad, ic_chunk);
  else
    conv5x5_forward_kernel<false><<<static_cast<unsigned int>(N), kThreads, shmem, stream>>>(
        x, w, bias, y, nullptr, IC, H, W, OC, pad, ic_chunk);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void launch_channel_sum(const float* in, float* out, int64_t A, int64_t C, int64_t B) {
  if (C == 0) return;
  channel_sum_kernel<<<static_cast<unsigned int>(C), kThreads, 0,
                       c10::cuda::getCurrentCUDAStream()>>>(in, out, A, C, B);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

namespace {

at::Tensor conv5x5_cuda(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                        int64_t padding) {
  const char* op = "conv5x5";
  const ConvShape s = check_conv(op, x, w, b, padding, at::kCUDA);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), wc = w.contiguous(), bc = b.contiguous();
  at::Tensor y = at::empty({s.N, s.OC, s.Ho, s.Wo}, x.options());
  launch_conv_forward(op, xc.data_ptr<float>(), wc.data_ptr<float>(), bc.data_ptr<float>(),
                      y.data_ptr<float>(), nullptr, s.N, s.IC, s.H, s.W, s.OC, padding, false);
  return y;
}

std::tuple<at::Tensor, at::Tensor> conv5x5_tanh_pool_cuda(const at::Tensor& x, const at::Tensor& w,
                                                          const at::Tensor& b, int64_t padding,
                                                          bool save_act) {
  const char* op = "conv5x5_tanh_pool";
  const ConvShape s = check_conv(op, x, w, b, padding, at::kCUDA);
  LF_CHECK(s.Ho >= 2 && s.Wo >= 2, op, "expected a convolution output of at least 2x2 to pool, got ",
           s.Ho, "x", s.Wo, " from x ", x.sizes());
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), wc = w.contiguous(), bc = b.contiguous();
  at::Tensor y = at::empty({s.N, s.OC, s.Ho / 2, s.Wo / 2}, x.options());
  at::Tensor act = save_act ? at::empty({s.N, s.OC, s.Ho, s.Wo}, x.options())
                            : at::empty({0}, x.options());
  launch_conv_forward(op, xc.data_ptr<float>(), wc.data_ptr<float>(), bc.data_ptr<float>(),
                      y.data_ptr<float>(), save_act ? act.data_ptr<float>() : nullptr, s.N, s.IC,
                      s.H, s.W, s.OC, padding, true);
  return {y, act};
}

at::Tensor conv5x5_backward_input_cuda(const at::Tensor& grad, const at::Tensor& w,
                                       int64_t padding) {
  const char* op = "conv5x5_backward_input";
  const auto [H, W] = check_conv_input_grad(op, grad, w, padding, at::kCUDA);
  const int64_t pad = kMaxPad - padding;
  const c10::cuda::CUDAGuard guard(grad.device());
  // dL/dx = conv(grad, rot180(W) with in/out channels swapped, padding 4 - p)
  const at::Tensor wf = w.flip({2, 3}).transpose(0, 1).contiguous();
  const at::Tensor gc = grad.contiguous();
  at::Tensor dx = at::empty({grad.size(0), w.size(1), H, W}, grad.options());
  launch_conv_forward(op, gc.data_ptr<float>(), wf.data_ptr<float>(), nullptr, dx.data_ptr<float>(),
                      nullptr, grad.size(0), w.size(0), grad.size(2), grad.size(3), w.size(1), pad,
                      false);
  return dx;
}

std::tuple<at::Tensor, at::Tensor> conv5x5_backward_weight_cuda(const at::Tensor& grad,
                                                                const at::Tensor& x,
                                                                int64_t padding) {
  const char* op = "conv5x5_backward_weight";
  const ConvShape s = check_conv_weight_grad(op, grad, nullptr, x, padding, at::kCUDA);
  const int64_t N = s.N, IC = s.IC, H = s.H, W = s.W, OC = s.OC, Ho = s.Ho, Wo = s.Wo;
  const c10::cuda::CUDAGuard guard(x.device());
  if (N == 0 || OC == 0)
    return {at::zeros({OC, IC, kKernel, kKernel}, x.options()), at::zeros({OC}, x.options())};
  const int64_t shared = (H + 2 * padding) * (W + 2 * padding) + OC * Ho * Wo + OC * kTaps;
  LF_CHECK(IC == 0 || shared <= kSharedFloats, op, "on CUDA, one padded input plane, the output "
           "gradient of one image and the weight gradient must fit in 48 KB of shared memory: ",
           shared, " floats > ", kSharedFloats, "; reduce the image size or the output channels");
  LF_CHECK(IC <= 65535, op, "at most 65535 input channels on CUDA, got ", IC);
  at::Tensor dw = at::empty({OC, IC, kKernel, kKernel}, x.options());  // written in full below
  at::Tensor db = at::empty({OC}, x.options());
  const at::Tensor gc = grad.contiguous();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  launch_channel_sum(gc.data_ptr<float>(), db.data_ptr<float>(), N, OC, Ho * Wo);
  if (IC == 0) return {dw, db};  // no weights: a grid of zero blocks is not a valid launch
  const at::Tensor xc = x.contiguous();
  // A fixed chunking that depends only on N: the sum order never depends on the hardware.
  const int64_t chunk = std::max<int64_t>(8, (N + 255) / 256);
  const int64_t chunks = (N + chunk - 1) / chunk;
  at::Tensor partial = at::empty({chunks, OC * IC * kTaps}, x.options());
  conv_weight_grad_kernel<<<dim3(static_cast<unsigned int>(chunks), static_cast<unsigned int>(IC)),
                            kThreads, shared * sizeof(float), stream>>>(
      gc.data_ptr<float>(), xc.data_ptr<float>(), partial.data_ptr<float>(), N, chunk, IC, H, W,
      OC, padding);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  conv_weight_reduce_kernel<<<grid_for(dw.numel()), kThreads, 0, stream>>>(
      partial.data_ptr<float>(), dw.data_ptr<float>(), chunks, dw.numel());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {dw, db};
}

// The fused op's weight gradient: the pool + tanh backward, then the weight gradient (two
// launches; the CPU kernel does both in one pass).
std::tuple<at::Tensor, at::Tensor> conv5x5_tanh_pool_backward_weight_cuda(const at::Tensor& grad,
                                                                          const at::Tensor& act,
                                                                          const at::Tensor& x,
                                                                          int64_t padding) {
  const char* op = "conv5x5_tanh_pool_backward_weight";
  const ConvShape s = check_conv_weight_grad(op, grad, &act, x, padding, at::kCUDA);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor gc = grad.contiguous(), ac = act.contiguous();
  at::Tensor dpre = at::empty(act.sizes(), act.options());
  launch_tanh_pool_backward(gc.data_ptr<float>(), ac.data_ptr<float>(), dpre.data_ptr<float>(),
                            s.N * s.OC, s.Ho, s.Wo);
  return conv5x5_backward_weight_cuda(dpre, x, padding);
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_fast, CUDA, m) {
  m.impl("conv5x5_tanh_pool_backward_weight", &conv5x5_tanh_pool_backward_weight_cuda);
  m.impl("conv5x5", &conv5x5_cuda);
  m.impl("conv5x5_tanh_pool", &conv5x5_tanh_pool_cuda);
  m.impl("conv5x5_backward_input", &conv5x5_backward_input_cuda);
  m.impl("conv5x5_backward_weight", &conv5x5_backward_weight_cuda);
}

}  // namespace cuda
}  // namespace lenet_fast
