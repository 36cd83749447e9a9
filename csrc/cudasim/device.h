// cudasim, the kernel side: runs CUDA kernels written for nvcc on the CPU, one block after another,
// so that CI (no GPU) executes the project's real .cu sources and checks their indexing, bounds,
// barriers, warp operations and launch configurations. Compile the .cu file as C++ with
// LENET_FAST_CUDASIM defined (csrc/kernels/cuda/device.h then includes this header).
//
// Model:
//   - Every CUDA thread of a block is a fiber (ucontext), run by a scheduler on the calling thread;
//     or, with LENET_FAST_CUDASIM_MODE=threads, an OS thread, so that ThreadSanitizer sees the
//     block's threads as threads and reports races on shared memory. Blocks run one at a time.
//   - __syncthreads() is a real barrier. It stops the launch with file:line when threads of a
//     block reach different barriers, when a thread has exited while others wait at one, or when
//     no thread can go on (deadlock).
//   - Warps are 32 consecutive threads (threadIdx.x fastest). __shfl*_sync, __ballot_sync,
//     __any_sync, __all_sync and __syncwarp wait for every lane of their mask; reading a lane
//     outside the mask, a mask without the calling lane, or lanes at different warp operations
//     stop the launch.
//   - Dynamic shared memory is an exact-size heap block filled with 0xFF (NaN as float) for every
//     block; `__shared__` arrays are static storage shared by the block's threads.
//   - Launches are checked as the hardware checks them (runtime.h): at most 1024 threads a block,
//     grid y and z at most 65535, dynamic shared memory over 48 KiB only after the opt-in.
//   - LENET_FAST_CUDASIM_ORDER=forward|reverse|shuffle[:seed] (or cudasim::set_order) orders the
//     blocks of a grid and the threads of a block: a result that changes with it is a race or a
//     missing barrier.
//   - LENET_FAST_CUDASIM_PROFILE (the profiling build, tests/cudasim.py's load(profile=True)): the
//     kernel sources are compiled by clang with -fsanitize-coverage=trace-pc-guard,no-prune,trace-loads,trace-stores,
//     and profile.cpp records every global and shared access and every basic block of every
//     simulated thread, grouped per warp instruction as the GPU issues them. The harness's own
//     functions are then LF_SIM_UNTRACED (not inlined, not instrumented), so that only kernel code
//     is counted, and __shared__ arrays live in a section of their own (lf_shared) so that an
//     address tells shared memory from global.
// What it cannot show: speed, the GPU's memory model and caches, races between blocks (they never
// overlap here), and the GPU compiler's floating-point choices (fused multiply-adds, fast math).
#pragma once

#include <setjmp.h>
#include <ucontext.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "runtime.h"

#define __global__
#define __launch_bounds__(...)  // occupancy hints for ptxas; nothing to the harness
#define __device__
#define __host__
#define __forceinline__ inline
#if defined(LENET_FAST_CUDASIM_PROFILE)
#define __shared__ static __attribute__((section("lf_shared")))
#define LF_SIM_UNTRACED __attribute__((noinline, no_sanitize("coverage")))
#else
#define __shared__ static  // one copy, shared by the threads of the block that is running
#define LF_SIM_UNTRACED
#endif
// __restrict__ is accepted by GCC and Clang as it is.

constexpr int warpSize = 32;

