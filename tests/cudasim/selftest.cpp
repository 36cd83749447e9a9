// The CPU harness for CUDA kernels (csrc/cudasim/) tested on small kernels of its own, with the
// bugs it exists to catch planted on purpose. Built and run by tests/test_cudasim.py:
//
//   g++ -std=c++20 -DLENET_FAST_CUDASIM -Icsrc tests/cudasim/selftest.cpp -o selftest [-fsanitize=...]
//   ./selftest CASE        (LENET_FAST_CUDASIM_ORDER / _MODE pick the thread order and fibers or threads)
//
// Each case prints what it saw; exit 0 means the harness behaved as CUDA would (a correct kernel
// gave the right answer, a broken one was caught), exit 1 that it did not.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cuda/device.h"

namespace {

int report(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok" : "WRONG", what.c_str());
  return ok ? 0 : 1;
}

// Launch status and the harness's explanation, one line.
std::string status() {
  const cudaError_t e = cudaGetLastError();
  return std::string(cudaGetErrorString(e)) + (e == cudaSuccess ? "" : " -- " + cudasim::last_error_detail());
}

// ---- kernels -----------------------------------------------------------------------------------

// out[b] = sum of in[b * n + i] over i: a shared-memory tree with a barrier per level.
__global__ void block_sum(const float* in, float* out, int n) {
  LF_DYNAMIC_SHARED(float, s);
  const int t = threadIdx.x;
  s[t] = t < n ? in[blockIdx.x * n + t] : 0.0f;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (t < stride) s[t] += s[t + stride];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

// The same rotation with and without the barrier between writing s and reading a neighbour's slot.
template <bool BARRIER>
__global__ void rotate(const float* in, float* out) {
  LF_DYNAMIC_SHARED(float, s);
  const int t = threadIdx.x, n = blockDim.x;
  s[t] = in[t];
  if (BARRIER) __syncthreads();
  out[t] = s[(t + 1) % n];  // planted: without the barrier, the neighbour may not have written yet
}

// Every warp reduction of widths 2..32: out[i * 5 + k] = the sum over i's group by xor, down,
// up-scan last lane, broadcast of lane 0, and a ballot count.
__global__ void warp_ops(const float* in, float* out, int width) {
  const int t = threadIdx.x;
  float v = in[t];
  float x = v;
  for (int m = width / 2; m > 0; m /= 2) x += __shfl_xor_sync(0xffffffffu, x, m, width);
  float d = v;
  for (int o = width / 2; o > 0; o /= 2) d += __shfl_down_sync(0xffffffffu, d, o, width);
  d = __shfl_sync(0xffffffffu, d, 0, width);  // the group's first lane holds the sum
  float u = v;
  for (int o = 1; o < width; o *= 2) {
    const float up = __shfl_up_sync(0xffffffffu, u, o, width);
    if ((t % width) >= o) u += up;
  }
  u = __shfl_sync(0xffffffffu, u, width - 1, width);  // inclusive scan: the last lane has the sum
  const unsigned ballot = __ballot_sync(0xffffffffu, v > 0.0f);
  out[t * 4 + 0] = x;
  out[t * 4 + 1] = d;
  out[t * 4 + 2] = u;
  out[t * 4 + 3] = static_cast<float>(__popc(ballot));
}

__global__ void out_of_bounds(float* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) out[i] = 1.0f;  // planted off-by-one: i == n is past the end
}

__global__ void divergent_barrier(float* out) {
  if (threadIdx.x < 16) {
    __syncthreads();  // planted: half the block waits here ...
  } else {
    __syncthreads();  // ... and half here
  }
  out[threadIdx.x] = 1.0f;
}

__global__ void exit_before_barrier(float* out) {
  if (threadIdx.x == 3) return;  // planted: thread 3 never reaches the barrier
  __syncthreads();
  out[threadIdx.x] = 1.0f;
}

__global__ void warp_vs_block(float* out) {
  float v = threadIdx.x;
  if (threadIdx.x < 16) v = __shfl_sync(0xffffffffu, v, 0);  // lanes 16..31 never come
  __syncthreads();
  out[threadIdx.x] = v;
}

__global__ void shuffle_outside_mask(float* out) {
  if (threadIdx.x < 16) out[threadIdx.x] = __shfl_sync(0x0000ffffu, static_cast<float>(threadIdx.x), 20);
}

__global__ void reads_shared_unwritten(float* out) {
  LF_DYNAMIC_SHARED(float, s);
  out[threadIdx.x] = s[threadIdx.x];  // planted: nothing wrote s
}

__global__ void asserts(const int* v) { LF_DEVICE_ASSERT(v[threadIdx.x] >= 0); }

__global__ void nothing(float*) {}

// ---- cases -------------------------------------------------------------------------------------

std::vector<float> run_rotate(bool barrier) {
  const int n = 64;
  std::vector<float> in(n), out(n);
  for (int i = 0; i < n; ++i) in[i] = static_cast<float>(i);
  float *din, *dout;
  cudaMalloc(reinterpret_cast<void**>(&din), n * sizeof(float));
  cudaMalloc(reinterpret_cast<void**>(&dout), n * sizeof(float));
  cudaMemcpy(din, in.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  if (barrier)
    LF_LAUNCH(rotate<true>, 1, n, n * sizeof(float), nullptr)(din, dout);
  else
    LF_LAUNCH(rotate<false>, 1, n, n * sizeof(float), nullptr)(din, dout);
  cudaMemcpy(out.data(), dout, n * sizeof(float), cudaMemcpyDeviceToHost);
  cudaFree(din);
  cudaFree(dout);
  return out;
}

int case_block_sum() {
  const int blocks = 5, n = 200;
  std::vector<float> in(blocks * n), out(blocks);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i % 7) - 3.0f;
  float *din, *dout;
  cudaMalloc(reinterpret_cast<void**>(&din), in.size() * sizeof(float));
  cudaMalloc(reinterpret_cast<void**>(&dout), blocks * sizeof(float));
  cudaMemcpy(din, in.data(), in.size() * sizeof(float), cudaMemcpyHostToDevice);
  LF_LAUNCH(block_sum, blocks, 256, 256 * sizeof(float), nullptr)(din, dout, n);
  const std::string st = status();
  cudaMemcpy(out.data(), dout, blocks * sizeof(float), cudaMemcpyDeviceToHost);
  cudaFree(din);
  cudaFree(dout);
  bool ok = st == "no error";
  for (int b = 0; b < blocks; ++b) {
    float want = 0;
    for (int i = 0; i < n; ++i) want += in[b * n + i];
    ok = ok && out[b] == want;
  }
  return report(ok, "block_sum over 5 blocks of 256 threads: " + st);
}

int case_rotate() {
  const std::vector<float> out = run_rotate(true);
  bool ok = true;
  for (int i = 0; i < 64; ++i) ok = ok && out[i] == static_cast<float>((i + 1) % 64);
  return report(ok, "rotation with its barrier gives the right answer");
}

int case_missing_barrier() {
  const std::vector<float> out = run_rotate(false);
  int wrong = 0;
  for (int i = 0; i < 64; ++i) wrong += !(out[i] == static_cast<float>((i + 1) % 64));
  std::printf("%d of 64 outputs wrong without the barrier\n", wrong);
  return report(wrong > 0, "a missing __syncthreads() gives a wrong answer in this thread order");
}

int case_warp() {
  int bad = 0;
  for (int width = 2; width <= 32; width *= 2) {
    const int n = 64;
    std::vector<float> in(n), out(4 * n);
    for (int i = 0; i < n; ++i) in[i] = static_cast<float>((i * 5) % 11) - 4.0f;
    float *din, *dout;
    cudaMalloc(reinterpret_cast<void**>(&din), n * sizeof(float));
    cudaMalloc(reinterpret_cast<void**>(&dout), 4 * n * sizeof(float));
    cudaMemcpy(din, in.data(), n * sizeof(float), cudaMemcpyHostToDevice);
    LF_LAUNCH(warp_ops, 1, n, 0, nullptr)(din, dout, width);
    const std::string st = status();
    cudaMemcpy(out.data(), dout, 4 * n * sizeof(float), cudaMemcpyDeviceToHost);
    for (int i = 0; i < n; ++i) {
      const int g0 = i / width * width;
      float sum = 0;
      int pos = 0;
      for (int j = g0; j < g0 + width; ++j) sum += in[j];
      for (int j = i / 32 * 32; j < i / 32 * 32 + 32; ++j) pos += in[j] > 0.0f;
      const bool row = out[i * 4] == sum && out[i * 4 + 1] == sum && out[i * 4 + 2] == sum && out[i * 4 + 3] == pos;
      if (!row && bad++ < 5)
        std::printf("width %d lane %d: xor %g down %g up %g ballot %g, want %g and %d (%s)\n", width, i,
                    out[i * 4], out[i * 4 + 1], out[i * 4 + 2], out[i * 4 + 3], sum, pos, st.c_str());
    }
    cudaFree(din);
    cudaFree(dout);
  }
  return report(bad == 0, "warp shuffles (xor, down, up, idx) and ballot at widths 2 to 32");
}

int expect_error(const char* what, const char* must_contain) {
  const std::string st = status();
  std::printf("%s\n", st.c_str());
  return report(st.find(must_contain) != std::string::npos, what);
}

float* scratch(int n) {
  float* p;
  cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(float));
  return p;
}

