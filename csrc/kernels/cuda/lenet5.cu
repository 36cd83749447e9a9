// The whole network in three kernels, for LeNet-5's own geometry (launchers.h, NetGeometry): a
// 1-channel image that is 32x32 once padded, conv1 6 channels, conv2 16, fc 400 -> 120 -> 84 ->
// classes. Other shapes take the per-layer kernels (csrc/ops/cuda/). No torch here: the file builds
// under nvcc and, as C++, under the CPU harness (csrc/cudasim/) that CI runs it in.
//
//   net_forward_kernel      the forward, one launch: a block takes a tile of images, stages the
//                           convolution weights once, keeps every activation in shared memory and
//                           writes the logits (and, for training, what backward needs). Each conv1
//                           thread computes all 6 channels of a 2x2 pooling window from a 6x6 patch
//                           in registers (600 FMAs for 186 shared loads); each conv2 thread 4
//                           channels of a window (2400 FMAs for 816 loads, the weights broadcast).
//                           The fully connected layers stream their weights through shared memory
//                           16 columns at a time, each thread one output for up to 4 images.
//                           Accepts uint8 images, normalised as the CPU's normalize_u8 does.
//   net_backward_data_kernel   per image tile, everything backward that stays inside an image:
//                           fc3 -> fc2 -> fc1 input gradients through the activation, pool2 +
//                           activation backward (dL/d conv2 output), and conv2's input gradient
//                           (dL/d pool1).
//   net_weight_grad_kernel  every weight and bias gradient in one launch: a grid of (image chunk,
//                           job), a job being one conv output channel (its 25 IC taps and its bias)
//                           or a few rows of a fully connected layer (with their biases), each
//                           block writing its chunk's partial sums; conv1's pool + activation
//                           backward is done here, on the fly, as the output gradient is staged.
//   net_reduce_kernel       the partials summed over chunks in chunk order into the ten gradient
//                           tensors.
//
// Every kernel takes the network's variant (activation A, pooling PL) as template parameters, as the
// per-layer kernels do; max pooling's backward re-finds each window's element in the saved
// activation (act_pool_backward_at). Deterministic by construction: every sum has a fixed order
// that depends on N alone, and no float atomics. The tile sizes and job shapes are first choices,
// to be tuned on a GPU (README, "GPU status", says what has run where).
#include "../kernel_math.h"
#include "device.h"
#include "launchers.h"