namespace cudasim {

#if defined(LENET_FAST_CUDASIM_PROFILE)
// The profiler's side of the harness (profile.cpp): what a launch, a block and a barrier tell it.
namespace profile {
void launch_begin(const void* kernel, dim3 grid, dim3 block, size_t shared);
void launch_end();
void block_begin(unsigned threads, const void* dynamic_shared, size_t dynamic_bytes);
void barrier();    // every thread of the block is at the same __syncthreads()
void block_end();
// Records from now on, clearing what was recorded. max_blocks > 0: every launch runs its first
// max_blocks blocks only (a sample, for a grid of identical blocks; what the rest would have
// written stays unwritten) and reports the grid's size beside the blocks it ran.
void start(const char* label = nullptr, long long max_blocks = 0);
long long max_blocks();
void set_label(const char* label);        // names the launches that follow
std::string stop();                       // stops; what was recorded, as JSON (profile.cpp)
}  // namespace profile
#define LF_SIM_PROFILE(call) ::cudasim::profile::call
#else
#define LF_SIM_PROFILE(call) ((void)0)
#endif

namespace detail {

struct Block;

enum class State { Ready, AtBarrier, AtWarp, Done };

enum class WarpKind { Sync, Idx, Up, Down, Xor, Ballot, Any, All };

struct WarpOp {
  WarpKind kind;
  unsigned mask;
  int width;
  int arg;          // source lane, delta or lane mask
  uint64_t value;   // the lane's operand (bits), or its predicate
  uint64_t result;  // filled in when the group completes
  const char* file;
  int line;
};

struct Thread {
  uint3 idx;
  unsigned linear;
  State state = State::Ready;
  const char* site_file = nullptr;  // the barrier it waits at
  int site_line = 0;
  WarpOp op{};
  ucontext_t context{};  // its first entry
  jmp_buf jump{};         // where it resumes after that
  bool started = false;
  Block* block = nullptr;
};

struct Block {
  uint3 idx;
  dim3 dim, grid;
  unsigned count;             // threads
  unsigned ready = 0;         // threads in State::Ready (running or about to)
  std::vector<Thread> threads;
  std::vector<unsigned> order;  // the order threads are started and resumed in
  void* dynamic_shared = nullptr;
  size_t dynamic_bytes = 0;
  void (*body)(const void*) = nullptr;  // runs the kernel on its arguments (ctx)
  const void* ctx = nullptr;
  std::string error;          // the first error; stops the block
  cudaError_t code = cudaSuccess;
  // fibers
  ucontext_t scheduler{};
  jmp_buf scheduler_jump{};  // fibers yield here: _longjmp, no signal-mask system call as in swapcontext
  // threads
  std::mutex mu;
  std::condition_variable cv;
};

struct Current {
  Thread* thread = nullptr;
  Block* block = nullptr;
};
inline thread_local Current current;

inline std::string where(const char* file, int line) { return std::string(file) + ":" + std::to_string(line); }

inline std::string name(const Thread& t) {
  return "thread (" + std::to_string(t.idx.x) + "," + std::to_string(t.idx.y) + "," + std::to_string(t.idx.z) +
         ") of block (" + std::to_string(t.block->idx.x) + "," + std::to_string(t.block->idx.y) + "," +
         std::to_string(t.block->idx.z) + ")";
}

inline void fail(Block& b, cudaError_t code, const std::string& why) {
  if (b.error.empty()) {
    b.error = why;
    b.code = code;
  }
}

// Releases the barrier and the warp groups that can go on, or records why nothing can. Called with
// the block's state consistent (fibers: always; threads: under b.mu) after any thread changes state.
LF_SIM_UNTRACED inline void progress(Block& b) {
  // While a thread still runs, nothing can complete or be known stuck: it will call here again when
  // it waits or exits. (So the scan below runs once per barrier, not once per arriving thread.)
  if (b.ready > 0) return;
  // __syncthreads: every thread that has not exited must wait at the same barrier.
  const Thread* at_bar = nullptr;
  const Thread* done = nullptr;
  bool all_at_bar = true;
  for (const Thread& t : b.threads) {
    if (t.state == State::AtBarrier) {
      if (at_bar && (at_bar->site_line != t.site_line || std::strcmp(at_bar->site_file, t.site_file) != 0))
        return fail(b, cudaErrorLaunchFailure, "threads of a block reached different __syncthreads(): " + name(*at_bar) +
                   " at " + where(at_bar->site_file, at_bar->site_line) + ", " + name(t) + " at " +
                   where(t.site_file, t.site_line));
      at_bar = &t;
    } else if (t.state == State::Done) {
      done = &t;
    } else {
      all_at_bar = false;
    }
  }
  if (at_bar && done)
    return fail(b, cudaErrorLaunchFailure, name(*done) + " exited while " + name(*at_bar) + " waits at the __syncthreads() at " +
                where(at_bar->site_file, at_bar->site_line) + " (every thread of a block must reach it)");
  if (at_bar && all_at_bar) {
    LF_SIM_PROFILE(barrier());
    for (Thread& t : b.threads) t.state = State::Ready;
    b.ready = b.count;
    return;
  }
  // Warp operations: a group completes when every lane of its mask is at the same operation.
  bool released = false;
  for (unsigned w = 0; w * 32 < b.count; ++w) {
    for (unsigned lane = 0; lane < 32; ++lane) {
      const unsigned i = w * 32 + lane;
      if (i >= b.count || b.threads[i].state != State::AtWarp) continue;
      const WarpOp& op = b.threads[i].op;
      bool complete = true;
      for (unsigned l = 0; l < 32; ++l) {
        if (!(op.mask >> l & 1u)) continue;
        const unsigned j = w * 32 + l;
        if (j >= b.count)
          return fail(b, cudaErrorLaunchFailure, "the mask of the warp operation at " + where(op.file, op.line) +
                      " names lane " + std::to_string(l) + ", which this block does not have");
        const Thread& o = b.threads[j];
        if (o.state == State::Done)
          return fail(b, cudaErrorLaunchFailure, name(o) + " exited while lanes of its warp wait for it at " +
                      where(op.file, op.line));
        if (o.state != State::AtWarp) {
          complete = false;
          continue;
        }
        if (o.op.kind != op.kind || o.op.mask != op.mask || o.op.width != op.width || o.op.line != op.line)
          return fail(b, cudaErrorLaunchFailure, "lanes of a warp at different warp operations: " + name(b.threads[i]) +
                      " at " + where(op.file, op.line) + ", " + name(o) + " at " + where(o.op.file, o.op.line));
      }
      if (!complete) continue;
      // Every lane is here: compute each lane's result from the others' values.
      uint64_t ballot = 0;
      for (unsigned l = 0; l < 32; ++l)
        if ((op.mask >> l & 1u) && b.threads[w * 32 + l].op.value) ballot |= 1ull << l;
      for (unsigned l = 0; l < 32; ++l) {
        if (!(op.mask >> l & 1u)) continue;
        Thread& t = b.threads[w * 32 + l];
        const int width = t.op.width, base = static_cast<int>(l) & ~(width - 1), pos = static_cast<int>(l) & (width - 1);
        int src = static_cast<int>(l);
        switch (t.op.kind) {
          case WarpKind::Idx: src = base + (t.op.arg & (width - 1)); break;
          case WarpKind::Up: src = pos >= t.op.arg ? static_cast<int>(l) - t.op.arg : static_cast<int>(l); break;
          case WarpKind::Down: src = pos + t.op.arg < width ? static_cast<int>(l) + t.op.arg : static_cast<int>(l); break;
          case WarpKind::Xor: {
            const int x = static_cast<int>(l) ^ t.op.arg;
            src = (x >= 0 && x < base + width) ? x : static_cast<int>(l);  // later groups: own value
            break;
          }
          default: break;
        }
        if (src < 0 || src > 31 || !(op.mask >> src & 1u))
          return fail(b, cudaErrorLaunchFailure, name(t) + " reads lane " + std::to_string(src) +
                      ", outside the mask 0x" + [&] { char s[16]; std::snprintf(s, sizeof s, "%08x", op.mask); return std::string(s); }() +
                      " of the warp operation at " + where(t.op.file, t.op.line));
        switch (t.op.kind) {
          case WarpKind::Ballot: t.op.result = ballot; break;
          case WarpKind::Any: t.op.result = ballot != 0; break;
          case WarpKind::All: t.op.result = ballot == (op.mask & 0xffffffffull); break;
          case WarpKind::Sync: t.op.result = 0; break;
          default: t.op.result = b.threads[w * 32 + static_cast<unsigned>(src)].op.value;
        }
      }
      for (unsigned l = 0; l < 32; ++l)
        if (op.mask >> l & 1u) {
          b.threads[w * 32 + l].state = State::Ready;
          ++b.ready;
        }
      released = true;
    }
  }
  if (released) return;
  // Nobody can go on: every thread has exited or waits for something that cannot happen.
  bool waiting = false;
  for (const Thread& t : b.threads) {
    if (t.state == State::Ready) return;
    waiting |= t.state != State::Done;
  }
  if (waiting) {
    std::string who;
    for (const Thread& t : b.threads) {
      if (t.state == State::AtWarp) { who = name(t) + " waits at the warp operation at " + where(t.op.file, t.op.line); break; }
      if (t.state == State::AtBarrier) who = name(t) + " waits at the __syncthreads() at " + where(t.site_file, t.site_line);
    }
    fail(b, cudaErrorLaunchFailure, "deadlock: " + who);
  }
}

// Blocks the calling CUDA thread until the scheduler makes it Ready again.
LF_SIM_UNTRACED inline void wait(Thread& t) {
  Block& b = *t.block;
  if (settings().mode == Mode::Fibers) {
    progress(b);
    if ((t.state != State::Ready || !b.error.empty()) && !_setjmp(t.jump)) _longjmp(b.scheduler_jump, 1);
    return;
  }
  std::unique_lock<std::mutex> lock(b.mu, std::adopt_lock);
  const unsigned ready = b.ready;
  progress(b);
  if (b.ready > ready || !b.error.empty()) b.cv.notify_all();  // only when someone can go on
  b.cv.wait(lock, [&] { return t.state == State::Ready || !b.error.empty(); });
  if (!b.error.empty()) {  // OS threads cannot be abandoned: report and stop the process
    std::fprintf(stderr, "cudasim: %s\n", b.error.c_str());
    std::abort();
  }
  lock.release();
}

LF_SIM_UNTRACED inline void lock_block(Block& b) {
  if (settings().mode == Mode::Threads) b.mu.lock();
}
LF_SIM_UNTRACED inline void unlock_block(Block& b) {
  if (settings().mode == Mode::Threads) b.mu.unlock();
}

// An error raised by kernel code itself (a device-side assert): stop this block.
[[noreturn]] LF_SIM_UNTRACED inline void kernel_error(cudaError_t code, const std::string& why) {
  Thread& t = *current.thread;
  Block& b = *t.block;
  lock_block(b);
  fail(b, code, why);
  --b.ready;
  if (settings().mode == Mode::Threads) {
    std::fprintf(stderr, "cudasim: %s\n", b.error.c_str());
    std::abort();
  }
  t.state = State::Done;
  _longjmp(b.scheduler_jump, 1);  // never resumed
  std::abort();
}

LF_SIM_UNTRACED inline void syncthreads(const char* file, int line) {
  Thread& t = *current.thread;
  lock_block(*t.block);
  t.state = State::AtBarrier;
  --t.block->ready;
  t.site_file = file;
  t.site_line = line;
  wait(t);
  unlock_block(*t.block);
}

template <class T>
LF_SIM_UNTRACED T warp_op(WarpKind kind, unsigned mask, T value, int arg, int width, const char* file, int line) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "warp operations move up to 8 bytes");
  Thread& t = *current.thread;
  Block& b = *t.block;
  const unsigned lane = t.linear % 32;
  if (width <= 0 || width > 32 || (width & (width - 1)))
    kernel_error(cudaErrorLaunchFailure, "warp operation at " + where(file, line) + ": width " + std::to_string(width) +
                 " is not a power of 2 up to 32");
  if (!(mask >> lane & 1u))
    kernel_error(cudaErrorLaunchFailure, name(t) + " calls the warp operation at " + where(file, line) +
                 " with a mask that leaves out its own lane " + std::to_string(lane));
  lock_block(b);
  t.op = WarpOp{kind, mask, width, arg, 0, 0, file, line};
  std::memcpy(&t.op.value, &value, sizeof(T));
  t.state = State::AtWarp;
  --b.ready;
  wait(t);
  T out{};
  std::memcpy(&out, &t.op.result, sizeof(T));
  unlock_block(b);
  return out;
}

