// Picks the CPU kernel table once: the best ISA this CPU supports, unless LENET_FAST_CPU_ISA
// names another ("baseline" or "avx2"), which tests use to cover every compiled variant.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels.h"

namespace lenet_fast {
namespace cpu {
namespace {

bool cpu_has_avx2() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

const Kernels* by_name(const char* name) {
  if (std::strcmp(name, "avx2") == 0) return (kernels_avx2() && cpu_has_avx2()) ? kernels_avx2() : nullptr;
  if (std::strcmp(name, "baseline") == 0) return kernels_baseline();
  return nullptr;
}

const Kernels* best() {
  if (const char* env = std::getenv("LENET_FAST_CPU_ISA")) {
    if (*env) {
      if (const Kernels* k = by_name(env)) return k;
      // An unknown or unsupported request falls back to detection rather than failing an import;
      // lenet_fast.info shows which table is active.
    }
  }
  const Kernels* k = by_name("avx2");
  return k ? k : kernels_baseline();
}

std::atomic<const Kernels*> g_active{nullptr};

}  // namespace

const Kernels& kernels() {
  const Kernels* k = g_active.load(std::memory_order_acquire);
  if (!k) {
    k = best();
    g_active.store(k, std::memory_order_release);
  }
  return *k;
}

bool set_isa(const char* name) {
  const Kernels* k = by_name(name);
  if (!k) return false;
  g_active.store(k, std::memory_order_release);
  return true;
}

const char* available_isas() {
  static const std::string s = cpu_has_avx2() && kernels_avx2() ? "avx2,baseline" : "baseline";
  return s.c_str();
}

}  // namespace cpu
}  // namespace lenet_fast