namespace lenet_fast {
namespace cuda {
namespace {

using G = NetGeometry;
constexpr int kKC = 32;  // fc weight columns staged per step
constexpr int kConvWeights = G::kC1 * kTaps + G::kC1 + G::kC2 * G::kC1 * kTaps + G::kC2;  // 2572
constexpr int kConvWeightsPadded = (kConvWeights + 3) / 4 * 4;
constexpr int kInPlane = G::kPadded * G::kPadded;    // 1024
constexpr int kP1 = G::kC1 * G::kQ1 * G::kQ1;        // 1176
constexpr int kA1 = G::kC1 * G::kO1 * G::kO1;        // 4704
constexpr int kA2 = G::kC2 * G::kO2 * G::kO2;        // 1600
constexpr int kMaxJ = G::kMaxClasses > G::kJ1 ? G::kMaxClasses : G::kJ1;
static_assert(G::kF + G::kJ1 + G::kJ2 <= kInPlane, "p2, h1, h2 overlay the staged input");

// Row stride of the staged fc weights (kKC, J): odd, so that the 32 lanes storing one row's 32
// columns (kk = 0..31 of row r, at kk * stride + r) hit 32 different banks.
__host__ __device__ constexpr int staged_stride(int J) { return J | 1; }
// Shared memory of net_forward_kernel<TILE>, in floats.
constexpr int forward_smem_floats(int tile) {
  return kConvWeightsPadded + tile * (kInPlane + kP1) + kKC * staged_stride(kMaxJ);
}

// out[t][j] = act(sum_k in[t][k] W[j][k] + b[j]) for the tile's images t < TILE and j < J, in
// and out in shared memory, W (J, K) and b in global memory, W staged through s_wc (kKC rows of
// staged_stride(J)): a warp reads 32 consecutive columns of one row of W (coalesced) and stores
// them down a column of s_wc (conflict-free, the stride being odd). Each thread owns one j for IPT
// images (one item per thread: J * TILE / IPT <= blockDim.x). Called by every thread of the block
// (it synchronises).
template <int TILE, bool ACT, Act A>
__device__ void block_linear(const float* s_in, int in_stride, const float* __restrict__ W,
                             const float* __restrict__ b, int J, int K, float* s_out, int out_stride,
                             float* s_wc, float slope) {
  if constexpr (TILE == 1) {
    // One image: a staged weight would serve one multiply, so none is staged. A warp takes an
    // output j at a time, its lanes 32 consecutive k of W's row j (coalesced) against the input
    // (conflict-free), then a shuffle tree adds the lanes' sums in a fixed order.
    const int lane = threadIdx.x % 32, warps = blockDim.x / 32;
    __syncthreads();  // s_in is complete
    for (int j = threadIdx.x / 32; j < J; j += warps) {
      const float* w = W + (int64_t)j * K;
      float acc = 0.0f;
      for (int k = lane; k < K; k += 32) acc += s_in[k] * w[k];
#pragma unroll
      for (int off = 16; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
      if (lane == 0) s_out[j] = ACT ? act_f32<A>(acc + b[j], slope) : acc + b[j];
    }
    __syncthreads();
    return;
  }
  constexpr int IPT = TILE < 4 ? TILE : 4;
  const int item = threadIdx.x, j = item % J, t0 = (item / J) * IPT;
  const bool active = item < J * (TILE / IPT);
  float acc[IPT];
#pragma unroll
  for (int u = 0; u < IPT; ++u) acc[u] = 0.0f;
  const int stride = staged_stride(J);
  for (int k0 = 0; k0 < K; k0 += kKC) {
    const int kn = min(kKC, K - k0);
    __syncthreads();  // the previous step's reads of s_wc are done
    for (int i = threadIdx.x; i < J * kKC; i += blockDim.x) {
      const int r = i / kKC, kk = i % kKC;  // kKC is a power of 2: shifts, not divisions
      if (kk < kn) s_wc[kk * stride + r] = W[(int64_t)r * K + k0 + kk];
    }
    __syncthreads();
    if (active) {
      for (int kk = 0; kk < kn; ++kk) {
        const float w = s_wc[kk * stride + j];
#pragma unroll
        for (int u = 0; u < IPT; ++u) acc[u] += s_in[(t0 + u) * in_stride + k0 + kk] * w;
      }
    }
  }
  if (active) {
#pragma unroll
    for (int u = 0; u < IPT; ++u) {
      const float v = acc[u] + b[j];
      s_out[(t0 + u) * out_stride + j] = ACT ? act_f32<A>(v, slope) : v;
    }
  }
  __syncthreads();
}

// The stages of net_forward_kernel. Each is called by every thread of the block and splits its
// items over the block's threads; the kernel places the barriers between them (fc_layers has its
// own, inside block_linear).

// The convolution weights and biases into s_w (s_w1 | s_b1 | s_w2 | s_b2), once for the tile.
__device__ __forceinline__ void stage_conv_weights(const NetParams& p, float* s_w1, float* s_b1, float* s_w2,
                                                   float* s_b2) {
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int i = tid; i < G::kC1 * kTaps; i += nt) s_w1[i] = p.w1[i];
  for (int i = tid; i < G::kC1; i += nt) s_b1[i] = p.b1[i];
  for (int i = tid; i < G::kC2 * G::kC1 * kTaps; i += nt) s_w2[i] = p.w2[i];
  for (int i = tid; i < G::kC2; i += nt) s_b2[i] = p.b2[i];
}

// Where column x of row y of a staged (32, 32) image plane sits in its row: x ^ ((y >> 1) & 1). The
// conv1 windows of a warp span 3 rows of windows 2 image rows apart (64 floats, the same banks) and
// read every other column; flipping the column's low bit on alternate window rows puts those rows
// on the odd banks, so a patch load asks a bank for at most 2 words (3 without).
__host__ __device__ constexpr int staged_col(int y, int x) { return x ^ ((y >> 1) & 1); }

// The tile's images, zero-padded to (TILE, 32, 32) (columns placed by staged_col); images past N
// are zeros. uint8 pixels are normalised here, as the CPU's normalize_u8 does.
template <int TILE, typename In>
__device__ __forceinline__ void stage_images(const In* __restrict__ x, float mean, float std, int64_t n0, int64_t N,
                                             int H, int W, int pad, float* s_in) {
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int i = tid; i < TILE * kInPlane; i += nt) {
    const int t = i / kInPlane, yy = (i / G::kPadded) % G::kPadded - pad, xx = i % G::kPadded - pad;
    const int64_t n = n0 + t;
    float v = 0.0f;
    if (n < N && yy >= 0 && yy < H && xx >= 0 && xx < W) {
      const In raw = x[(n * H + yy) * W + xx];
      if constexpr (sizeof(In) == 1)
        v = normalize_u8(raw, mean, std);
      else
        v = raw;
    }
    s_in[i - i % G::kPadded + staged_col(yy + pad, xx + pad)] = v;
  }
}

// conv1 + activation + pool, s_in -> s_p1 (TILE, 6, 14, 14): one 2x2 window, all 6 channels, per
// item. SAVE: also p1 and the pooling's input act1, for the images < N.
template <int TILE, bool SAVE, Act A, Pool PL>
__device__ __forceinline__ void conv1_act_pool(const float* s_in, const float* s_w1, const float* s_b1, float* s_p1,
                                               const NetSaved& saved, int64_t n0, int64_t N, float slope) {
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int item = tid; item < TILE * G::kQ1 * G::kQ1; item += nt) {
    const int t = item / (G::kQ1 * G::kQ1), q = item % (G::kQ1 * G::kQ1), qy = q / G::kQ1, qx = q % G::kQ1;
    float patch[6][6];
    const float* src = s_in + t * kInPlane + 2 * qy * G::kPadded + 2 * qx;
#pragma unroll
    for (int r = 0; r < 6; ++r) {
      // Row 2 qy + r was staged with its columns' low bit flipped when ((2 qy + r) >> 1) is odd
      // (staged_col): place 2 qx + c holds column 2 qx + (c ^ flip). Load in place, swap in registers.
      const bool flip = ((qy + (r >> 1)) & 1) != 0;
      float v[6];
#pragma unroll
      for (int c = 0; c < 6; ++c) v[c] = src[r * G::kPadded + c];
#pragma unroll
      for (int c = 0; c < 6; ++c) patch[r][c] = flip ? v[c ^ 1] : v[c];
    }
    const int64_t n = n0 + t;
    for (int oc = 0; oc < G::kC1; ++oc) {
      float a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      const float* wp = s_w1 + oc * kTaps;
#pragma unroll
      for (int kh = 0; kh < kKernel; ++kh)
#pragma unroll
        for (int kw = 0; kw < kKernel; ++kw) {
          const float w = wp[kh * kKernel + kw];
          a[0] += w * patch[kh][kw];
          a[1] += w * patch[kh][kw + 1];
          a[2] += w * patch[kh + 1][kw];
          a[3] += w * patch[kh + 1][kw + 1];
        }
      float tv[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) tv[u] = act_f32<A>(a[u] + s_b1[oc], slope);
      const float pooled = pool4<PL, ScalarOps>(tv[0], tv[1], tv[2], tv[3]);
      s_p1[t * kP1 + oc * G::kQ1 * G::kQ1 + q] = pooled;
      if (SAVE && n < N) {
        saved.p1[n * kP1 + oc * G::kQ1 * G::kQ1 + q] = pooled;
        float* a1 = saved.act1 + n * kA1 + (oc * G::kO1 + 2 * qy) * G::kO1 + 2 * qx;
        store2(a1, tv[0], tv[1]);  // rows of 28 and 10: every pair is 8-byte aligned
        store2(a1 + G::kO1, tv[2], tv[3]);
      }
    }
  }
}

// conv2 + activation + pool, s_p1 -> s_p2 (TILE, 400) in the flatten order: one 2x2 window, 4 of
// the 16 channels, per item. The channel group is the fastest index of the items, so a warp holds 8
// windows (its patch loads hit at most 2 words per bank; each window's 4 lanes share them) and
// reads 4 weights a step, 600 words apart (4 banks). SAVE: also p2 and the pooling's input act2,
// for the images < N.
template <int TILE, bool SAVE, Act A, Pool PL>
__device__ __forceinline__ void conv2_act_pool(const float* s_p1, const float* s_w2, const float* s_b2, float* s_p2,
                                               const NetSaved& saved, int64_t n0, int64_t N, float slope) {
  constexpr int kGroups = G::kC2 / 4;
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int item = tid; item < TILE * kGroups * G::kQ2 * G::kQ2; item += nt) {
    const int og = item % kGroups, q = (item / kGroups) % (G::kQ2 * G::kQ2), t = item / (G::kQ2 * G::kQ2 * kGroups);
    const int qy = q / G::kQ2, qx = q % G::kQ2;
    float a[4][4] = {};
    for (int ic = 0; ic < G::kC1; ++ic) {
      float patch[6][6];
      const float* src = s_p1 + t * kP1 + ic * G::kQ1 * G::kQ1 + 2 * qy * G::kQ1 + 2 * qx;
#pragma unroll
      for (int r = 0; r < 6; ++r)
#pragma unroll
        for (int c = 0; c < 6; ++c) patch[r][c] = src[r * G::kQ1 + c];
#pragma unroll
      for (int o = 0; o < 4; ++o) {
        const float* wp = s_w2 + ((og * 4 + o) * G::kC1 + ic) * kTaps;
#pragma unroll
        for (int kh = 0; kh < kKernel; ++kh)
#pragma unroll
          for (int kw = 0; kw < kKernel; ++kw) {
            const float w = wp[kh * kKernel + kw];
            a[o][0] += w * patch[kh][kw];
            a[o][1] += w * patch[kh][kw + 1];
            a[o][2] += w * patch[kh + 1][kw];
            a[o][3] += w * patch[kh + 1][kw + 1];
          }
      }
    }
    const int64_t n = n0 + t;
#pragma unroll
    for (int o = 0; o < 4; ++o) {
      const int oc = og * 4 + o;
      float tv[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) tv[u] = act_f32<A>(a[o][u] + s_b2[oc], slope);
      const float pooled = pool4<PL, ScalarOps>(tv[0], tv[1], tv[2], tv[3]);
      const int f = oc * G::kQ2 * G::kQ2 + q;  // the flatten order
      s_p2[t * G::kF + f] = pooled;
      if (SAVE && n < N) {
        saved.p2[n * G::kF + f] = pooled;
        float* a2 = saved.act2 + n * kA2 + (oc * G::kO2 + 2 * qy) * G::kO2 + 2 * qx;
        store2(a2, tv[0], tv[1]);
        store2(a2 + G::kO2, tv[2], tv[3]);
      }
    }
  }
}

