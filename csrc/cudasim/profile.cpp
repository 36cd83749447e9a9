// cudasim's memory profiler: what Nsight Compute's memory workload analysis counts, counted from
// the simulated threads of the profiling build (LENET_FAST_CUDASIM_PROFILE; see device.h).
//
// clang's -fsanitize-coverage=trace-pc-guard,no-prune,trace-loads,trace-stores puts a call before every load and
// store of the kernel sources (__sanitizer_cov_loadN / storeN, the call's return address naming
// the instruction) and at the head of every basic block (__sanitizer_cov_trace_pc_guard). This
// file receives them and, for the thread the harness is running:
//   - classifies the address: the thread's fiber stack is local memory (registers on a GPU, or
//     spills, which the resource gate covers) and is not counted; the block's dynamic shared memory
//     and the lf_shared section (__shared__ arrays) are shared memory; the rest is global memory;
//   - keeps the access in the thread's trace until the block's threads next meet at a barrier (or
//     the block ends). Then a warp's 32 lanes are grouped per instruction: the k-th execution of an
//     instruction by one lane belongs with the k-th execution of it by the warp's other lanes (exact
//     for convergent code and for branches the compiler predicates; where lanes ran an instruction
//     different numbers of times -- a loop some lanes leave early -- the site says "divergent");
//   - per warp instruction, global memory: one request, the distinct 32-byte sectors its lanes touch
//     (4 for 32 coalesced floats), the distinct bytes; shared memory: the wavefronts -- per phase
//     (32 lanes for 4-byte words, 16 for 8-byte, 8 for 16-byte), the most distinct words any one of
//     the 32 four-byte banks is asked for (1 = conflict-free; a broadcast of one word is 1);
//   - per launch, the distinct global sectors read and written (the bytes DRAM must move at least,
//     everything after the first touch being an L2 hit, a sector read after this launch wrote it
//     included) and how many of them most of the blocks touched (the weights, say: what a sample
//     of blocks must not scale), the barriers, and per basic block how many
//     times the lanes ran it and how many times a warp did (the most of any lane of the warp).
// Nothing here knows about lenet_fast: tests/cudasim/profile_selftest.cpp checks it on kernels whose
// answers are known, and benchmarks/gpu_profile.py names the instructions and counts the floating-
// point work of each basic block from the build's disassembly.
#define LENET_FAST_CUDASIM_PROFILE 1
#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "device.h"

extern "C" {
extern char __start_lf_shared[] __attribute__((weak));
extern char __stop_lf_shared[] __attribute__((weak));
}