int case_divergent_barrier() {
  LF_LAUNCH(divergent_barrier, 1, 32, 0, nullptr)(scratch(32));
  return expect_error("threads at two different barriers stop the launch", "reached different __syncthreads()");
}

int case_exit_before_barrier() {
  LF_LAUNCH(exit_before_barrier, 1, 32, 0, nullptr)(scratch(32));
  return expect_error("a thread that exits before a barrier others wait at stops the launch", "exited while");
}

int case_deadlock() {
  LF_LAUNCH(warp_vs_block, 1, 32, 0, nullptr)(scratch(32));
  return expect_error("half a warp at a shuffle, half at a barrier: deadlock", "deadlock");
}

int case_shuffle_outside_mask() {
  LF_LAUNCH(shuffle_outside_mask, 1, 32, 0, nullptr)(scratch(32));
  return expect_error("reading a lane outside the shuffle's mask stops the launch", "outside the mask");
}

int case_device_assert() {
  int* v;
  cudaMalloc(reinterpret_cast<void**>(&v), 8 * sizeof(int));
  const int h[8] = {0, 1, 2, 3, -1, 5, 6, 7};
  cudaMemcpy(v, h, sizeof h, cudaMemcpyHostToDevice);
  LF_LAUNCH(asserts, 1, 8, 0, nullptr)(v);
  return expect_error("a failed device-side assertion is cudaErrorAssert", "device-side assert triggered");
}

