// Compiled only into CPU-only builds: every op gets a CUDA kernel that says why it cannot run,
// instead of the dispatcher's generic "could not run ... with arguments from the 'CUDA' backend".
#include <torch/library.h>

namespace {

void no_cuda_kernels(const c10::OperatorHandle& op, torch::jit::Stack*) {
  TORCH_CHECK(false, op.schema().name(),
              ": got CUDA tensors, but this build of lenet_fast has no CUDA kernels (it was "
              "built where nvcc or a CUDA build of torch was missing, or with "
              "LENET_FAST_FORCE_CPU=1). Reinstall with CUDA_HOME pointing at a CUDA toolkit: "
              "pip install --no-build-isolation --force-reinstall . ; or move the tensors to "
              "the CPU. `python -m lenet_fast.info` shows what was built.");
}

}  // namespace

TORCH_LIBRARY_IMPL(lenet_fast, CUDA, m) {
  for (const char* name :
       {"conv5x5", "conv5x5_tanh_pool", "conv5x5_backward_input", "conv5x5_backward_weight",
        "conv5x5_tanh_pool_backward_weight",
        "tanh_pool_backward", "avg_pool2x2", "avg_pool2x2_backward", "tanh", "tanh_backward",
        "linear", "linear_tanh", "linear_backward_input", "linear_backward_weight",
        "lenet5_forward", "gather_normalize"}) {
    m.impl(name, torch::CppFunction::makeFromBoxedFunction<&no_cuda_kernels>());
  }
}