LF_SIM_UNTRACED inline void run_thread(Thread& t) {
  current.thread = &t;
  current.block = t.block;
  t.block->body(t.block->ctx);
  lock_block(*t.block);
  t.state = State::Done;
  const unsigned ready = --t.block->ready;
  progress(*t.block);
  if (settings().mode == Mode::Threads && (t.block->ready > ready || !t.block->error.empty()))
    t.block->cv.notify_all();
  unlock_block(*t.block);
}

LF_SIM_UNTRACED inline void fiber_entry(unsigned hi, unsigned lo) {
  Thread& t = *reinterpret_cast<Thread*>((static_cast<uintptr_t>(hi) << 32) | lo);
  run_thread(t);
  _longjmp(t.block->scheduler_jump, 1);
}

constexpr size_t kStackBytes = 256 * 1024;

// Runs one block to the end (or its first error).
LF_SIM_UNTRACED inline void run_block(Block& b, std::vector<std::unique_ptr<char[]>>& stacks) {
  for (unsigned i : b.order) {
    Thread& t = b.threads[i];
    t.state = State::Ready;
  }
  b.ready = b.count;
  if (settings().mode == Mode::Threads) {
    std::vector<std::thread> os;
    os.reserve(b.count);
    for (unsigned i : b.order) os.emplace_back([&b, i] { run_thread(b.threads[i]); });
    for (auto& th : os) th.join();
    return;
  }
  ucontext_t base;
  getcontext(&base);  // once: each fiber's context is a copy with its own stack
  for (unsigned i : b.order) {
    Thread& t = b.threads[i];
    t.context = base;
    t.started = false;
    t.context.uc_stack.ss_sp = stacks[i].get();
    t.context.uc_stack.ss_size = kStackBytes;
    t.context.uc_link = nullptr;
    const auto p = reinterpret_cast<uintptr_t>(&t);
    makecontext(&t.context, reinterpret_cast<void (*)()>(&fiber_entry), 2, static_cast<unsigned>(p >> 32),
                static_cast<unsigned>(p & 0xffffffffu));
  }
  for (bool ran = true; ran && b.error.empty();) {
    ran = false;
    for (unsigned i : b.order) {
      Thread& t = b.threads[i];
      if (t.state != State::Ready || !b.error.empty()) continue;
      current.thread = &t;
      current.block = &b;
      ran = true;
      if (_setjmp(b.scheduler_jump)) continue;  // the fiber yielded or finished
      if (t.started) _longjmp(t.jump, 1);
      t.started = true;
      swapcontext(&b.scheduler, &t.context);
    }
  }
}

