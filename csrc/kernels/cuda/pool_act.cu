// CUDA elementwise kernels and their launchers: the activation (tanh or a variant's) and its
// backward, 2x2/2 average pooling and its backward, and the fused pool + activation backward of
// conv5x5_act_pool (average or max pooling). Grid-stride loops with
// 64-bit indices; the arithmetic is kernel_math.h's, shared with the CPU kernels. No torch here:
// the file builds under nvcc and under the CPU harness (csrc/cudasim/).
#include "../kernel_math.h"
#include "device.h"
#include "launchers.h"

namespace lenet_fast {
namespace cuda {
namespace {

template <Act A>
__global__ void __launch_bounds__(kThreads) act_forward_kernel(const float* __restrict__ x,  // (n) any layout, contiguous
                                   float* __restrict__ y, int64_t n, float slope) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{blockDim.x} * gridDim.x)
    y[i] = act_f32<A>(x[i], slope);
}

template <Act A>
__global__ void __launch_bounds__(kThreads) act_backward_kernel(const float* __restrict__ g, const float* __restrict__ y,
                                    float* __restrict__ dx, int64_t n, float slope) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{blockDim.x} * gridDim.x)
    dx[i] = act_backward_f32<A>(g[i], y[i], slope);
}

__global__ void __launch_bounds__(kThreads) avg_pool_forward_kernel(const float* __restrict__ x,  // (planes, H, W)
                                        float* __restrict__ y,        // (planes, H/2, W/2)
                                        int64_t planes, int64_t H, int64_t W) {
  const int64_t Hq = H / 2, Wq = W / 2, n = planes * Hq * Wq;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{blockDim.x} * gridDim.x) {
    const int64_t qx = i % Wq, qy = (i / Wq) % Hq, p = i / (Wq * Hq);
    const float* r0 = x + (p * H + 2 * qy) * W + 2 * qx;
    y[i] = avg4(r0[0], r0[1], r0[W], r0[W + 1]);
  }
}

// The pool's backward: through the activation A from act when act is given (the fused op's),
// else the plain average-pool backward (PL average, act null).
template <Act A, Pool PL>
__global__ void __launch_bounds__(kThreads) pool_backward_kernel(const float* __restrict__ g,    // (planes, H/2, W/2)
                                     const float* __restrict__ act,  // (planes, H, W) or null
                                     float* __restrict__ dx,         // (planes, H, W)
                                     int64_t planes, int64_t H, int64_t W, float slope) {
  const int64_t Hq = H / 2, Wq = W / 2, n = planes * H * W;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{blockDim.x} * gridDim.x) {
    const int64_t xx = i % W, yy = (i / W) % H, p = i / (W * H);
    const bool in = yy < 2 * Hq && xx < 2 * Wq;
    const float gq = in ? g[(p * Hq + yy / 2) * Wq + xx / 2] : 0.0f;
    if (!act) {
      dx[i] = in ? pool_grad<Pool::kAvg>(gq, 0, 0) : 0.0f;
      continue;
    }
    dx[i] = act_pool_backward_at<A, PL>(gq, act + p * H * W, static_cast<int>(W), static_cast<int>(yy),
                                        static_cast<int>(xx), in, slope);
  }
}

}  // namespace

cudaError_t launch_act_pool_backward(const float* g, const float* act, float* dpre, int64_t planes, int64_t H,
                                     int64_t W, const Variant& v, cudaStream_t stream) {
  const int64_t n = planes * H * W;
  if (n == 0) return cudaSuccess;
  if (!act) {
    const auto kernel = pool_backward_kernel<Act::kNone, Pool::kAvg>;
    LF_LAUNCH(kernel, grid_for(n), kThreads, 0, stream)(g, act, dpre, planes, H, W, v.slope);
    return cudaGetLastError();
  }
  with_variant(v, [&](auto a, auto pool) {
    const auto kernel = pool_backward_kernel<decltype(a)::value, decltype(pool)::value>;
    LF_LAUNCH(kernel, grid_for(n), kThreads, 0, stream)(g, act, dpre, planes, H, W, v.slope);
  });
  return cudaGetLastError();
}

cudaError_t launch_avg_pool_forward(const float* x, float* y, int64_t planes, int64_t H, int64_t W,
                                    cudaStream_t stream) {
  const int64_t n = planes * (H / 2) * (W / 2);
  if (n == 0) return cudaSuccess;
  LF_LAUNCH(avg_pool_forward_kernel, grid_for(n), kThreads, 0, stream)(x, y, planes, H, W);
  return cudaGetLastError();
}

cudaError_t launch_act_forward(const float* x, float* y, int64_t n, const Variant& v, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  with_act(v.act, [&](auto a) {
    const auto kernel = act_forward_kernel<decltype(a)::value>;
    LF_LAUNCH(kernel, grid_for(n), kThreads, 0, stream)(x, y, n, v.slope);
  });
  return cudaGetLastError();
}

cudaError_t launch_act_backward(const float* g, const float* y, float* dx, int64_t n, const Variant& v,
                                cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  with_act(v.act, [&](auto a) {
    const auto kernel = act_backward_kernel<decltype(a)::value>;
    LF_LAUNCH(kernel, grid_for(n), kThreads, 0, stream)(g, y, dx, n, v.slope);
  });
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace lenet_fast
