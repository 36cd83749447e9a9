// CUDA elementwise ops: tanh and its backward, 2x2/2 average pooling and its backward, and the
// fused pool + tanh backward of conv5x5_tanh_pool. Grid-stride loops with 64-bit indices; the
// arithmetic is kernel_math.h's, shared with the CPU kernels.
#include <torch/library.h>

#include "launch.h"
#include "kernels.cuh"

namespace lenet_fast {
namespace cuda {
namespace {

__global__ void tanh_forward_kernel(const float* __restrict__ x,  // (n) any layout, contiguous
                                    float* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{blockDim.x} * gridDim.x)
    y[i] = tanh_f32(x[i]);
}

__global__ void tanh_backward_kernel(const float* __restrict__ g, const float* __restrict__ y,
                                     float* __restrict__ dx, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{blockDim.x} * gridDim.x)
    dx[i] = tanh_backward_f32(g[i], y[i]);
}

__global__ void avg_pool_forward_kernel(const float* __restrict__ x,  // (planes, H, W)
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

// mode 0: avg pool backward; mode 1: fused tanh + pool backward using act.
__global__ void pool_backward_kernel(const float* __restrict__ g,    // (planes, H/2, W/2)
                                     const float* __restrict__ act,  // (planes, H, W) or null
                                     float* __restrict__ dx,         // (planes, H, W)
                                     int64_t planes, int64_t H, int64_t W) {
  const int64_t Hq = H / 2, Wq = W / 2, n = planes * H * W;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{blockDim.x} * gridDim.x) {
    const int64_t xx = i % W, yy = (i / W) % H, p = i / (W * H);
    const bool in = yy < 2 * Hq && xx < 2 * Wq;
    const float gq = in ? g[(p * Hq + yy / 2) * Wq + xx / 2] : 0.0f;
    dx[i] = act ? tanh_pool_backward_f32(gq, act[i], in) : (in ? 0.25f * gq : 0.0f);
  }
}

}  // namespace

void launch_tanh_pool_backward(const float* g, const float* act, float* d, int64_t planes,
                               int64_t H, int64_t W) {
  const int64_t n = planes * H * W;
  if (n == 0) return;
  pool_backward_kernel<<<grid_for(n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      g, act, d, planes, H, W);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

namespace {

at::Tensor tanh_pool_backward_cuda(const at::Tensor& grad, const at::Tensor& act) {
  const char* op = "tanh_pool_backward";
  check_tanh_pool_backward(op, grad, act, at::kCUDA);
  const c10::cuda::CUDAGuard guard(act.device());
  const at::Tensor gc = grad.contiguous(), ac = act.contiguous();
  at::Tensor d = at::empty(act.sizes(), act.options());
  launch_tanh_pool_backward(gc.data_ptr<float>(), ac.data_ptr<float>(), d.data_ptr<float>(),
                            act.size(0) * act.size(1), act.size(2), act.size(3));
  return d;
}

at::Tensor avg_pool2x2_cuda(const at::Tensor& x) {
  const char* op = "avg_pool2x2";
  check_float32(op, "x", x);
  check_devices(op, at::kCUDA, {{"x", &x}});
  check_pool_input(op, x);
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty({N, C, H / 2, W / 2}, x.options());
  if (y.numel() == 0) return y;
  avg_pool_forward_kernel<<<grid_for(y.numel()), kThreads, 0,
                            c10::cuda::getCurrentCUDAStream()>>>(xc.data_ptr<float>(),
                                                                 y.data_ptr<float>(), N * C, H, W);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

at::Tensor avg_pool2x2_backward_cuda(const at::Tensor& grad, int64_t H, int64_t W) {
  const char* op = "avg_pool2x2_backward";
  check_avg_pool_backward(op, grad, H, W, at::kCUDA);
  const c10::cuda::CUDAGuard guard(grad.device());
  const at::Tensor gc = grad.contiguous();
  at::Tensor dx = at::empty({grad.size(0), grad.size(1), H, W}, grad.options());
  launch_tanh_pool_backward(gc.data_ptr<float>(), nullptr, dx.data_ptr<float>(),
                            grad.size(0) * grad.size(1), H, W);
  return dx;
}

at::Tensor tanh_cuda(const at::Tensor& x) {
  const char* op = "tanh";
  check_float32(op, "x", x);
  check_devices(op, at::kCUDA, {{"x", &x}});
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty(x.sizes(), x.options());
  if (y.numel() == 0) return y;
  tanh_forward_kernel<<<grid_for(y.numel()), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      xc.data_ptr<float>(), y.data_ptr<float>(), y.numel());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

at::Tensor tanh_backward_cuda(const at::Tensor& grad, const at::Tensor& y) {
  const char* op = "tanh_backward";
  check_tanh_backward(op, grad, y, at::kCUDA);
  const c10::cuda::CUDAGuard guard(y.device());
  const at::Tensor gc = grad.contiguous(), yc = y.contiguous();
  at::Tensor dx = at::empty(y.sizes(), y.options());
  if (dx.numel() == 0) return dx;
  tanh_backward_kernel<<<grid_for(dx.numel()), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      gc.data_ptr<float>(), yc.data_ptr<float>(), dx.data_ptr<float>(), dx.numel());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return dx;
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_fast, CUDA, m) {
  m.impl("tanh_pool_backward", &tanh_pool_backward_cuda);
  m.impl("avg_pool2x2", &avg_pool2x2_cuda);
  m.impl("avg_pool2x2_backward", &avg_pool2x2_backward_cuda);
  m.impl("tanh", &tanh_cuda);
  m.impl("tanh_backward", &tanh_backward_cuda);
}

}  // namespace cuda
}  // namespace lenet_fast
