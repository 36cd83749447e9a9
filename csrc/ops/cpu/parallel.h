// Dynamic scheduling of a batch's work over ATen's threads: one parallel region per call (a few per
// training step), in which each thread takes the next job from a shared counter until none is
// left; and a retreat to one thread while the machine is busy with other work.
//
// A parallel region ends in a barrier: every thread waits for the slowest. On a machine shared with
// another CPU-bound process a thread can be descheduled for a whole time slice (milliseconds), and
// a training step of a dozen or more regions (one per layer op) collapses to 19-26x its quiet time
// (measured: epochs of the training program beside a compile). Here: (1) a step is three regions; (2) jobs are taken dynamically, so when one thread is
// descheduled the others take the jobs it has not started rather than wait for its share; (3) when
// the calling thread still spends most of a region waiting for the others -- someone else has the
// cores -- the next regions for kSoloNs run on the calling thread alone, which then never waits,
// and the machine's state is tried again after that. Quiet, OpenMP's threads stay the fastest
// hand-off there is (they spin between regions), so the regions stay on them.
//
// Jobs must write disjoint outputs and compute the same values whichever thread runs them: results
// are then bit-identical for every thread count and schedule, this retreat included.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace lenet_fast {
namespace cpu {

// Work worth waking a thread for (~2 MFLOP; as conv_grain).
constexpr int64_t kMinThreadFlops = 2000000;

// Threads worth using for `flops` of work, at most torch.get_num_threads(): one for a small batch,
// which then never leaves the calling thread.
inline int64_t threads_for(int64_t flops) {
  return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), flops / kMinThreadFlops));
}

namespace detail {

// A region is "contended" when the calling thread waited for the others longer than
// kContendedWaitNs and for more than a third of the region: a quiet region waits at most about one
// job (under 1 ms for every job here) at its end.
constexpr int64_t kContendedWaitNs = 1000000;
constexpr int64_t kSoloNs = 250000000;  // then one thread for 250 ms

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Until when (now_ns) the regions run on one thread; 0 when they don't.
inline std::atomic<int64_t>& solo_until() {
  static std::atomic<int64_t> until{0};
  return until;
}

// Contended regions in a row.
inline std::atomic<int>& strikes() {
  static std::atomic<int> n{0};
  return n;
}

}  // namespace detail

// Whether the regions currently run on one thread because of contention.
inline bool contended() { return detail::now_ns() < detail::solo_until().load(std::memory_order_relaxed); }

// Runs job(j, state) for j in [0, jobs) on up to `threads` threads; each thread first makes its own
// state (scratch buffers) with make(). Inline on one thread, inside another parallel region, or
// while contended().
template <class Make, class Job>
void run_jobs(int64_t jobs, int64_t threads, const Make& make, const Job& job) {
  if (jobs <= 0) return;
  threads = std::max<int64_t>(1, std::min(jobs, threads));
  if (threads <= 1 || at::in_parallel_region() || contended()) {
    auto state = make();
    for (int64_t j = 0; j < jobs; ++j) job(j, state);
    return;
  }
  std::atomic<int64_t> next{0};
  int64_t caller_done = 0;  // when the calling thread ran out of jobs
  const int64_t start = detail::now_ns();
  at::parallel_for(0, threads, 1, [&](int64_t t, int64_t) {
    int64_t j = next.fetch_add(1, std::memory_order_relaxed);
    if (j < jobs) {
      auto state = make();
      for (; j < jobs; j = next.fetch_add(1, std::memory_order_relaxed)) job(j, state);
    }
    if (t == 0) caller_done = detail::now_ns();  // index 0 runs on the calling thread
  });
  const int64_t end = detail::now_ns(), waited = end - caller_done;
  const bool slow = caller_done && waited > detail::kContendedWaitNs && 3 * waited > end - start;
  // Two in a row: a single one is also what waking OpenMP's threads after a pause can cost.
  if (!slow) {
    detail::strikes().store(0, std::memory_order_relaxed);
  } else if (detail::strikes().fetch_add(1, std::memory_order_relaxed) >= 1) {
    detail::strikes().store(0, std::memory_order_relaxed);
    detail::solo_until().store(end + detail::kSoloNs, std::memory_order_relaxed);
  }
}

}  // namespace cpu
}  // namespace lenet_fast