inline std::vector<unsigned> permutation(unsigned n, Order order, std::mt19937& rng) {
  std::vector<unsigned> p(n);
  std::iota(p.begin(), p.end(), 0u);
  if (order == Order::Reverse) std::reverse(p.begin(), p.end());
  if (order == Order::Shuffle) std::shuffle(p.begin(), p.end(), rng);
  return p;
}

LF_SIM_UNTRACED inline cudaError_t launch(const void* kernel, void (*body)(const void*), const void* ctx, dim3 grid, dim3 block,
                          size_t shared, const char* file, int line) {
  const std::string at = " (launch at " + where(file, line) + ")";
  const unsigned long long g[3] = {grid.x, grid.y, grid.z};
  const unsigned bd[3] = {block.x, block.y, block.z};
  for (int d = 0; d < 3; ++d) {
    if (g[d] == 0 || bd[d] == 0)
      return set_error(cudaErrorInvalidConfiguration, "a grid or block dimension is 0" + at);
    if (g[d] > kMaxGridDim[d])
      return set_error(cudaErrorInvalidConfiguration, "grid dimension " + std::to_string(d) + " is " +
                       std::to_string(g[d]) + ", over the limit of " + std::to_string(kMaxGridDim[d]) + at);
    if (bd[d] > kMaxBlockDim[d])
      return set_error(cudaErrorInvalidConfiguration, "block dimension " + std::to_string(d) + " is " +
                       std::to_string(bd[d]) + ", over the limit of " + std::to_string(kMaxBlockDim[d]) + at);
  }
  const unsigned long long count = 1ull * block.x * block.y * block.z;
  if (count > kMaxThreadsPerBlock)
    return set_error(cudaErrorInvalidConfiguration, std::to_string(count) + " threads in a block, over 1024" + at);
  if (shared > shared_limit(kernel))
    return set_error(cudaErrorInvalidValue, std::to_string(shared) + " bytes of dynamic shared memory, over the " +
                     std::to_string(shared_limit(kernel)) + " this kernel may use" +
                     (shared <= kMaxOptInSharedBytes ? " (cudaFuncSetAttribute opts in to up to 227 KiB)" : "") + at);
  ++stats().launches;
  LF_SIM_PROFILE(launch_begin(kernel, grid, block, shared));
  Settings& s = settings();
  std::mt19937 rng(s.seed);
  const unsigned long long nblocks = g[0] * g[1] * g[2];
  // Block order: forward, reversed or shuffled over the linear block index.
  std::vector<unsigned long long> blocks(nblocks);
  std::iota(blocks.begin(), blocks.end(), 0ull);
  if (s.order == Order::Reverse) std::reverse(blocks.begin(), blocks.end());
  if (s.order == Order::Shuffle) std::shuffle(blocks.begin(), blocks.end(), rng);
  std::vector<std::unique_ptr<char[]>> stacks;
  if (s.mode == Mode::Fibers)
    for (unsigned i = 0; i < count; ++i) stacks.emplace_back(new char[kStackBytes]);
  unsigned long long ran = 0;
  for (unsigned long long lb : blocks) {
#if defined(LENET_FAST_CUDASIM_PROFILE)
    if (profile::max_blocks() > 0 && ran >= static_cast<unsigned long long>(profile::max_blocks())) break;
#endif
    ++ran;
    Block b;
    b.idx = uint3{static_cast<unsigned>(lb % g[0]), static_cast<unsigned>(lb / g[0] % g[1]), static_cast<unsigned>(lb / (g[0] * g[1]))};
    b.dim = block;
    b.grid = grid;
    b.count = static_cast<unsigned>(count);
    b.body = body;
    b.ctx = ctx;
    b.threads.resize(count);
    for (unsigned i = 0; i < count; ++i) {
      Thread& t = b.threads[i];
      t.linear = i;
      t.idx = uint3{i % block.x, i / block.x % block.y, i / (block.x * block.y)};
      t.block = &b;
    }
    b.order = permutation(b.count, s.order, rng);
    std::unique_ptr<char, void (*)(void*)> dyn(nullptr, std::free);
    if (shared) {
      dyn.reset(static_cast<char*>(std::malloc(shared)));
      std::memset(dyn.get(), 0xFF, shared);  // NaN until written
      b.dynamic_shared = dyn.get();
      b.dynamic_bytes = shared;
    }
    LF_SIM_PROFILE(block_begin(b.count, b.dynamic_shared, b.dynamic_bytes));
    run_block(b, stacks);
    current = Current{};  // host code again: nothing the profiler would count as a kernel's
    LF_SIM_PROFILE(block_end());
    ++stats().blocks;
    stats().threads += count;
    if (!b.error.empty()) {
      LF_SIM_PROFILE(launch_end());
      return set_error(b.code, b.error + at);
    }
  }
  LF_SIM_PROFILE(launch_end());
  return cudaSuccess;
}

