// lenet5_forward on the CPU: the whole network per block of images, so each thread carries a few
// images through every layer while their activations (about 6 KB per image) are still in L1/L2,
// and a batch of one costs one dispatch instead of five. One parallel region per call, blocks
// taken dynamically (parallel.h); a small batch stays on the calling thread.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <vector>

#include "ops/lenet5.h"
#include "ops/cpu/conv_pack.h"
#include "kernels/cpu/kernels.h"
#include "ops/cpu/parallel.h"

namespace lenet_fast {
namespace {

constexpr int64_t kBlock = 16;  // images per pass through the layers

at::Tensor lenet5_forward_cpu(const at::Tensor& x, const at::Tensor& w1, const at::Tensor& b1,
                              const at::Tensor& w2, const at::Tensor& b2, const at::Tensor& f1w,
                              const at::Tensor& f1b, const at::Tensor& f2w, const at::Tensor& f2b,
                              const at::Tensor& f3w, const at::Tensor& f3b, int64_t padding,
                              double mean, double std, c10::string_view activation, c10::string_view pooling, double negative_slope) {
  const char* op = "lenet5_forward";
  const Variant v = parse_variant(op, activation, pooling, negative_slope);
  const Lenet5Shape s = check_lenet5(op, x, {w1, b1, w2, b2, f1w, f1b, f2w, f2b, f3w, f3b}, padding, at::kCPU,
                                     /*x_may_be_uint8=*/true);
  check_lenet5_normalize(op, x, mean, std);
  if (x.scalar_type() == at::kByte) {  // normalised by gather_normalize's kernel, bit for bit
    static const auto normalize =
        c10::Dispatcher::singleton().findSchemaOrThrow("lenet_fast::gather_normalize", "")
            .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double, double)>();
    const at::Tensor xf = normalize.call(x, at::arange(x.size(0), x.options().dtype(at::kLong)), mean, std);
    return lenet5_forward_cpu(xf, w1, b1, w2, b2, f1w, f1b, f2w, f2b, f3w, f3b, padding, 0.0, 1.0, activation,
                              pooling, negative_slope);
  }
  const int64_t N = s.c1.N;
  at::Tensor y = at::empty({N, s.J3}, x.options());
  if (N == 0) return y;
  cpu::check_image_size(op, s.c1.IC, s.c1.H + 2 * padding, s.c1.W + 2 * padding);
  cpu::check_image_size(op, s.c2.IC, s.c2.H, s.c2.W);

  const at::Tensor xc = x.contiguous();
  const at::Tensor f1wc = f1w.contiguous(), f1bc = f1b.contiguous(), f2wc = f2w.contiguous(),
                   f2bc = f2b.contiguous(), f3wc = f3w.contiguous(), f3bc = f3b.contiguous();
  const cpu::PackedConv p1(w1, b1, s.c1.H + 2 * padding, s.c1.W + 2 * padding);
  const cpu::PackedConv p2(w2, b2, s.c2.H, s.c2.W);
  const int64_t in1 = s.c1.IC * s.c1.H * s.c1.W;                 // floats per image at each stage
  const int64_t out1 = s.c1.OC * (s.c1.Ho / 2) * (s.c1.Wo / 2);  // = conv2's input
  const int64_t scratch = std::max(cpu::conv_forward_scratch(s.c1.IC, s.c1.H + 2 * padding, s.c1.W + 2 * padding),
                                   cpu::conv_forward_scratch(s.c2.IC, s.c2.H, s.c2.W));

  struct Buffers {
    std::unique_ptr<float[]> a1, a2, h1, h2, pad;
  };
  const int64_t block = std::min(kBlock, N);  // a small batch allocates for itself, not for 16 images
  cpu::run_jobs((N + kBlock - 1) / kBlock, cpu::threads_for(N * cpu::lenet5_flops(s)),
                [&] {
                  return Buffers{cpu::scratch_buffer(block * out1), cpu::scratch_buffer(block * s.F),
                                 cpu::scratch_buffer(block * s.J1), cpu::scratch_buffer(block * s.J2),
                                 cpu::scratch_buffer(scratch)};
                },
                [&](int64_t j, Buffers& b) {
                  const int64_t n = j * kBlock, m = std::min(kBlock, N - n);
                  cpu::ConvForwardArgs c1 = cpu::forward_args(s.c1, p1, xc.data_ptr<float>() + n * in1);
                  c1.y = b.a1.get();
                  c1.fused = true;
                  c1.v = v;
                  cpu::ConvForwardArgs c2 = cpu::forward_args(s.c2, p2, b.a1.get());
                  c2.y = b.a2.get();
                  c2.fused = true;
                  c2.v = v;
                  const cpu::LinearArgs l1{b.a2.get(), f1wc.data_ptr<float>(), f1bc.data_ptr<float>(), b.h1.get(),
                                           s.F, s.J1, true, v};
                  const cpu::LinearArgs l2{b.h1.get(), f2wc.data_ptr<float>(), f2bc.data_ptr<float>(), b.h2.get(),
                                           s.J1, s.J2, true, v};
                  const cpu::LinearArgs l3{b.h2.get(), f3wc.data_ptr<float>(), f3bc.data_ptr<float>(),
                                           y.data_ptr<float>() + n * s.J3, s.J2, s.J3, false, v};
                  cpu::network_forward(cpu::kernels(), c1, c2, l1, l2, l3, 0, m, b.pad.get());
                });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_fast, CPU, m) { m.impl("lenet5_forward", &lenet5_forward_cpu); }

}  // namespace lenet_fast
