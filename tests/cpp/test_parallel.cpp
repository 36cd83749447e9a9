// Tests of csrc/ops/cpu/parallel.h, the CPU ops' job runner: every job runs exactly once, on one or more
// threads; and after two regions in a row in which the calling thread mostly waited for another
// (what a machine busy with other processes does to a region), the next regions run on the calling
// thread alone, until kSoloNs has passed. The waiting is made here by a job that sleeps on a worker
// thread. Exits non-zero on the first failure.
#include <ATen/Parallel.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "ops/cpu/parallel.h"

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  std::printf("%-60s %s\n", what, ok ? "ok" : "FAILED");
  if (!ok) ++failures;
}

using lenet_fast::cpu::contended;
using lenet_fast::cpu::run_jobs;

// Runs `jobs` jobs of `job_ms` each on up to 2 threads; the first job a worker thread (not the
// caller) takes sleeps `worker_ms` instead. Returns the number of distinct threads that ran jobs.
size_t region(int64_t jobs, int job_ms, int worker_ms) {
  const auto caller = std::this_thread::get_id();
  std::atomic<bool> slept{false};
  std::mutex m;
  std::set<std::thread::id> ran;
  run_jobs(jobs, 2, [] { return 0; }, [&](int64_t, int) {
    const bool on_worker = std::this_thread::get_id() != caller;
    {
      std::lock_guard<std::mutex> lock(m);
      ran.insert(std::this_thread::get_id());
    }
    const int ms = on_worker && !slept.exchange(true) ? worker_ms : job_ms;
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  });
  return ran.size();
}

}  // namespace

int main() {
  at::set_num_threads(2);

  for (int64_t threads : {1, 2, 3}) {
    std::vector<std::atomic<int>> count(1000);
    run_jobs(1000, threads, [] { return 0; }, [&](int64_t j, int) { count[j].fetch_add(1); });
    bool once = true;
    for (auto& c : count) once = once && c.load() == 1;
    expect(once, threads == 1 ? "every job once, 1 thread" : threads == 2 ? "every job once, 2 threads"
                                                                          : "every job once, 3 threads");
  }

  expect(!contended(), "quiet at the start");
  expect(region(10, 1, 1) == 2, "a quiet region uses both threads");
  region(10, 1, 30);  // the caller waits ~20 ms of ~30 for the worker's job
  expect(!contended(), "one slow region is not enough");
  region(10, 1, 30);
  expect(contended(), "two slow regions in a row: contended");
  expect(region(10, 1, 1) == 1, "while contended, the calling thread runs every job");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // kSoloNs is 250 ms
  expect(!contended(), "contention forgotten after 250 ms");
  expect(region(10, 1, 1) == 2, "then both threads again");

  std::printf("%s\n", failures ? "FAILED" : "all ok");
  return failures ? 1 : 0;
}