namespace cudasim {
namespace profile {
namespace {

enum Space : uint8_t { kGlobal = 0, kShared = 1 };

struct Access {
  uintptr_t pc, addr;
  uint32_t k;  // the k-th execution of pc by its lane since the last flush
  uint8_t size, store, space;
};

struct Site {  // one instruction (call site) of the kernel, summed over a launch
  uint8_t space = 0, store = 0, size = 0;
  uint64_t requests = 0, units = 0, lanes = 0, bytes = 0;  // units: sectors (global) or wavefronts (shared)
  uint64_t divergent = 0;  // warps (between barriers) whose lanes ran it different numbers of times
};

struct WarpTotals {  // per warp index within the block, summed over blocks
  uint64_t global_requests = 0, shared_requests = 0;
};

struct Launch {
  uintptr_t kernel = 0;
  std::string label;
  dim3 grid, block;
  size_t shared = 0;
  uint64_t blocks = 0, threads = 0, barriers = 0, local_accesses = 0;
  std::map<uintptr_t, Site> sites;
  // Global sectors read and written -> (the last block that touched them, how many blocks have).
  std::unordered_map<uintptr_t, std::pair<int64_t, uint32_t>> read_sectors, write_sectors;
  std::map<uint32_t, std::pair<uint64_t, uint64_t>> guards;  // guard -> lane runs, warp runs
  std::map<std::pair<unsigned, uint32_t>, uint64_t> warp_guards;  // (warp index, guard) -> warp runs
  std::vector<WarpTotals> warps;
};

struct Lane {
  std::vector<Access> trace;
  std::unordered_map<uintptr_t, uint32_t> seen;  // pc -> executions since the last flush
  std::vector<uint32_t> guard_runs;              // by guard id
  std::vector<uint32_t> touched;                 // guard ids with a nonzero count
};

struct State {
  bool recording = false;
  long long max_blocks = 0;
  std::string label;
  uintptr_t base = 0;  // load address of the object these kernels are in
  std::vector<Launch> launches;
  Launch* launch = nullptr;
  std::vector<Lane> lanes;
  unsigned threads = 0;
  uintptr_t dyn_lo = 0, dyn_hi = 0;
  uint32_t guards = 0;
  std::vector<uintptr_t> guard_pc;  // by guard id: the pc after its call (0 until run)
};

State& state() {
  static State s;
  return s;
}

uintptr_t object_base() {
  Dl_info info{};
  dladdr(reinterpret_cast<void*>(&object_base), &info);
  return reinterpret_cast<uintptr_t>(info.dli_fbase);
}

struct Member {  // one lane's part of a warp instruction
  uintptr_t pc;
  uint32_t k;
  uint32_t lane;
  const Access* a;
};

// Shared memory: the wavefronts one warp instruction needs (members sorted by lane).
uint64_t wavefronts(const Member* m, size_t n) {
  const unsigned size = m[0].a->size;
  const unsigned per_phase = size >= 16 ? 8 : size == 8 ? 16 : 32;
  uint64_t total = 0;
  for (size_t i = 0; i < n;) {
    const unsigned phase = m[i].lane / per_phase;
    std::unordered_map<unsigned, std::unordered_set<uintptr_t>> banks;
    for (; i < n && m[i].lane / per_phase == phase; ++i)
      for (uintptr_t w = m[i].a->addr / 4; w < (m[i].a->addr + m[i].a->size + 3) / 4; ++w) banks[w % 32].insert(w);
    size_t most = 1;
    for (const auto& b : banks) most = std::max(most, b.second.size());
    total += most;
  }
  return total;
}

// The accesses the block's threads made since the last flush, grouped into warp instructions.
void flush() {
  State& s = state();
  Launch& L = *s.launch;
  std::vector<Member> members;
  for (unsigned w = 0; w * 32 < s.threads; ++w) {
    members.clear();
    for (unsigned lane = 0; lane < 32 && w * 32 + lane < s.threads; ++lane)
      for (const Access& a : s.lanes[w * 32 + lane].trace) members.push_back(Member{a.pc, a.k, lane, &a});
    std::sort(members.begin(), members.end(), [](const Member& x, const Member& y) {
      return x.pc != y.pc ? x.pc < y.pc : x.k != y.k ? x.k < y.k : x.lane < y.lane;
    });
    if (L.warps.size() <= w) L.warps.resize(w + 1);
    // Lanes that ran an instruction different numbers of times: the grouping by execution count
    // pairs unlike iterations there (a loop some lanes leave early), so the site is flagged.
    std::unordered_map<uintptr_t, std::pair<uint32_t, uint32_t>> runs;  // pc -> fewest, most runs
    for (unsigned lane = 0; lane < 32 && w * 32 + lane < s.threads; ++lane)
      for (const auto& [pc, n] : s.lanes[w * 32 + lane].seen) {
        auto [it, fresh] = runs.emplace(pc, std::make_pair(n, n));
        it->second.first = std::min(it->second.first, n);
        it->second.second = std::max(it->second.second, n);
      }
    for (const auto& [pc, r] : runs)
      if (r.first != r.second) ++L.sites[pc - s.base].divergent;
    for (size_t i = 0; i < members.size();) {
      size_t j = i;
      while (j < members.size() && members[j].pc == members[i].pc && members[j].k == members[i].k) ++j;
      const Access& first = *members[i].a;
      Site& site = L.sites[first.pc - s.base];
      site.space = first.space;
      site.store = first.store;
      site.size = first.size;
      ++site.requests;
      site.lanes += j - i;
      if (first.space == kShared) {
        site.units += wavefronts(&members[i], j - i);
        ++L.warps[w].shared_requests;
      } else {
        std::unordered_set<uintptr_t> sectors, bytes;
        for (size_t m = i; m < j; ++m) {
          const Access& a = *members[m].a;
          for (uintptr_t b = a.addr; b < a.addr + a.size; ++b) bytes.insert(b);
          for (uintptr_t sec = a.addr / 32; sec <= (a.addr + a.size - 1) / 32; ++sec) {
            sectors.insert(sec);
            // A sector this launch wrote before is read back from L2, not DRAM.
            if (!a.store && L.write_sectors.count(sec)) continue;
            const int64_t block = static_cast<int64_t>(L.blocks) - 1;
            auto [it, fresh] = (a.store ? L.write_sectors : L.read_sectors).emplace(sec, std::make_pair(block, 1u));
            if (!fresh && it->second.first != block) it->second = {block, it->second.second + 1};
          }
        }
        site.units += sectors.size();
        site.bytes += bytes.size();
        ++L.warps[w].global_requests;
      }
      i = j;
    }
  }
  for (unsigned t = 0; t < s.threads; ++t) {
    s.lanes[t].trace.clear();
    s.lanes[t].seen.clear();
  }
}

Lane* lane_of_running_thread() {
  State& s = state();
  const detail::Thread* t = detail::current.thread;
  if (!s.recording || !s.launch || !t || t->linear >= s.threads) return nullptr;
  return &s.lanes[t->linear];
}

void record(uintptr_t pc, const void* p, unsigned size, bool store) {
  Lane* lane = lane_of_running_thread();
  if (!lane) return;
  State& s = state();
  const auto addr = reinterpret_cast<uintptr_t>(p);
  const auto* t = detail::current.thread;
  const auto stack = reinterpret_cast<uintptr_t>(t->context.uc_stack.ss_sp);
  if (addr >= stack && addr < stack + t->context.uc_stack.ss_size) {
    ++s.launch->local_accesses;
    return;
  }
  const bool shared = (addr >= s.dyn_lo && addr < s.dyn_hi) ||
                      (__start_lf_shared && addr >= reinterpret_cast<uintptr_t>(__start_lf_shared) &&
                       addr < reinterpret_cast<uintptr_t>(__stop_lf_shared));
  const uint32_t k = lane->seen[pc]++;
  lane->trace.push_back(Access{pc, addr, k, static_cast<uint8_t>(size), static_cast<uint8_t>(store),
                               static_cast<uint8_t>(shared ? kShared : kGlobal)});
}

// Sectors most of the launch's blocks touched (the weights, say): what a sample of blocks stands for
// once, not once per block. (Two neighbours sharing a sector at their boundary is not that: at
// least 3 blocks, and at least half of those that ran.)
size_t shared_sectors(const std::unordered_map<uintptr_t, std::pair<int64_t, uint32_t>>& sectors, uint64_t blocks) {
  const uint64_t most = std::max<uint64_t>(3, (blocks + 1) / 2);
  size_t n = 0;
  for (const auto& kv : sectors) n += kv.second.second >= most;
  return n;
}

void json_string(std::ostringstream& o, const std::string& v) {
  o << '"';
  for (char c : v) {
    if (c == '"' || c == '\\') o << '\\';
    o << c;
  }
  o << '"';
}

}  // namespace

void launch_begin(const void* kernel, dim3 grid, dim3 block, size_t shared) {
  State& s = state();
  if (!s.recording) return;
  s.launches.emplace_back();
  s.launch = &s.launches.back();
  s.launch->kernel = reinterpret_cast<uintptr_t>(kernel) - s.base;
  s.launch->label = s.label;
  s.launch->grid = grid;
  s.launch->block = block;
  s.launch->shared = shared;
}

void launch_end() { state().launch = nullptr; }

void block_begin(unsigned threads, const void* dynamic_shared, size_t dynamic_bytes) {
  State& s = state();
  if (!s.recording || !s.launch) return;
  s.threads = threads;
  if (s.lanes.size() < threads) s.lanes.resize(threads);
  for (unsigned t = 0; t < threads; ++t) s.lanes[t].guard_runs.resize(s.guards + 1);
  s.dyn_lo = reinterpret_cast<uintptr_t>(dynamic_shared);
  s.dyn_hi = s.dyn_lo + dynamic_bytes;
  ++s.launch->blocks;
  s.launch->threads += threads;
}

void barrier() {
  State& s = state();
  if (!s.recording || !s.launch) return;
  ++s.launch->barriers;
  flush();
}

void block_end() {
  State& s = state();
  if (!s.recording || !s.launch) return;
  flush();
  // Basic blocks: per warp, the lanes' runs and the warp's (its busiest lane's).
  Launch& L = *s.launch;
  for (unsigned w = 0; w * 32 < s.threads; ++w) {
    std::unordered_map<uint32_t, std::pair<uint64_t, uint64_t>> runs;  // guard -> lane sum, lane max
    for (unsigned t = w * 32; t < std::min(s.threads, w * 32 + 32); ++t) {
      Lane& lane = s.lanes[t];
      for (uint32_t g : lane.touched) {
        auto& r = runs[g];
        r.first += lane.guard_runs[g];
        r.second = std::max<uint64_t>(r.second, lane.guard_runs[g]);
        lane.guard_runs[g] = 0;
      }
      lane.touched.clear();
    }
    for (const auto& [g, r] : runs) {
      auto& total = L.guards[g];
      total.first += r.first;
      total.second += r.second;
      L.warp_guards[{w, g}] += r.second;
    }
  }
  s.dyn_lo = s.dyn_hi = 0;
}

// Starts recording (clearing what was recorded); label names the launches that follow.
void start(const char* label, long long max_blocks) {
  State& s = state();
  if (settings().mode != Mode::Fibers) {
    std::fprintf(stderr, "cudasim profile: runs in fibers mode only (LENET_FAST_CUDASIM_MODE=threads is set)\n");
    std::abort();
  }
  if (!s.base) s.base = object_base();
  s.launches.clear();
  s.launch = nullptr;
  s.label = label ? label : "";
  s.max_blocks = max_blocks;
  s.recording = true;
}

long long max_blocks() {
  const State& s = state();
  return s.recording ? s.max_blocks : 0;
}

void set_label(const char* label) { state().label = label ? label : ""; }

// Stops recording and returns what was recorded, as JSON: one object per launch, offsets relative
// to the object the kernels are in (its path: "object").
std::string stop() {
  State& s = state();
  s.recording = false;
  Dl_info info{};
  dladdr(reinterpret_cast<void*>(&object_base), &info);
  std::ostringstream o;
  o << "{\"object\": ";
  json_string(o, info.dli_fname ? info.dli_fname : "");
  o << ", \"guard_pcs\": [";
  bool first = true;
  for (uint32_t g = 1; g < s.guard_pc.size(); ++g) {
    if (!s.guard_pc[g]) continue;
    o << (first ? "" : ", ") << "[" << g << ", " << s.guard_pc[g] - s.base << "]";
    first = false;
  }
  o << "], \"launches\": [";
  for (size_t i = 0; i < s.launches.size(); ++i) {
    const Launch& L = s.launches[i];
    o << (i ? ", " : "") << "{\"kernel\": " << L.kernel << ", \"label\": ";
    json_string(o, L.label);
    o << ", \"grid\": [" << L.grid.x << ", " << L.grid.y << ", " << L.grid.z << "], \"block\": [" << L.block.x << ", "
      << L.block.y << ", " << L.block.z << "], \"dynamic_shared_bytes\": " << L.shared << ", \"blocks\": " << L.blocks
      << ", \"threads\": " << L.threads << ", \"barriers\": " << L.barriers
      << ", \"grid_blocks\": " << 1ull * L.grid.x * L.grid.y * L.grid.z << ", \"local_accesses\": " << L.local_accesses
      << ", \"dram_read_bytes\": " << 32 * L.read_sectors.size()
      << ", \"dram_read_shared_bytes\": " << 32 * shared_sectors(L.read_sectors, L.blocks)
      << ", \"dram_write_bytes\": " << 32 * L.write_sectors.size()
      << ", \"dram_write_shared_bytes\": " << 32 * shared_sectors(L.write_sectors, L.blocks) << ", \"sites\": [";
    bool f = true;
    for (const auto& [pc, st] : L.sites) {
      o << (f ? "" : ", ") << "{\"pc\": " << pc << ", \"space\": \"" << (st.space == kShared ? "shared" : "global")
        << "\", \"op\": \"" << (st.store ? "store" : "load") << "\", \"size\": " << int{st.size}
        << ", \"requests\": " << st.requests << ", \"lanes\": " << st.lanes << ", \""
        << (st.space == kShared ? "wavefronts" : "sectors") << "\": " << st.units;
      if (st.space == kGlobal) o << ", \"bytes\": " << st.bytes;
      o << ", \"divergent\": " << st.divergent;
      o << "}";
      f = false;
    }
    o << "], \"warps\": [";
    for (size_t w = 0; w < L.warps.size(); ++w)
      o << (w ? ", " : "") << "{\"global_requests\": " << L.warps[w].global_requests
        << ", \"shared_requests\": " << L.warps[w].shared_requests << "}";
    o << "], \"guards\": [";
    f = true;
    for (const auto& [g, r] : L.guards) {
      o << (f ? "" : ", ") << "[" << g << ", " << r.first << ", " << r.second << "]";
      f = false;
    }
    o << "], \"warp_guards\": [";
    f = true;
    for (const auto& [key, runs] : L.warp_guards) {
      o << (f ? "" : ", ") << "[" << key.first << ", " << key.second << ", " << runs << "]";
      f = false;
    }
    o << "]}";
  }
  o << "]}";
  s.launches.clear();
  return o.str();
}

}  // namespace profile
}  // namespace cudasim