int case_uninitialised_shared() {
  float* out = scratch(32);
  LF_LAUNCH(reads_shared_unwritten, 1, 32, 32 * sizeof(float), nullptr)(out);
  float h[32];
  cudaMemcpy(h, out, sizeof h, cudaMemcpyDeviceToHost);
  int nans = 0;
  for (float f : h) nans += std::isnan(f);
  return report(nans == 32, "unwritten dynamic shared memory reads as NaN (" + std::to_string(nans) + " of 32)");
}

int case_bad_launch() {
  float* out = scratch(1);
  int fails = 0;
  auto expect = [&](const char* what, cudaError_t want) {
    const std::string detail = cudasim::last_error_detail();
    const cudaError_t got = cudaGetLastError();
    std::printf("%-52s %s%s\n", what, cudaGetErrorString(got), got == cudaSuccess ? "" : (" -- " + detail).c_str());
    fails += got != want;
  };
  LF_LAUNCH(nothing, 1, 1025, 0, nullptr)(out);
  expect("1025 threads in a block", cudaErrorInvalidConfiguration);
  LF_LAUNCH(nothing, dim3(1, 65536), 32, 0, nullptr)(out);
  expect("grid.y of 65536", cudaErrorInvalidConfiguration);
  LF_LAUNCH(nothing, dim3(1, 1, 1), dim3(8, 8, 65), 0, nullptr)(out);
  expect("block.z of 65", cudaErrorInvalidConfiguration);
  LF_LAUNCH(nothing, 0, 32, 0, nullptr)(out);
  expect("an empty grid", cudaErrorInvalidConfiguration);
  LF_LAUNCH(nothing, 1, 32, 49 * 1024, nullptr)(out);
  expect("49 KiB of dynamic shared memory, not opted in", cudaErrorInvalidValue);
  cudaFuncSetAttribute(nothing, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024);
  LF_LAUNCH(nothing, 1, 32, 49 * 1024, nullptr)(out);
  expect("49 KiB after opting in to 100 KiB", cudaSuccess);
  cudaFuncSetAttribute(nothing, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 * 1024);
  expect("opting in to 228 KiB", cudaErrorInvalidValue);
  return report(fails == 0, "launch configurations are checked as the GPU checks them");
}

int case_out_of_bounds() {
  const int n = 100;
  float* out = scratch(n);
  LF_LAUNCH(out_of_bounds, 4, 32, 0, nullptr)(out, n);
  return report(true, "out-of-bounds store launched (AddressSanitizer reports it, if built with it)");
}

}  // namespace

int main(int argc, char** argv) {
  const std::string c = argc > 1 ? argv[1] : "";
  if (c == "block_sum") return case_block_sum();
  if (c == "rotate") return case_rotate();
  if (c == "missing_barrier") return case_missing_barrier();
  if (c == "warp") return case_warp();
  if (c == "divergent_barrier") return case_divergent_barrier();
  if (c == "exit_before_barrier") return case_exit_before_barrier();
  if (c == "deadlock") return case_deadlock();
  if (c == "shuffle_outside_mask") return case_shuffle_outside_mask();
  if (c == "device_assert") return case_device_assert();
  if (c == "uninitialised_shared") return case_uninitialised_shared();
  if (c == "bad_launch") return case_bad_launch();
  if (c == "out_of_bounds") return case_out_of_bounds();
  std::fprintf(stderr, "usage: selftest CASE\n");
  return 2;
}