// fc1 -> fc2 -> fc3, s_p2 -> s_h1 -> s_h2 -> s_out (TILE, J3), no activation after fc3. Every
// block_linear synchronises before it reads and after it writes, so this needs no barrier around it.
template <int TILE, Act A>
__device__ __forceinline__ void fc_layers(const NetParams& p, const float* s_p2, float* s_h1, float* s_h2, float* s_out,
                                          int J3, float* s_wc, float slope) {
  block_linear<TILE, true, A>(s_p2, G::kF, p.f1w, p.f1b, G::kJ1, G::kF, s_h1, G::kJ1, s_wc, slope);
  block_linear<TILE, true, A>(s_h1, G::kJ1, p.f2w, p.f2b, G::kJ2, G::kJ1, s_h2, G::kJ2, s_wc, slope);
  block_linear<TILE, false, A>(s_h2, G::kJ2, p.f3w, p.f3b, J3, G::kJ2, s_out, J3, s_wc, slope);
}

// The tile's logits, and for training h1 and h2, to global memory (only the images < N).
template <int TILE, bool SAVE>
__device__ __forceinline__ void write_forward_outputs(const float* s_out, const float* s_h1, const float* s_h2,
                                                      float* __restrict__ logits, const NetSaved& saved, int64_t n0,
                                                      int64_t N, int J3) {
  const int tid = threadIdx.x, nt = blockDim.x;
  const int64_t valid = min(int64_t{TILE}, N - n0);
  for (int i = tid; i < valid * J3; i += nt) logits[n0 * J3 + i] = s_out[i];
  if (SAVE) {
    for (int i = tid; i < valid * G::kJ1; i += nt) saved.h1[n0 * G::kJ1 + i] = s_h1[i];
    for (int i = tid; i < valid * G::kJ2; i += nt) saved.h2[n0 * G::kJ2 + i] = s_h2[i];
  }
}