// The instrumentation's callbacks. Every one is called from kernel code (or the host code of the
// instrumented files, which runs with no simulated thread and is ignored).
#define LF_SIM_HOOK extern "C" __attribute__((no_sanitize("coverage"), visibility("default")))

LF_SIM_HOOK void __sanitizer_cov_trace_pc_guard_init(uint32_t* start, uint32_t* stop) {
  auto& s = cudasim::profile::state();
  for (uint32_t* g = start; g < stop; ++g)
    if (!*g) *g = ++s.guards;
  s.guard_pc.resize(s.guards + 1, 0);
}

LF_SIM_HOOK void __sanitizer_cov_trace_pc_guard(uint32_t* guard) {
  using namespace cudasim::profile;
  Lane* lane = lane_of_running_thread();
  if (!lane || !*guard) return;
  State& s = state();
  const uint32_t g = *guard;
  if (!s.guard_pc[g]) s.guard_pc[g] = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
  if (lane->guard_runs[g]++ == 0) lane->touched.push_back(g);
}

#define LF_SIM_TRACE(n, type)                                                                    \
  LF_SIM_HOOK void __sanitizer_cov_load##n(type* p) {                                            \
    cudasim::profile::record(reinterpret_cast<uintptr_t>(__builtin_return_address(0)), p, n, false); \
  }                                                                                              \
  LF_SIM_HOOK void __sanitizer_cov_store##n(type* p) {                                           \
    cudasim::profile::record(reinterpret_cast<uintptr_t>(__builtin_return_address(0)), p, n, true);  \
  }
LF_SIM_TRACE(1, uint8_t)
LF_SIM_TRACE(2, uint16_t)
LF_SIM_TRACE(4, uint32_t)
LF_SIM_TRACE(8, uint64_t)
LF_SIM_TRACE(16, __int128)
