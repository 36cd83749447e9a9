// The simulated CUDA build's flavour of the CUDA glue (ops/cuda/context.h), and its op library:
// lenet_fast's schemas (read from the dispatcher, so lenet_fast must be loaded first) under the
// namespace lenet_fast_cudasim, implemented for CPU tensors by the CUDA glue and the CUDA kernels
// running under this harness; plus two controls for the tests. Built by tests/cudasim.py from the
// same ops/cuda/*.cpp and kernels/cuda/*.cu a CUDA build compiles, with this file in place of
// ops/cuda/device_cuda.cpp. The profiling build (LENET_FAST_CUDASIM_PROFILE) is the same library
// under the namespace lenet_fast_cudaprof, with the profiler's controls (profile.cpp).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <limits>
#include <string>
#include <vector>

#include "ops/cuda/context.h"

#if defined(LENET_FAST_CUDASIM_PROFILE)
#include "cudasim/device.h"  // the profiler's controls
#define LF_SIM_LIBRARY lenet_fast_cudaprof
#else
#define LF_SIM_LIBRARY lenet_fast_cudasim
#endif
#define LF_SIM_STR2(x) #x
#define LF_SIM_STR(x) LF_SIM_STR2(x)
// TORCH_LIBRARY pastes its namespace argument: one more level, so that the macro expands first.
#define LF_SIM_TORCH_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)
#define LF_SIM_TORCH_LIBRARY_IMPL(ns, k, m) TORCH_LIBRARY_IMPL(ns, k, m)

namespace lenet_fast {
namespace cuda {

at::DeviceType device_type() { return at::kCPU; }

cudaStream_t stream() { return nullptr; }

// Outputs start as NaN, so that an element no kernel writes cannot pass for a result.
at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  return at::empty(sizes, options).fill_(std::numeric_limits<float>::quiet_NaN());
}

void check_launch(const char* op, cudaError_t err) {
  if (err == cudaSuccess) return;
  TORCH_CHECK(false, "lenet_fast::", op, ": CUDA error: ", cudaGetErrorString(err), " (cudasim: ",
              cudasim::last_error_detail(), ")");
}

const char* op_namespace() { return LF_SIM_STR(LF_SIM_LIBRARY); }

}  // namespace cuda
}  // namespace lenet_fast

namespace {

void set_order(int64_t order, int64_t seed) {
  cudasim::set_order(order == 1 ? cudasim::Order::Reverse : order == 2 ? cudasim::Order::Shuffle
                                                                        : cudasim::Order::Forward,
                     static_cast<unsigned>(seed));
}

std::vector<int64_t> stats() {
  return {cudasim::stats().launches.load(), cudasim::stats().blocks.load(), cudasim::stats().threads.load()};
}

#if defined(LENET_FAST_CUDASIM_PROFILE)
void profile_start(int64_t max_blocks) { cudasim::profile::start(nullptr, max_blocks); }
void profile_label(const std::string& label) { cudasim::profile::set_label(label.c_str()); }
std::string profile_stop() { return cudasim::profile::stop(); }
#endif

}  // namespace

LF_SIM_TORCH_LIBRARY(LF_SIM_LIBRARY, m) {
  int defined = 0;
  for (const c10::OperatorName& name : c10::Dispatcher::singleton().getAllOpNames()) {
    if (name.name.rfind("lenet_fast::", 0) != 0 || name.name.rfind("lenet_fast::triton_", 0) == 0) continue;
    const auto op = c10::Dispatcher::singleton().findSchema(name);
    std::string schema = c10::toString(op->schema());
    schema.replace(0, std::string("lenet_fast::").size(), LF_SIM_STR(LF_SIM_LIBRARY) "::");
    m.def(schema.c_str());
    ++defined;
  }
  TORCH_CHECK(defined > 0, LF_SIM_STR(LF_SIM_LIBRARY) ": load lenet_fast (import lenet_fast) before the simulated build");
  m.def("_set_order(int order, int seed) -> ()", &set_order);
  m.def("_stats() -> int[]", &stats);
#if defined(LENET_FAST_CUDASIM_PROFILE)
  m.def("_profile_start(int max_blocks) -> ()", &profile_start);
  m.def("_profile_label(str label) -> ()", &profile_label);
  m.def("_profile_stop() -> str", &profile_stop);
#endif
}

LF_SIM_TORCH_LIBRARY_IMPL(LF_SIM_LIBRARY, CPU, m) { lenet_fast::cuda::register_ops(m); }