template <int TILE, bool SAVE, typename In, Act A, Pool PL>
__global__ void __launch_bounds__(kThreads, 2) net_forward_kernel(const In* __restrict__ x, float mean, float std, NetParams p, float* __restrict__ logits,
                                   NetSaved saved, int64_t N, int H, int W, int pad, int J3, float slope) {
  LF_DYNAMIC_SHARED(float, smem);
  float* s_w1 = smem;                         // (6, 25)
  float* s_b1 = s_w1 + G::kC1 * kTaps;        // (6)
  float* s_w2 = s_b1 + G::kC1;                // (16, 6, 25)
  float* s_b2 = s_w2 + G::kC2 * G::kC1 * kTaps;  // (16)
  float* s_in = smem + kConvWeightsPadded;    // (TILE, 32, 32); later p2 | h1 | h2 per image
  float* s_p1 = s_in + TILE * kInPlane;       // (TILE, 6, 14, 14)
  float* s_wc = s_p1 + TILE * kP1;            // fc weight staging (kKC, J)
  float* s_p2 = s_in;                         // (TILE, 400)
  float* s_h1 = s_in + TILE * G::kF;          // (TILE, 120)
  float* s_h2 = s_h1 + TILE * G::kJ1;         // (TILE, 84)
  float* s_out = s_p1;                        // (TILE, J3): fc3's output, p1 being free after conv2
  const int64_t n0 = blockIdx.x * int64_t{TILE};

  stage_conv_weights(p, s_w1, s_b1, s_w2, s_b2);
  stage_images<TILE>(x, mean, std, n0, N, H, W, pad, s_in);
  __syncthreads();
  conv1_act_pool<TILE, SAVE, A, PL>(s_in, s_w1, s_b1, s_p1, saved, n0, N, slope);
  __syncthreads();
  conv2_act_pool<TILE, SAVE, A, PL>(s_p1, s_w2, s_b2, s_p2, saved, n0, N, slope);  // p2 overlays s_in
  fc_layers<TILE, A>(p, s_p2, s_h1, s_h2, s_out, J3, s_wc, slope);  // synchronises before it reads p2
  write_forward_outputs<TILE, SAVE>(s_out, s_h1, s_h2, logits, saved, n0, N, J3);
}

// out[t][k] = act_backward(sum_j g[t][j] W[j][k], y[n0 + t][k]) (through the activation A when y
// is given; for tanh the product with 1 - y^2): the input gradient of a linear layer, W (J, K) read
// from global memory along k (coalesced).
template <int TILE, Act A>
__device__ void block_linear_backward(const float* s_g, int J, const float* __restrict__ W, int K,
                                      const float* __restrict__ y, int64_t n0, int64_t N, float* s_out, float slope) {
  for (int item = threadIdx.x; item < K * TILE; item += blockDim.x) {
    const int k = item % K, t = item / K;
    float acc = 0.0f;
    for (int j = 0; j < J; ++j) acc += s_g[t * J + j] * W[(int64_t)j * K + k];
    const int64_t n = n0 + t;
    s_out[t * K + k] = y ? (n < N ? act_backward_f32<A>(acc, y[n * K + k], slope) : 0.0f) : acc;
  }
  __syncthreads();
}

