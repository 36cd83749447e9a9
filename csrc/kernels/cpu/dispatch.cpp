// Picks the CPU kernel table once: the best ISA this CPU supports, unless LENET_FAST_CPU_ISA
// names another ("avx512", "avx2" or "baseline"), which tests use to cover every compiled variant.
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>
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

// The CPU is asked first: kernels_avx512() and kernels_avx2() build their tables in code compiled
// for that ISA, which a CPU without it cannot run (an illegal instruction, not a nullptr).
const Kernels* by_name(const char* name) {
  if (std::strcmp(name, "avx512") == 0) return cpu_has_avx512() ? kernels_avx512() : nullptr;
  if (std::strcmp(name, "avx2") == 0) return cpu_has_avx2() ? kernels_avx2() : nullptr;
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

double cpu_fma_peak_gflops(int threads, double seconds) {
  const Kernels* k = kernels_baseline();
  for (const char* name : {"avx2", "avx512"})  // the widest this CPU runs, whatever is active
    if (const Kernels* t = by_name(name)) k = t;
  using clock = std::chrono::steady_clock;
  const auto secs = [](clock::time_point a, clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
  // Size the loop from a short run on this thread (~10 ms), then time all threads at once.
  int64_t iters = 1 << 16;
  for (;;) {
    const auto t0 = clock::now();
    k->fma_loop(iters);
    const double dt = secs(t0, clock::now());
    if (dt > 0.01 || iters > (int64_t{1} << 40)) {
      iters = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(iters) * seconds / std::max(dt, 1e-9)));
      break;
    }
    iters *= 4;
  }
  threads = std::max(threads, 1);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<double> flops(static_cast<size_t>(threads), 0.0);
  const auto work = [&](int t) {
    ready.fetch_add(1);
    while (!go.load(std::memory_order_acquire)) {
    }
    flops[static_cast<size_t>(t)] = k->fma_loop(iters);
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
  while (ready.load() < threads - 1) {
  }
  const auto t0 = clock::now();
  go.store(true, std::memory_order_release);
  work(0);
  for (std::thread& th : pool) th.join();
  double total = 0.0;
  for (double f : flops) total += f;
  return total / secs(t0, clock::now()) / 1e9;
}

}  // namespace cpu
}  // namespace lenet_fast