// The launch object LF_LAUNCH makes: kernel, configuration, then the arguments.
template <class... Params>
struct Launch {
  void (*kernel)(Params...);
  dim3 grid, block;
  size_t shared;
  const char* file;
  int line;
  template <class... Args>
  void operator()(Args&&... args) const {
    static_assert(sizeof...(Args) == sizeof...(Params), "kernel launched with the wrong number of arguments");
    // Arguments are copied once, converted to the parameter types, as a CUDA launch does.
    const Call call{kernel, std::tuple<std::decay_t<Params>...>(std::forward<Args>(args)...)};
    launch(reinterpret_cast<const void*>(kernel), &Call::run, &call, grid, block, shared, file, line);
  }
  struct Call {
    void (*kernel)(Params...);
    std::tuple<std::decay_t<Params>...> args;
    LF_SIM_UNTRACED static void run(const void* self) {
      const Call& c = *static_cast<const Call*>(self);
      std::apply(c.kernel, c.args);
    }
  };
};

inline dim3 as_dim3(dim3 d) { return d; }
template <class I, class = std::enable_if_t<std::is_integral_v<I>>>
inline dim3 as_dim3(I n) {
  return dim3(static_cast<unsigned>(n));
}

// Every launch runs to the end before it returns, so the stream orders nothing here.
template <class... Params, class G, class B>
Launch<Params...> make_launch(void (*kernel)(Params...), G grid, B block, size_t shared, cudaStream_t /*stream*/,
                              const char* file, int line) {
  return Launch<Params...>{kernel, as_dim3(grid), as_dim3(block), shared, file, line};
}

