// cudasim's memory profiler (csrc/cudasim/profile.cpp) on kernels whose counts are known, as
// Nsight Compute would give them on a GPU. Built and run by tests/test_gpu_profile.py:
//
//   clang++-16 -std=c++20 -O2 -g -DLENET_FAST_CUDASIM -DLENET_FAST_CUDASIM_PROFILE -Icsrc
//       -fsanitize-coverage=trace-pc-guard,no-prune,trace-loads,trace-stores -fsanitize-coverage-allowlist=LIST
//       tests/cudasim/profile_selftest.cpp csrc/cudasim/profile.cpp -o profile_selftest
//   ./profile_selftest > profile.json     (LIST instruments this file only: src:*profile_selftest.cpp, fun:*)
//
// Every launch is labelled with its case; the test reads the counts per label.
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/cuda/device.h"

namespace {

// 32 floats a warp, consecutive: 4 sectors per request, loads and stores.
__global__ void coalesced_copy(const float* in, float* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  out[i] = in[i];
}

// Lane i reads in[32 i]: every lane its own sector, 32 per request.
__global__ void strided_read(const float* in, float* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  out[i] = in[i * 32];
}

// Every lane reads the same global float and the same shared float: 1 sector, 1 wavefront.
__global__ void broadcast(const float* in, float* out) {
  __shared__ float s[32];
  if (threadIdx.x == 0) s[0] = in[0];
  __syncthreads();
  out[threadIdx.x] = s[0] + in[0];
}

// A 32x32 tile written by rows and read by columns, in a __shared__ array (PAD 0: every lane of
// the column read in one bank, 32-way) or in dynamic shared memory with a padded row (PAD 1: 1-way).
template <int PAD>
__global__ void transpose(const float* in, float* out) {
  __shared__ float fixed[32][32];
  LF_DYNAMIC_SHARED(float, dyn);
  float* tile = PAD ? dyn : &fixed[0][0];
  constexpr int kRow = 32 + PAD;
  const int x = threadIdx.x, y = threadIdx.y;
  tile[y * kRow + x] = in[y * 32 + x];
  __syncthreads();
  out[y * 32 + x] = tile[x * kRow + y];
}

// Only the harness's own work (indices, a barrier, a shuffle, locals): nothing to count.
__global__ void no_memory(float* out, int n) {
  float local[8];
  for (int i = 0; i < 8; ++i) local[i] = static_cast<float>(threadIdx.x + i);
  __syncthreads();
  float v = __shfl_xor_sync(0xffffffffu, local[n & 7], 1);
  if (n < 0) out[0] = v;  // never: n >= 0
}

// 8-byte shared accesses go in two phases of 16 lanes: consecutive words are 1 wavefront a phase
// (2 a request); every other pair of words is 2 a phase (4 a request).
__global__ void wide_shared(float* out) {
  __shared__ unsigned long long s[64];
  const int t = threadIdx.x;
  s[t] = t;
  s[t + 32] = t;
  __syncthreads();
  const unsigned long long a = s[t], b = s[(2 * t) % 64];
  out[t] = static_cast<float>(a + b);
}

// A value written and read back in one launch costs DRAM its write only.
__global__ void write_then_read(float* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  out[i] = static_cast<float>(i);
  __syncthreads();
  const float v = out[i ^ 1];  // the neighbour's: no compiler can forward it
  __syncthreads();
  out[i] = v * 2.0f;
}

// Every block reads the same 64 weights and 64 inputs of its own, which overlap its neighbour's by
// 4 (a sector two blocks share): sampled, the weights stand for the grid once, the inputs once a block.
__global__ void weights_and_slices(const float* w, const float* x, float* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  out[i] = w[threadIdx.x] * x[blockIdx.x * 60 + threadIdx.x];
}

}  // namespace

int main() {
  constexpr int kN = 1024;
  float *in = nullptr, *out = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&in), sizeof(float) * kN * 32);
  cudaMalloc(reinterpret_cast<void**>(&out), sizeof(float) * kN);
  cudaMemset(in, 0, sizeof(float) * kN * 32);
  cudasim::profile::start();
  cudasim::profile::set_label("coalesced_copy");
  LF_LAUNCH(coalesced_copy, kN / 256, 256, 0, nullptr)(in, out);
  cudasim::profile::set_label("strided_read");
  LF_LAUNCH(strided_read, kN / 256, 256, 0, nullptr)(in, out);
  cudasim::profile::set_label("broadcast");
  LF_LAUNCH(broadcast, 1, 64, 0, nullptr)(in, out);
  cudasim::profile::set_label("transpose_unpadded");
  LF_LAUNCH(transpose<0>, 1, dim3(32, 32), 0, nullptr)(in, out);
  cudasim::profile::set_label("transpose_padded");
  LF_LAUNCH(transpose<1>, 1, dim3(32, 32), sizeof(float) * 32 * 33, nullptr)(in, out);
  cudasim::profile::set_label("no_memory");
  LF_LAUNCH(no_memory, 1, 64, 0, nullptr)(out, 3);
  cudasim::profile::set_label("wide_shared");
  LF_LAUNCH(wide_shared, 1, 32, 0, nullptr)(out);
  cudasim::profile::set_label("write_then_read");
  LF_LAUNCH(write_then_read, 4, 256, 0, nullptr)(out);
  const std::string json = cudasim::profile::stop();
  cudasim::profile::start("weights_and_slices", 4);  // a sample: the first 4 of 32 blocks
  LF_LAUNCH(weights_and_slices, 32, 64, 0, nullptr)(in, in + 64 * 32, in + 128 * 32);
  const std::string sampled = cudasim::profile::stop();
  if (cudaGetLastError() != cudaSuccess) {
    std::fprintf(stderr, "a launch failed: %s\n", cudasim::last_error_detail().c_str());
    return 1;
  }
  std::printf("%s\n%s\n", json.c_str(), sampled.c_str());
  cudaFree(in);
  cudaFree(out);
  return 0;
}
