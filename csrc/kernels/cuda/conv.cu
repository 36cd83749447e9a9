// CUDA convolution kernels and their launchers: 5x5 stride-1 convolution, fused with bias + the
// activation + 2x2 pooling (template parameters: tanh, relu, leaky_relu, sigmoid; average or max),
// and the weight gradient. No torch here (see launchers.h): the same file
// builds under nvcc and, as C++, under the CPU harness (csrc/cudasim/) that CI runs it in.
//
//   conv5x5_forward_kernel  one block per image; the zero-padded image (a chunk of input channels
//                           at a time) and its weights are staged in shared memory, and each thread
//                           owns an output: a pooled value (its 2x2 window of conv pixels in
//                           registers, so the full-resolution map is never written unless act is
//                           kept) or a plain conv pixel. dL/dx is this kernel again, on the
//                           rotated, transposed weights.
//   conv_weight_grad_kernel grid (image chunk, input channel + 1, output channel): one input plane
//                           and one output-gradient plane of an image staged in shared memory at a
//                           time, threads (tap, pixel group) summing over the chunk, the groups
//                           added in order; the extra input-channel row sums the bias gradient, and
//                           the fused op's pool + activation backward is done as the gradient is
//                           staged.
//                           Per-chunk partials are added by conv_weight_reduce_kernel in a fixed
//                           order: deterministic without atomics, and no separate bias pass.
//
// NOTE: none of these kernels has run on a GPU yet (see README, "GPU status"); they run in CI under
// the CPU harness.
#include "../kernel_math.h"
#include "device.h"
#include "launchers.h"

namespace lenet_fast {
namespace cuda {
namespace {

template <bool FUSED, Act A, Pool PL>
__global__ void __launch_bounds__(kThreads) conv5x5_forward_kernel(
    const float* __restrict__ x,     // (N, IC, H, W)
    const float* __restrict__ w,     // (OC, IC, 5, 5)
    const float* __restrict__ bias,  // (OC) or null
    float* __restrict__ y,           // plain (N, OC, Ho, Wo); fused (N, OC, Ho/2, Wo/2)
    float* __restrict__ act,         // fused: A(conv) (N, OC, Ho, Wo), or null
    int IC, int H, int W, int OC, int pad, int ic_chunk, float slope) {
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
        // The padding's zeros, then the image with the lanes along its own rows (a warp reads 128
        // contiguous bytes, not a padded row's worth of scattered pixels); the two loops write
        // different elements, so they need no barrier between them.
        if (pad > 0)
          for (int i = threadIdx.x; i < icn * Hp * Wp; i += blockDim.x) {
            const int yy = (i / Wp) % Hp - pad, xx = i % Wp - pad;
            if (yy < 0 || yy >= H || xx < 0 || xx >= W) s_x[i] = 0.0f;
          }
        for (int i = threadIdx.x; i < icn * H * W; i += blockDim.x) {
          const int c = i / (H * W), yy = (i / W) % H, xx = i % W;
          s_x[(c * Hp + yy + pad) * Wp + xx + pad] = xn[(int64_t)(ic0 + c) * H * W + yy * W + xx];
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
      for (int i = 0; i < 4; ++i) t[i] = act_f32<A>(acc[i] + b, slope);
      y[(plane * Hq + oy / 2) * Wq + ox / 2] = pool4<PL, ScalarOps>(t[0], t[1], t[2], t[3]);
      if (act) {
        float* a = act + (plane * Ho + oy) * Wo + ox;
        store2(a, t[0], t[1]);
        store2(a + Wo, t[2], t[3]);
      }
    } else {
      act[(plane * Ho + oy) * Wo + ox] = act_f32<A>(acc[0] + b, slope);
    }
  }
}

// Block (chunk, ic, oc): the 25 weights (oc, ic, .) summed over the chunk's images, or with
// ic == IC the bias of oc. Thread (tap, group) sums the pixels p = group, group + G, ...; the
// groups are then added in order (deterministic). With act, g is the pooled gradient of the fused
// op and the output gradient is its pool + activation backward (A, PL), computed as it is staged.
template <Act A, Pool PL>
__global__ void __launch_bounds__(kThreads) conv_weight_grad_kernel(
    const float* __restrict__ g,    // (N, OC, Ho, Wo), or pooled (N, OC, Ho/2, Wo/2) with act
    const float* __restrict__ act,  // (N, OC, Ho, Wo) activation output of the fused op, or null
    const float* __restrict__ x,    // (N, IC, H, W)
    float* __restrict__ partial,    // (chunks, OC * IC * 25 + OC)
    int64_t N, int64_t chunk, int IC, int H, int W, int OC, int pad, float slope) {
  LF_DYNAMIC_SHARED(float, smem);
  const int Hp = H + 2 * pad, Wp = W + 2 * pad;
  const int Ho = Hp - (kKernel - 1), Wo = Wp - (kKernel - 1), P = Ho * Wo, Hq = Ho / 2, Wq = Wo / 2;
  const int ic = blockIdx.y, oc = blockIdx.z;
  const bool bias = ic == IC;
  const int T = bias ? 1 : kTaps, groups = blockDim.x / T;
  const int tap = threadIdx.x / groups, grp = threadIdx.x % groups, kh = tap / kKernel, kw = tap % kKernel;
  float* s_x = smem;           // (Hp, Wp): input channel ic of one image, zero-padded
  float* s_g = s_x + Hp * Wp;  // (Ho, Wo): the output gradient of channel oc
  float* s_red = s_g + P;      // (blockDim.x)
  const int64_t n0 = blockIdx.x * chunk, n1 = min(N, n0 + chunk);
  float acc = 0.0f;
  for (int64_t n = n0; n < n1; ++n) {
    __syncthreads();
    if (!bias) {
      const float* xn = x + (n * IC + ic) * H * W;
      for (int i = threadIdx.x; i < Hp * Wp; i += blockDim.x) {
        const int yy = i / Wp - pad, xx = i % Wp - pad;
        s_x[i] = (yy >= 0 && yy < H && xx >= 0 && xx < W) ? xn[yy * W + xx] : 0.0f;
      }
    }
    const int64_t plane = n * OC + oc;
    for (int i = threadIdx.x; i < P; i += blockDim.x) {
      if (act) {
        const int yy = i / Wo, xx = i % Wo;
        const bool in = yy < 2 * Hq && xx < 2 * Wq;
        const float gq = in ? g[(plane * Hq + yy / 2) * Wq + xx / 2] : 0.0f;
        s_g[i] = act_pool_backward_at<A, PL>(gq, act + plane * P, Wo, yy, xx, in, slope);
      } else {
        s_g[i] = g[plane * P + i];
      }
    }
    __syncthreads();
    if (tap < T) {
      if (bias) {
        for (int q = grp; q < P; q += groups) acc += s_g[q];
      } else {
        const float* xp = s_x + kh * Wp + kw;
        for (int q = grp; q < P; q += groups) acc += s_g[q] * xp[(q / Wo) * Wp + q % Wo];
      }
    }
  }
  s_red[threadIdx.x] = acc;
  __syncthreads();
  if (static_cast<int>(threadIdx.x) < T) {
    float sum = 0.0f;
    for (int k = 0; k < groups; ++k) sum += s_red[threadIdx.x * groups + k];
    float* out = partial + blockIdx.x * ((int64_t)OC * IC * kTaps + OC);
    if (bias)
      out[(int64_t)OC * IC * kTaps + oc] = sum;
    else
      out[((int64_t)oc * IC + ic) * kTaps + threadIdx.x] = sum;
  }
}

// Sums the partials over chunks in chunk order: entries below nw go to dw, the rest to db.
__global__ void __launch_bounds__(kThreads) conv_weight_reduce_kernel(const float* __restrict__ partial, float* __restrict__ dw,
                                          float* __restrict__ db, int64_t chunks, int64_t nw, int64_t size) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < size;
       i += int64_t{blockDim.x} * gridDim.x) {
    float s = 0.0f;
    for (int64_t c = 0; c < chunks; ++c) s += partial[c * size + i];
    if (i < nw)
      dw[i] = s;
    else
      db[i - nw] = s;
  }
}

}  // namespace