struct Index {  // threadIdx and friends: the running thread's coordinates
  LF_SIM_UNTRACED static uint3 thread() { return current.thread->idx; }
  LF_SIM_UNTRACED static uint3 block() { return current.block->idx; }
  LF_SIM_UNTRACED static dim3 block_dim() { return current.block->dim; }
  LF_SIM_UNTRACED static dim3 grid_dim() { return current.block->grid; }
};

}  // namespace detail

template <class T>
LF_SIM_UNTRACED T* dynamic_shared() {
  return static_cast<T*>(detail::current.block->dynamic_shared);
}

}  // namespace cudasim

#define threadIdx (::cudasim::detail::Index::thread())
#define blockIdx (::cudasim::detail::Index::block())
#define blockDim (::cudasim::detail::Index::block_dim())
#define gridDim (::cudasim::detail::Index::grid_dim())

#define __syncthreads() ::cudasim::detail::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) ::cudasim::detail::warp_op(::cudasim::detail::WarpKind::Sync, (__VA_ARGS__ + 0u) ? (__VA_ARGS__ + 0u) : 0xffffffffu, 0, 0, 32, __FILE__, __LINE__)
#define LF_SIM_WARP(kind, mask, v, arg, ...) \
  ::cudasim::detail::warp_op(::cudasim::detail::WarpKind::kind, (mask), (v), (arg), LF_SIM_WIDTH(__VA_ARGS__), __FILE__, __LINE__)