// Shared memory of net_backward_data_kernel<TILE>, in floats.
constexpr int backward_smem_floats(int tile) {
  return tile * (kMaxJ + G::kJ2 + G::kJ1 + G::kF + kA2) + G::kC2 * G::kC1 * kTaps;
}

// The stages of net_backward_data_kernel, each called by every thread of the block; the kernel
// places the barriers between them (block_linear_backward synchronises after it writes).

// The tile's logit gradients (zeros past N) and conv2's weights into shared memory.
template <int TILE>
__device__ __forceinline__ void stage_backward_inputs(const float* __restrict__ g3, const NetParams& p, int64_t n0,
                                                      int64_t valid, int J3, float* s_g3, float* s_w2) {
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int i = tid; i < TILE * J3; i += nt) s_g3[i] = i < valid * J3 ? g3[n0 * J3 + i] : 0.0f;
  for (int i = tid; i < G::kC2 * G::kC1 * kTaps; i += nt) s_w2[i] = p.w2[i];
}

// pool2 + activation backward, dL/d pool2 s_df -> dL/d conv2 output, to s_d2 (zeros past N) and
// d.dpre2: every conv2 output pixel is in a window (10 is even).
template <int TILE, Act A, Pool PL>
__device__ __forceinline__ void pool2_act_backward(const float* s_df, const NetSaved& s, const NetGrads& d, int64_t n0,
                                                   int64_t N, float* s_d2, float slope) {
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int i = tid; i < TILE * kA2; i += nt) {
    const int t = i / kA2, r = i % kA2, c = r / (G::kO2 * G::kO2), yy = (r / G::kO2) % G::kO2, xx = r % G::kO2;
    const int64_t n = n0 + t;
    float v = 0.0f;
    if (n < N) {
      v = act_pool_backward_at<A, PL>(s_df[t * G::kF + (c * G::kQ2 + yy / 2) * G::kQ2 + xx / 2],
                                      s.act2 + n * kA2 + c * G::kO2 * G::kO2, G::kO2, yy, xx, true, slope);
      d.dpre2[n * kA2 + r] = v;
    }
    s_d2[i] = v;
  }
}

// dL/d pool1 = conv2's input gradient, to dp1 for the tile's valid images: dp1[ic][y][x] = sum
// over oc, taps in range of dpre2[oc][y - kh][x - kw] w2[oc][ic][kh][kw].
__device__ __forceinline__ void conv2_input_grad(const float* s_d2, const float* s_w2, int64_t n0, int64_t valid,
                                                 float* dp1) {
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int i = tid; i < valid * kP1; i += nt) {
    const int t = i / kP1, r = i % kP1, ic = r / (G::kQ1 * G::kQ1), yy = (r / G::kQ1) % G::kQ1, xx = r % G::kQ1;
    float acc = 0.0f;
    for (int oc = 0; oc < G::kC2; ++oc) {
      const float* gp = s_d2 + t * kA2 + oc * G::kO2 * G::kO2;
      const float* wp = s_w2 + (oc * G::kC1 + ic) * kTaps;
      // Unrolled: every tap is its own instruction, the lanes outside the plane predicated off
      // (no lane runs ahead of its warp through a loop the others skip).
#pragma unroll
      for (int kh = 0; kh < kKernel; ++kh) {
        const int sy = yy - kh;
#pragma unroll
        for (int kw = 0; kw < kKernel; ++kw) {
          const int sx = xx - kw;
          if (sy >= 0 && sy < G::kO2 && sx >= 0 && sx < G::kO2) acc += gp[sy * G::kO2 + sx] * wp[kh * kKernel + kw];
        }
      }
    }
    dp1[(n0 + t) * kP1 + r] = acc;
  }
}

template <int TILE, Act A, Pool PL>
__global__ void __launch_bounds__(kThreads) net_backward_data_kernel(const float* __restrict__ g3, NetParams p, NetSaved s, NetGrads d,
                                         int64_t N, int J3, float slope) {
  LF_DYNAMIC_SHARED(float, smem);
  float* s_g3 = smem;                    // (TILE, J3)
  float* s_g2 = s_g3 + TILE * kMaxJ;     // (TILE, 84)
  float* s_g1 = s_g2 + TILE * G::kJ2;    // (TILE, 120)
  float* s_df = s_g1 + TILE * G::kJ1;    // (TILE, 400): dL/d pool2
  float* s_d2 = s_df + TILE * G::kF;     // (TILE, 16, 10, 10): dL/d conv2 output
  float* s_w2 = s_d2 + TILE * kA2;       // (16, 6, 25)
  const int64_t n0 = blockIdx.x * int64_t{TILE};
  const int64_t valid = min(int64_t{TILE}, N - n0);
  const int tid = threadIdx.x, nt = blockDim.x;

  stage_backward_inputs<TILE>(g3, p, n0, valid, J3, s_g3, s_w2);
  __syncthreads();
  block_linear_backward<TILE, A>(s_g3, J3, p.f3w, G::kJ2, s.h2, n0, N, s_g2, slope);
  block_linear_backward<TILE, A>(s_g2, G::kJ2, p.f2w, G::kJ1, s.h1, n0, N, s_g1, slope);
  block_linear_backward<TILE, A>(s_g1, G::kJ1, p.f1w, G::kF, nullptr, n0, N, s_df, slope);
  for (int i = tid; i < valid * G::kJ2; i += nt) d.g2[n0 * G::kJ2 + i] = s_g2[i];
  for (int i = tid; i < valid * G::kJ1; i += nt) d.g1[n0 * G::kJ1 + i] = s_g1[i];
  pool2_act_backward<TILE, A, PL>(s_df, s, d, n0, N, s_d2, slope);
  __syncthreads();
  conv2_input_grad(s_d2, s_w2, n0, valid, d.dp1);
}

