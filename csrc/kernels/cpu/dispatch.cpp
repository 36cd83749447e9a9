// Picks the CPU kernel table once: the best ISA this CPU supports, unless LENET_FAST_CPU_ISA
// names another ("avx512", "avx2" or "baseline"), which tests use to cover every compiled variant.
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

// x86-64-v4's AVX-512 subsets (and the OS saving the registers: __builtin_cpu_supports checks it).
bool cpu_has_avx512() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512cd");
#else
  return false;
#endif
}

const Kernels* by_name(const char* name) {
  if (std::strcmp(name, "avx512") == 0) return (kernels_avx512() && cpu_has_avx512()) ? kernels_avx512() : nullptr;
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
  for (const char* name : {"avx512", "avx2"})
    if (const Kernels* k = by_name(name)) return k;
  return kernels_baseline();
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
  static const std::string s = [] {
    std::string names;
    for (const char* name : {"avx512", "avx2"})
      if (by_name(name)) names += std::string(name) + ",";
    return names + "baseline";
  }();
  return s.c_str();
}

}  // namespace cpu
}  // namespace lenet_fast