#define LF_SIM_WIDTH(...) (0 __VA_OPT__(+ (__VA_ARGS__)) ?: 32)
#define __shfl_sync(mask, v, lane, ...) LF_SIM_WARP(Idx, mask, v, lane, __VA_ARGS__)
#define __shfl_up_sync(mask, v, delta, ...) LF_SIM_WARP(Up, mask, v, static_cast<int>(delta), __VA_ARGS__)
#define __shfl_down_sync(mask, v, delta, ...) LF_SIM_WARP(Down, mask, v, static_cast<int>(delta), __VA_ARGS__)
#define __shfl_xor_sync(mask, v, lanemask, ...) LF_SIM_WARP(Xor, mask, v, lanemask, __VA_ARGS__)
#define __ballot_sync(mask, pred) static_cast<unsigned>(::cudasim::detail::warp_op<uint64_t>(::cudasim::detail::WarpKind::Ballot, (mask), (pred) ? 1u : 0u, 0, 32, __FILE__, __LINE__))
#define __any_sync(mask, pred) static_cast<int>(::cudasim::detail::warp_op<uint64_t>(::cudasim::detail::WarpKind::Any, (mask), (pred) ? 1u : 0u, 0, 32, __FILE__, __LINE__))
#define __all_sync(mask, pred) static_cast<int>(::cudasim::detail::warp_op<uint64_t>(::cudasim::detail::WarpKind::All, (mask), (pred) ? 1u : 0u, 0, 32, __FILE__, __LINE__))

// CUDA's integer min and max (device functions); std::min wants both arguments of one type.
template <class A, class B>
inline auto min(A a, B b) -> std::common_type_t<A, B> {
  return b < a ? b : a;
}
template <class A, class B>
inline auto max(A a, B b) -> std::common_type_t<A, B> {
  return a < b ? b : a;
}

inline int __popc(unsigned int x) { return __builtin_popcount(x); }

// CUDA's float2, for 8-byte accesses.
struct alignas(8) float2 {
  float x, y;
};
inline float2 make_float2(float x, float y) { return float2{x, y}; }

inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}
inline int __float_as_int(float f) {
  int i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}

// A failed device-side assertion stops the launch with cudaErrorAssert, as on the GPU. (text: the
// condition as written, stringized by the caller before its macros expand.)
#define LF_SIM_DEVICE_ASSERT(cond, text)                                                              \
  do {                                                                                                \
    if (!(cond))                                                                                      \
      ::cudasim::detail::kernel_error(cudaErrorAssert, std::string(__FILE__) + ":" +                  \
                                                           std::to_string(__LINE__) + ": " + __func__ + \
                                                           ": device-side assertion `" text "' failed"); \
  } while (0)