cudaError_t launch_conv_forward(const float* x, const float* w, const float* bias, float* y, float* act,
                                int64_t N, int64_t IC, int64_t H, int64_t W, int64_t OC, int64_t pad,
                                bool fused, const Variant& v, cudaStream_t stream) {
  if (N == 0) return cudaSuccess;
  const ConvForwardPlan p = conv_forward_plan(IC, H, W, OC, pad);
  if (IC > 0 && !p.fits) return cudaErrorInvalidValue;  // the caller checks this with a message
  const unsigned int blocks = static_cast<unsigned int>(N);
  const int ic = static_cast<int>(IC), h = static_cast<int>(H), wd = static_cast<int>(W),
            oc = static_cast<int>(OC), pd = static_cast<int>(pad), chunk = static_cast<int>(p.ic_chunk);
  if (fused) {
    with_variant(v, [&](auto a, auto pool) {
      const auto kernel = conv5x5_forward_kernel<true, decltype(a)::value, decltype(pool)::value>;
      LF_LAUNCH(kernel, blocks, kThreads, p.shared_bytes, stream)(x, w, bias, y, act, ic, h, wd, oc, pd, chunk,
                                                                 v.slope);
    });
  } else {
    const auto kernel = conv5x5_forward_kernel<false, Act::kNone, Pool::kAvg>;  // (no activation or pooling)
    LF_LAUNCH(kernel, blocks, kThreads, p.shared_bytes, stream)(x, w, bias, y, static_cast<float*>(nullptr), ic, h,
                                                               wd, oc, pd, chunk, 0.0f);
  }
  return cudaGetLastError();
}

cudaError_t launch_conv_weight_grad(const float* g, const float* act, const float* x, float* partial, float* dw,
                                    float* db, int64_t N, int64_t IC, int64_t H, int64_t W, int64_t OC, int64_t pad,
                                    const Variant& v, cudaStream_t stream) {
  if (N == 0 || OC == 0) return cudaSuccess;  // the caller returns zeros
  const int64_t chunk = grad_chunk(N), chunks = grad_chunks(N);
  const size_t shared = static_cast<size_t>(conv_weight_grad_shared_bytes(H, W, pad));
  const dim3 grid(static_cast<unsigned int>(chunks), static_cast<unsigned int>(IC + 1), static_cast<unsigned int>(OC));
  const auto run = [&](auto a, auto pool) {
    const auto kernel = conv_weight_grad_kernel<decltype(a)::value, decltype(pool)::value>;
    LF_LAUNCH(kernel, grid, kThreads, shared, stream)(g, act, x, partial, N, chunk, static_cast<int>(IC),
                                                      static_cast<int>(H), static_cast<int>(W), static_cast<int>(OC),
                                                      static_cast<int>(pad), v.slope);
  };
  if (act)
    with_variant(v, run);
  else  // the gradient at the conv output: no activation or pooling to go back through
    run(ActC<Act::kNone>{}, PoolC<Pool::kAvg>{});
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  const int64_t nw = OC * IC * kTaps, size = nw + OC;
  LF_LAUNCH(conv_weight_reduce_kernel, grid_for(size), kThreads, 0, stream)(partial, dw, db, chunks, nw, size);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace lenet_fast
