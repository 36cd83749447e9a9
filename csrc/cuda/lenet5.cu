// lenet5_forward on CUDA: the network's kernels launched back to back on the current stream,
// with the intermediate activations in temporary buffers (not yet a single fused kernel).
// NOTE: not yet run on a GPU (see README, "GPU status").
#include <torch/library.h>

#include "kernels.cuh"
#include "launch.h"

namespace lenet_fast {
namespace cuda {
namespace {

at::Tensor lenet5_forward_cuda(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                               const at::Tensor& w2, const at::Tensor& b2, const at::Tensor& f1w,
                               const at::Tensor& f1b, const at::Tensor& f2w,
                               const at::Tensor& f2b, const at::Tensor& f3w,
                               const at::Tensor& f3b, int64_t padding) {
  const char* op = "lenet5_forward";
  const Lenet5Shape s = check_lenet5(op, x, w1, b1, w2, b2, f1w, f1b, f2w, f2b, f3w, f3b, padding,
                                     at::kCUDA);
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t N = s.c1.N;
  at::Tensor y = at::empty({N, s.J3}, x.options());
  if (N == 0) return y;
  auto c = [](const at::Tensor& t) { return t.contiguous(); };
  const at::Tensor xc = c(x), w1c = c(w1), b1c = c(b1), w2c = c(w2), b2c = c(b2), f1wc = c(f1w),
                   f1bc = c(f1b), f2wc = c(f2w), f2bc = c(f2b), f3wc = c(f3w), f3bc = c(f3b);
  at::Tensor a1 = at::empty({N, s.c1.OC, s.c1.Ho / 2, s.c1.Wo / 2}, x.options());
  at::Tensor a2 = at::empty({N, s.F}, x.options());
  at::Tensor h1 = at::empty({N, s.J1}, x.options());
  at::Tensor h2 = at::empty({N, s.J2}, x.options());
  launch_conv_forward(op, xc.data_ptr<float>(), w1c.data_ptr<float>(), b1c.data_ptr<float>(),
                      a1.data_ptr<float>(), nullptr, N, s.c1.IC, s.c1.H, s.c1.W, s.c1.OC, padding,
                      true);
  launch_conv_forward(op, a1.data_ptr<float>(), w2c.data_ptr<float>(), b2c.data_ptr<float>(),
                      a2.data_ptr<float>(), nullptr, N, s.c2.IC, s.c2.H, s.c2.W, s.c2.OC, 0, true);
  launch_gemm(a2.data_ptr<float>(), s.F, 1, f1wc.data_ptr<float>(), 1, s.F, h1.data_ptr<float>(),
              N, s.J1, s.F, f1bc.data_ptr<float>(), true);
  launch_gemm(h1.data_ptr<float>(), s.J1, 1, f2wc.data_ptr<float>(), 1, s.J1,
              h2.data_ptr<float>(), N, s.J2, s.J1, f2bc.data_ptr<float>(), true);
  launch_gemm(h2.data_ptr<float>(), s.J2, 1, f3wc.data_ptr<float>(), 1, s.J2, y.data_ptr<float>(),
              N, s.J3, s.J2, f3bc.data_ptr<float>(), false);
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_fast, CUDA, m) { m.impl("lenet5_forward", &lenet5_forward_cuda); }

}  // namespace cuda
}  // namespace lenet_fast
