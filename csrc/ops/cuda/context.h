// What the CUDA glue shares: the ops' torch side (checks, allocation, device guard, stream), on
// top of the torch-free launchers (kernels/cuda/launchers.h). The few things that differ between a
// CUDA build and the simulated one (tests/cudasim.py) are the functions below, defined by whichever
// flavour file the build compiles: ops/cuda/device_cuda.cpp (CUDA tensors on the current stream) or
// cudasim/library.cpp (CPU tensors, the kernels run under the CPU harness, outputs start as NaN so
// that an element no kernel writes cannot pass for a result).
#pragma once

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>

#include <cstdint>

#include "kernels/cuda/launchers.h"
#include "ops/checks.h"

namespace lenet_fast {
namespace cuda {

// --- defined by the flavour ---
at::DeviceType device_type();  // of the tensors these ops take: CUDA, or CPU in the simulated build
cudaStream_t stream();         // the stream kernels launch on
at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options);
void check_launch(const char* op, cudaError_t err);  // a launcher's error as an exception naming the op
const char* op_namespace();    // where the whole-network composition finds the per-layer ops

// The tensor's device is current while the op runs (a no-op for the simulated build's CPU tensors).
struct Guard {
  explicit Guard(const at::Tensor& t) : guard(t.device()) {}
  c10::DeviceGuard guard;
};

inline const float* ptr(const at::Tensor& t) { return t.numel() ? t.data_ptr<float>() : nullptr; }
inline float* mut(at::Tensor& t) { return t.numel() ? t.data_ptr<float>() : nullptr; }

// Launches conv5x5_forward_kernel (plain, or fused with the activation and pooling of v) after the
// checks a CUDA launch of it needs (ops/cuda/conv.cpp).
void conv_forward(const char* op, const float* x, const float* w, const float* bias, float* y, float* act,
                  int64_t N, int64_t IC, int64_t H, int64_t W, int64_t OC, int64_t pad, bool fused,
                  const Variant& v = Variant{});

at::Tensor gather_normalize_cuda(const at::Tensor& images, const at::Tensor& index, double mean, double std);

// Each family's op implementations, registered on the flavour's library (CUDA, or the simulated
// build's CPU key).
void register_conv(torch::Library& m);
void register_linear(torch::Library& m);
void register_pool_act(torch::Library& m);
void register_data(torch::Library& m);
void register_lenet5(torch::Library& m);

inline void register_ops(torch::Library& m) {
  register_conv(m);
  register_linear(m);
  register_pool_act(m);
  register_data(m);
  register_lenet5(m);
}

}  // namespace cuda
}  // namespace lenet_fast