// The gradient of one conv output channel (taps ic*25 + kh*5 + kw, then the bias) summed over a
// chunk of images. Thread (tap, group) sums the pixels p = group, group + G, ...; the groups are
// then added in order. CONV1: the output gradient is conv1's pool + activation backward of dp1 and
// act1, the input the zero-padded image; else (conv2) dpre2 and p1.
template <bool CONV1, Act A, Pool PL>
__device__ void conv_weight_job(const NetJobArgs& a, int oc, int64_t n0, int64_t n1, float* smem, float* out_w,
                                float* out_b) {
  constexpr int IC = CONV1 ? 1 : G::kC1;
  constexpr int HP = CONV1 ? G::kPadded : G::kQ1;  // the staged (padded) input plane
  constexpr int HO = CONV1 ? G::kO1 : G::kO2;      // the output plane
  constexpr int T = IC * kTaps + 1;
  const int groups = max(1, static_cast<int>(blockDim.x) / T);
  const int tap = threadIdx.x / groups, grp = threadIdx.x % groups;
  const bool active = tap < T;
  float* s_x = smem;                  // (IC, HP, HP)
  float* s_g = s_x + IC * HP * HP;    // (HO, HO)
  float* s_red = s_g + HO * HO;       // (blockDim.x)
  const int ic = tap / kTaps, kh = (tap % kTaps) / kKernel, kw = tap % kKernel;
  float acc = 0.0f;
  for (int64_t n = n0; n < n1; ++n) {
    __syncthreads();
    for (int i = threadIdx.x; i < IC * HP * HP; i += blockDim.x) {
      if (CONV1) {
        const int yy = i / HP - a.pad, xx = i % HP - a.pad;
        s_x[i] = (yy >= 0 && yy < a.H && xx >= 0 && xx < a.W) ? a.x[(n * a.H + yy) * a.W + xx] : 0.0f;
      } else {
        s_x[i] = a.p1[n * kP1 + i];
      }
    }
    for (int i = threadIdx.x; i < HO * HO; i += blockDim.x) {
      if (CONV1) {
        const int yy = i / HO, xx = i % HO;
        const float gq = a.dp1[n * kP1 + (oc * G::kQ1 + yy / 2) * G::kQ1 + xx / 2];
        s_g[i] = act_pool_backward_at<A, PL>(gq, a.act1 + n * kA1 + oc * HO * HO, HO, yy, xx, true, a.slope);
      } else {
        s_g[i] = a.dpre2[n * kA2 + oc * HO * HO + i];
      }
    }
    __syncthreads();
    if (active) {
      if (tap == T - 1) {
        for (int q = grp; q < HO * HO; q += groups) acc += s_g[q];
      } else {
        const float* xp = s_x + ic * HP * HP + kh * HP + kw;
        for (int q = grp; q < HO * HO; q += groups) acc += s_g[q] * xp[(q / HO) * HP + q % HO];
      }
    }
  }
  s_red[threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.x < T) {
    float s = 0.0f;
    for (int g = 0; g < groups; ++g) s += s_red[threadIdx.x * groups + g];
    if (threadIdx.x == T - 1)
      out_b[oc] = s;
    else
      out_w[oc * IC * kTaps + threadIdx.x] = s;
  }
}

