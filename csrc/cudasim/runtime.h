// cudasim, the host side: the CUDA runtime types and calls lenet_fast's launchers and their
// callers use (dim3, streams, error codes, cudaGetLastError, cudaFuncSetAttribute, cudaMalloc),
// for running the project's .cu sources on the CPU. Header-only and free of torch, so the same
// kernel sources build under nvcc, under this harness inside a torch extension, and in a plain
// C++ test program. The kernel side (threads, barriers, warps, launches) is device.h.
//
// Errors follow CUDA's rules: a launch the GPU would refuse (block or grid too large, too much
// dynamic shared memory) sets the sticky error that cudaGetLastError() returns and clears; an
// error inside a kernel (a device-side assert, a barrier reached by some threads only, a
// deadlock, a shuffle from a lane outside its mask) stops the launch and sets it too, with
// cudasim::last_error_detail() saying where. Allocations (cudaMalloc) are exact-size heap blocks
// aligned to 256 bytes as on the GPU, filled with 0xFF bytes: an uninitialised float reads as NaN, and AddressSanitizer reports a
// read or write past the end at the kernel's source line.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned int x, y, z;
};

struct CUstream_st;
using cudaStream_t = CUstream_st*;

// The codes are CUDA's own, so messages and tests read the same on both.
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorIllegalAddress = 700,
  cudaErrorAssert = 710,
  cudaErrorLaunchFailure = 719,
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaMemcpyKind { cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2,
                      cudaMemcpyDeviceToDevice = 3, cudaMemcpyDefault = 4 };

namespace cudasim {

// The limits a launch is checked against: an sm_90 GPU's (H100/H200).
constexpr unsigned int kMaxThreadsPerBlock = 1024;
constexpr unsigned int kMaxBlockDim[3] = {1024, 1024, 64};
constexpr unsigned long long kMaxGridDim[3] = {2147483647ull, 65535, 65535};
constexpr size_t kDefaultSharedBytes = 48 * 1024;    // dynamic shared memory without opting in
constexpr size_t kMaxOptInSharedBytes = 227 * 1024;  // cudaFuncAttributeMaxDynamicSharedMemorySize

enum class Order { Forward, Reverse, Shuffle };
enum class Mode { Fibers, Threads };

struct Settings {
  Order order = Order::Forward;
  unsigned seed = 0;
  Mode mode = Mode::Fibers;
};

inline Settings read_env() {
  Settings s;
  if (const char* o = std::getenv("LENET_FAST_CUDASIM_ORDER")) {
    const std::string v(o);
    if (v.rfind("reverse", 0) == 0) s.order = Order::Reverse;
    if (v.rfind("shuffle", 0) == 0) {
      s.order = Order::Shuffle;
      const auto colon = v.find(':');
      if (colon != std::string::npos) s.seed = static_cast<unsigned>(std::stoul(v.substr(colon + 1)));
    }
  }
  if (const char* m = std::getenv("LENET_FAST_CUDASIM_MODE"))
    if (std::string(m) == "threads") s.mode = Mode::Threads;
  return s;
}

inline Settings& settings() {
  static Settings s = read_env();
  return s;
}

inline void set_order(Order order, unsigned seed = 0) {
  settings().order = order;
  settings().seed = seed;
}

// Counters, so tests can see that kernels really ran here.
struct Stats {
  std::atomic<long long> launches{0}, blocks{0}, threads{0};
};
inline Stats& stats() {
  static Stats s;
  return s;
}

namespace detail {

struct ErrorState {
  std::mutex mu;
  cudaError_t sticky = cudaSuccess;
  std::string detail;
  std::map<const void*, size_t> shared_opt_in;  // kernel -> its MaxDynamicSharedMemorySize
};
inline ErrorState& errors() {
  static ErrorState e;
  return e;
}

}  // namespace detail

// Records an error for cudaGetLastError() (the first one wins until it is read).
inline cudaError_t set_error(cudaError_t code, const std::string& detail) {
  auto& e = detail::errors();
  std::lock_guard<std::mutex> lock(e.mu);
  if (e.sticky == cudaSuccess) {
    e.sticky = code;
    e.detail = detail;
  }
  return code;
}

// What the last error was about (file:line and the reason); kept after cudaGetLastError() reads
// the code, until the next error replaces it.
inline std::string last_error_detail() {
  auto& e = detail::errors();
  std::lock_guard<std::mutex> lock(e.mu);
  return e.detail;
}

inline size_t shared_limit(const void* kernel) {
  auto& e = detail::errors();
  std::lock_guard<std::mutex> lock(e.mu);
  const auto it = e.shared_opt_in.find(kernel);
  return it == e.shared_opt_in.end() ? kDefaultSharedBytes : it->second;
}

}  // namespace cudasim

inline cudaError_t cudaPeekAtLastError() {
  auto& e = cudasim::detail::errors();
  std::lock_guard<std::mutex> lock(e.mu);
  return e.sticky;
}

inline cudaError_t cudaGetLastError() {
  auto& e = cudasim::detail::errors();
  std::lock_guard<std::mutex> lock(e.mu);
  const cudaError_t code = e.sticky;
  e.sticky = cudaSuccess;  // the detail stays readable until the next error
  return code;
}

inline const char* cudaGetErrorString(cudaError_t code) {
  switch (code) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorAssert: return "device-side assert triggered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}

template <class Kernel>
cudaError_t cudaFuncSetAttribute(Kernel* kernel, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      static_cast<size_t>(value) > cudasim::kMaxOptInSharedBytes)
    return cudasim::set_error(cudaErrorInvalidValue,
                              "cudaFuncSetAttribute: MaxDynamicSharedMemorySize of " +
                                  std::to_string(value) + " bytes is over the device's 227 KiB");
  auto& e = cudasim::detail::errors();
  std::lock_guard<std::mutex> lock(e.mu);
  e.shared_opt_in[reinterpret_cast<const void*>(kernel)] = static_cast<size_t>(value);
  return cudaSuccess;
}

inline cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  // Exact size, so that a sanitizer sees the first byte past the end; aligned to 256 bytes, as
  // cudaMalloc's allocations are (the profiler counts 32-byte sectors from the addresses).
  if (posix_memalign(ptr, 256, bytes ? bytes : 1) != 0) *ptr = nullptr;
  if (!*ptr) return cudasim::set_error(cudaErrorMemoryAllocation, "cudaMalloc");
  std::memset(*ptr, 0xFF, bytes);  // uninitialised floats read as NaN
  return cudaSuccess;
}

inline cudaError_t cudaFree(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}

inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}

inline cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}

// Launches run to completion before they return: every launch is synchronous here.
inline cudaError_t cudaDeviceSynchronize() { return cudaPeekAtLastError(); }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaPeekAtLastError(); }
