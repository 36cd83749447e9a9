// Compiled only into CPU-only builds: every lenet_fast op gets a CUDA kernel that says why it
// cannot run, instead of the dispatcher's generic "could not run ... with arguments from the
// 'CUDA' backend". The list of ops is the schemas themselves: ops.cpp calls this right after
// defining them, so no second list has to be kept in step.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <string>

namespace lenet_fast {
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

void register_no_cuda_kernels() {
  static torch::Library lib(torch::Library::IMPL, "lenet_fast", c10::DispatchKey::CUDA, __FILE__,
                            __LINE__);
  for (const c10::OperatorName& name : c10::Dispatcher::singleton().getAllOpNames()) {
    if (name.name.rfind("lenet_fast::", 0) != 0) continue;
    lib.impl(name.name.substr(std::string("lenet_fast::").size()).c_str(),
             torch::CppFunction::makeFromBoxedFunction<&no_cuda_kernels>());
  }
}

}  // namespace lenet_fast