// Rows j0 .. j0 + R of a linear layer's weight gradient dW[j][k] = sum_n g[n][j] in[n][k], with
// their bias gradient as a column k = K of ones, summed over a chunk of images in order. Thread i
// owns entries i, i + blockDim.x, ... (at most kFcEntries / blockDim.x of them).
constexpr int kFcEntries = 4096;
constexpr int kFcStage = 8;  // images staged at a time
__device__ void fc_weight_job(const float* __restrict__ g, int J, const float* __restrict__ in, int K, int j0, int R,
                              int64_t n0, int64_t n1, float* smem, float* out_w, float* out_b) {
  constexpr int kPer = kFcEntries / 256;
  const int rows = min(R, J - j0), E = rows * (K + 1);
  float* s_g = smem;                     // (kFcStage, rows)
  float* s_in = s_g + kFcStage * R;      // (kFcStage, K)
  float acc[kPer];
#pragma unroll
  for (int u = 0; u < kPer; ++u) acc[u] = 0.0f;
  for (int64_t b0 = n0; b0 < n1; b0 += kFcStage) {
    const int nb = static_cast<int>(min(int64_t{kFcStage}, n1 - b0));
    __syncthreads();
    for (int i = threadIdx.x; i < nb * rows; i += blockDim.x) s_g[i] = g[(b0 + i / rows) * J + j0 + i % rows];
    for (int i = threadIdx.x; i < nb * K; i += blockDim.x) s_in[i] = in[(b0 + i / K) * K + i % K];
    __syncthreads();
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const int e = threadIdx.x + u * blockDim.x;
      if (e < E) {
        const int r = e / (K + 1), k = e % (K + 1);
        for (int b = 0; b < nb; ++b) acc[u] += s_g[b * rows + r] * (k < K ? s_in[b * K + k] : 1.0f);
      }
    }
  }
#pragma unroll
  for (int u = 0; u < kPer; ++u) {
    const int e = threadIdx.x + u * blockDim.x;
    if (e < E) {
      const int r = e / (K + 1), k = e % (K + 1);
      if (k < K)
        out_w[(int64_t)(j0 + r) * K + k] = acc[u];
      else
        out_b[j0 + r] = acc[u];
    }
  }
}

template <Act A, Pool PL>
__global__ void __launch_bounds__(kThreads, 2) net_weight_grad_kernel(NetJobArgs a, float* __restrict__ partial, int64_t N, int64_t chunk) {
  LF_DYNAMIC_SHARED(float, smem);
  const NetLayout L = net_layout(a.J3);
  const int64_t n0 = blockIdx.x * chunk, n1 = min(N, n0 + chunk);
  float* out = partial + blockIdx.x * L.total;
  int job = blockIdx.y;
  if (job < G::kC1) return conv_weight_job<true, A, PL>(a, job, n0, n1, smem, out + L.w1, out + L.b1);
  job -= G::kC1;
  if (job < G::kC2) return conv_weight_job<false, A, PL>(a, job, n0, n1, smem, out + L.w2, out + L.b2);
  job -= G::kC2;
  const int jobs1 = (G::kJ1 + kNetFcRows - 1) / kNetFcRows, jobs2 = (G::kJ2 + kNetFcRows - 1) / kNetFcRows;
  if (job < jobs1)
    return fc_weight_job(a.g1, G::kJ1, a.p2, G::kF, job * kNetFcRows, kNetFcRows, n0, n1, smem, out + L.f1w, out + L.f1b);
  job -= jobs1;
  if (job < jobs2)
    return fc_weight_job(a.g2, G::kJ2, a.h1, G::kJ1, job * kNetFcRows, kNetFcRows, n0, n1, smem, out + L.f2w, out + L.f2b);
  job -= jobs2;
  fc_weight_job(a.g3, a.J3, a.h2, G::kJ2, job * kNetFcRows, kNetFcRows, n0, n1, smem, out + L.f3w, out + L.f3b);
}

// Entry i of the parameters' gradients = sum over chunks c of partial[c][i], in chunk order,
// written to the parameter tensor it belongs to; the layout's padding between parts is skipped.
__global__ void __launch_bounds__(kThreads) net_reduce_kernel(const float* __restrict__ partial, NetGradOut out, NetLayout L, int64_t chunks) {
  const int64_t start[10] = {L.w1, L.b1, L.w2, L.b2, L.f1w, L.f1b, L.f2w, L.f2b, L.f3w, L.f3b};
  const int64_t size[10] = {G::kC1 * kTaps, G::kC1, G::kC2 * G::kC1 * kTaps, G::kC2, G::kJ1 * G::kF, G::kJ1,
                            G::kJ2 * G::kJ1, G::kJ2, L.J3 * G::kJ2, L.J3};
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < L.total; i += int64_t{blockDim.x} * gridDim.x) {
    // The parameter i falls in: a fully unrolled scan, so that start[] and out.p[] are only ever
    // indexed by constants and stay in registers (a run-time index puts them on the stack).
    float* dst = nullptr;
#pragma unroll
    for (int k = 0; k < 10; ++k)
      if (i >= start[k] && i < start[k] + size[k]) dst = out.p[k] + (i - start[k]);
    if (!dst) continue;  // padding
    float s = 0.0f;
    for (int64_t c = 0; c < chunks; ++c) s += partial[c * L.total + i];
    *dst = s;
  }
}

