// Dynamic scheduling of a batch's work over ATen's thread pool: one parallel region, in which each
// thread takes the next job from a shared counter until none is left.
//
// Why not at::parallel_for's static split: on a machine shared with other processes a thread can be
// descheduled for a whole time slice; with a static split the other threads then wait for its
// share at the region's end, while here they take over the jobs it has not started. And a whole
// network step as a few such regions, rather than one per layer, ends in a few barriers instead of
// a dozen (each barrier is a chance to lose a time slice).
//
// Jobs must write disjoint outputs and compute the same values whichever thread runs them: results
// are then bit-identical for every thread count and schedule.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace lenet_fast {
namespace cpu {

// Work worth waking a thread for (~2 MFLOP; as conv_grain).
constexpr int64_t kMinThreadFlops = 2000000;

// Threads worth using for `flops` of work: one for a small batch, which then never leaves the
// calling thread.
inline int64_t threads_for(int64_t flops) {
  return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), flops / kMinThreadFlops));
}

// Runs job(j, state) for j in [0, jobs) on up to `threads` threads; each thread first makes its own
// state (scratch buffers) with make(). With one thread, or inside another parallel region, inline.
template <class Make, class Job>
void run_jobs(int64_t jobs, int64_t threads, const Make& make, const Job& job) {
  threads = std::min(jobs, threads);
  if (jobs <= 0) return;
  if (threads <= 1 || at::in_parallel_region()) {
    auto state = make();
    for (int64_t j = 0; j < jobs; ++j) job(j, state);
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    auto state = make();
    for (int64_t j = next.fetch_add(1, std::memory_order_relaxed); j < jobs;
         j = next.fetch_add(1, std::memory_order_relaxed))
      job(j, state);
  });
}

}  // namespace cpu
}  // namespace lenet_fast
