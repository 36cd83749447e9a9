// The CPU kernels for any CPU of the target architecture (x86-64: SSE2), the fallback build.
#include <cstdint>
#include <cstring>

#include "kernels_impl.h"

namespace lenet_fast {
namespace cpu {

const Kernels* kernels_baseline() {
  static const Kernels k = make_kernels<8>("baseline");
  return &k;
}

}  // namespace cpu
}  // namespace lenet_fast