template <class Kernel>
cudaError_t allow_shared(Kernel kernel, size_t bytes) {
  if (bytes <= static_cast<size_t>(kSharedBytes)) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

template <int TILE, bool SAVE, typename In, Act A, Pool PL>
cudaError_t forward_tile(const In* x, float mean, float std, const NetParams& p, float* logits, const NetSaved& s,
                         int64_t N, int64_t H, int64_t W, int64_t pad, int64_t J3, float slope, cudaStream_t stream) {
  auto kernel = net_forward_kernel<TILE, SAVE, In, A, PL>;
  const size_t bytes = sizeof(float) * forward_smem_floats(TILE);
  cudaError_t err = allow_shared(kernel, bytes);
  if (err != cudaSuccess) return err;
  const unsigned int blocks = static_cast<unsigned int>((N + TILE - 1) / TILE);
  LF_LAUNCH(kernel, blocks, kThreads, bytes, stream)(x, mean, std, p, logits, s, N, static_cast<int>(H),
                                                       static_cast<int>(W), static_cast<int>(pad), static_cast<int>(J3),
                                                       slope);
  return cudaGetLastError();
}

template <int TILE, Act A, Pool PL>
cudaError_t backward_data(const float* g3, const NetParams& p, const NetSaved& s, const NetGrads& d, int64_t N,
                          int64_t J3, float slope, cudaStream_t stream) {
  const auto kernel = net_backward_data_kernel<TILE, A, PL>;
  const size_t bytes = sizeof(float) * backward_smem_floats(TILE);
  cudaError_t err = allow_shared(kernel, bytes);
  if (err != cudaSuccess) return err;
  LF_LAUNCH(kernel, static_cast<unsigned int>((N + TILE - 1) / TILE), kThreads, bytes, stream)(
      g3, p, s, d, N, static_cast<int>(J3), slope);
  return cudaGetLastError();
}

template <bool SAVE, typename In>
cudaError_t forward(const In* x, float mean, float std, const NetParams& p, float* logits, const NetSaved& s,
                    int64_t N, int64_t H, int64_t W, int64_t pad, int64_t J3, const Variant& v, cudaStream_t stream) {
  // One image a block while that leaves most SMs busy; 8 (the weights staged once for 8 images,
  // the fc weights used 4 times a load) for large batches.
  cudaError_t err = cudaSuccess;
  with_variant(v, [&](auto a, auto pool) {
    constexpr Act A = decltype(a)::value;
    constexpr Pool PL = decltype(pool)::value;
    if (net_forward_tile(N) == 1)
      err = forward_tile<1, SAVE, In, A, PL>(x, mean, std, p, logits, s, N, H, W, pad, J3, v.slope, stream);
    else
      err = forward_tile<8, SAVE, In, A, PL>(x, mean, std, p, logits, s, N, H, W, pad, J3, v.slope, stream);
  });
  return err;
}

}  // namespace

cudaError_t launch_net_forward(const float* x, const uint8_t* x_u8, float mean, float std, const NetParams& p,
                               float* logits, const NetSaved* saved, int64_t N, int64_t H, int64_t W, int64_t pad,
                               int64_t J3, const Variant& v, cudaStream_t stream) {
  if (N == 0) return cudaSuccess;
  const NetSaved none{};
  if (saved) {
    if (x_u8) return cudaErrorInvalidValue;  // training takes float32 images (gather_normalize)
    return forward<true>(x, mean, std, p, logits, *saved, N, H, W, pad, J3, v, stream);
  }
  if (x_u8) return forward<false>(x_u8, mean, std, p, logits, none, N, H, W, pad, J3, v, stream);
  return forward<false>(x, mean, std, p, logits, none, N, H, W, pad, J3, v, stream);
}

cudaError_t launch_net_backward(const float* g3, const float* x, const NetParams& p, const NetSaved& s,
                                const NetGrads& d, float* partial, const NetGradOut& out, int64_t N, int64_t H, int64_t W,
                                int64_t pad, int64_t J3, const Variant& v, cudaStream_t stream) {
  if (N == 0) return cudaSuccess;
  const NetJobArgs a{x, s.act1, s.p1, s.p2, s.h1, s.h2, d.dp1, d.dpre2, d.g1, d.g2, g3,
                     static_cast<int>(H), static_cast<int>(W), static_cast<int>(pad), static_cast<int>(J3), v.slope};
  const int64_t chunk = grad_chunk(N), chunks = grad_chunks(N);
  const size_t bytes = sizeof(float) * net_weight_grad_smem_floats();
  cudaError_t err = cudaSuccess;
  with_variant(v, [&](auto act, auto pool) {
    constexpr Act A = decltype(act)::value;
    constexpr Pool PL = decltype(pool)::value;
    err = net_backward_tile(N) == 1 ? backward_data<1, A, PL>(g3, p, s, d, N, J3, v.slope, stream)
                                    : backward_data<4, A, PL>(g3, p, s, d, N, J3, v.slope, stream);
    if (err != cudaSuccess) return;
    const auto grad_kernel = net_weight_grad_kernel<A, PL>;
    LF_LAUNCH(grad_kernel, dim3(static_cast<unsigned int>(chunks), static_cast<unsigned int>(net_jobs(J3))), kThreads,
              bytes, stream)(a, partial, N, chunk);
    err = cudaGetLastError();
  });
  if (err != cudaSuccess) return err;
  const NetLayout L = net_layout(J3);
  LF_LAUNCH(net_reduce_kernel, grid_for(L.total), kThreads, 0, stream)(partial, out, L, chunks);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace lenet_fast
