// Every launcher of lenet_fast's CUDA kernels once, at small odd sizes, with no torch: the program
// tests/test_cudasim.py builds with AddressSanitizer and with ThreadSanitizer and runs with
// LENET_FAST_CUDASIM_MODE=threads (each CUDA thread an OS thread), so that an out-of-bounds access
// or a race on shared memory in a project kernel is reported at its source line. Inputs are
// random; every output starts as NaN (cudaMalloc here fills 0xFF) and must come out finite.
//
//   g++ -std=c++20 -DLENET_FAST_CUDASIM -Icsrc -x c++ csrc/kernels/cuda/*.cu -x none
//       tests/cudasim/run_kernels.cpp -fsanitize=thread -o run_kernels && ./run_kernels
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/launchers.h"

using namespace lenet_fast::cuda;
using lenet_fast::Act;
using lenet_fast::Pool;
using lenet_fast::Variant;

namespace {

std::mt19937 rng(7);
int failures = 0;

struct Buffer {  // a device buffer and its host copy
  std::vector<float> host;
  float* dev = nullptr;
  explicit Buffer(size_t n, bool random = false) : host(n) {
    cudaMalloc(reinterpret_cast<void**>(&dev), n * sizeof(float));  // 0xFF: NaN until written
    if (random) {
      std::normal_distribution<float> d(0.0f, 0.5f);
      for (float& v : host) v = d(rng);
      cudaMemcpy(dev, host.data(), n * sizeof(float), cudaMemcpyHostToDevice);
    }
  }
  ~Buffer() { cudaFree(dev); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

void check(const char* what, cudaError_t err, std::initializer_list<const Buffer*> outputs) {
  bool ok = err == cudaSuccess;
  if (!ok) std::printf("%s: %s (%s)\n", what, cudaGetErrorString(err), cudasim::last_error_detail().c_str());
  for (const Buffer* b : outputs) {
    std::vector<float> h(b->host.size());
    cudaMemcpy(h.data(), b->dev, h.size() * sizeof(float), cudaMemcpyDeviceToHost);
    for (size_t i = 0; i < h.size(); ++i) {
      if (!std::isfinite(h[i])) {
        std::printf("%s: output element %zu of %zu is %g (never written?)\n", what, i, h.size(), h[i]);
        ok = false;
        break;
      }
    }
  }
  std::printf("%-44s %s\n", what, ok ? "ok" : "FAILED");
  failures += !ok;
}

}  // namespace

int main() {
  const Variant tanh_avg{}, relu_max{Act::kRelu, Pool::kMax, 0.01f}, sigmoid_max{Act::kSigmoid, Pool::kMax, 0.01f};
  {  // conv forward, fused (with act) and plain, odd sizes and padding
    const int64_t N = 2, IC = 2, H = 9, W = 7, OC = 3, pad = 1, Ho = H + 2 * pad - 4, Wo = W + 2 * pad - 4;
    Buffer x(N * IC * H * W, true), w(OC * IC * 25, true), b(OC, true);
    Buffer y(N * OC * (Ho / 2) * (Wo / 2)), act(N * OC * Ho * Wo), plain(N * OC * Ho * Wo);
    check("conv forward, fused, with act", launch_conv_forward(x.dev, w.dev, b.dev, y.dev, act.dev, N, IC, H, W, OC, pad, true, tanh_avg, nullptr), {&y, &act});
    check("conv forward, fused relu + max, with act", launch_conv_forward(x.dev, w.dev, b.dev, y.dev, act.dev, N, IC, H, W, OC, pad, true, relu_max, nullptr), {&y, &act});
    check("conv forward, plain", launch_conv_forward(x.dev, w.dev, b.dev, plain.dev, nullptr, N, IC, H, W, OC, pad, false, tanh_avg, nullptr), {&plain});
  }
  {  // conv1 of LeNet: 256 threads, 6 channels of 28x28
    const int64_t N = 2, OC = 6;
    Buffer x(N * 28 * 28, true), w(OC * 25, true), b(OC, true), y(N * OC * 14 * 14);
    check("conv1 forward (28x28, pad 2)", launch_conv_forward(x.dev, w.dev, b.dev, y.dev, nullptr, N, 1, 28, 28, OC, 2, true, tanh_avg, nullptr), {&y});
  }
  {  // weight and bias gradient
    const int64_t N = 3, IC = 2, H = 8, W = 9, OC = 3, pad = 0, Ho = H - 4, Wo = W - 4;
    Buffer g(N * OC * Ho * Wo, true), x(N * IC * H * W, true);
    Buffer partial(grad_chunks(N) * (OC * IC * 25 + OC)), dw(OC * IC * 25), db(OC);
    check("conv weight gradient", launch_conv_weight_grad(g.dev, nullptr, x.dev, partial.dev, dw.dev, db.dev, N, IC, H, W, OC, pad, tanh_avg, nullptr), {&dw, &db});
    Buffer gp(N * OC * (Ho / 2) * (Wo / 2), true), act(N * OC * Ho * Wo, true), dw2(OC * IC * 25), db2(OC);
    check("conv weight gradient through pool + tanh", launch_conv_weight_grad(gp.dev, act.dev, x.dev, partial.dev, dw2.dev, db2.dev, N, IC, H, W, OC, pad, tanh_avg, nullptr), {&dw2, &db2});
    check("conv weight gradient through max pool + sigmoid", launch_conv_weight_grad(gp.dev, act.dev, x.dev, partial.dev, dw2.dev, db2.dev, N, IC, H, W, OC, pad, sigmoid_max, nullptr), {&dw2, &db2});
  }
  {  // pool and tanh, forward and backward
    const int64_t planes = 3, H = 7, W = 9, n = planes * H * W;
    Buffer x(n, true), y(planes * (H / 2) * (W / 2)), g(planes * (H / 2) * (W / 2), true), act(n, true), d(n), e(n);
    check("avg pool forward", launch_avg_pool_forward(x.dev, y.dev, planes, H, W, nullptr), {&y});
    check("tanh + pool backward", launch_act_pool_backward(g.dev, act.dev, d.dev, planes, H, W, tanh_avg, nullptr), {&d});
    check("relu + max pool backward", launch_act_pool_backward(g.dev, act.dev, d.dev, planes, H, W, relu_max, nullptr), {&d});
    check("avg pool backward", launch_act_pool_backward(g.dev, nullptr, e.dev, planes, H, W, tanh_avg, nullptr), {&e});
    Buffer t(n), dt(n);
    check("tanh forward", launch_act_forward(x.dev, t.dev, n, tanh_avg, nullptr), {&t});
    check("tanh backward", launch_act_backward(x.dev, act.dev, dt.dev, n, tanh_avg, nullptr), {&dt});
    check("sigmoid forward", launch_act_forward(x.dev, t.dev, n, sigmoid_max, nullptr), {&t});
  }
  {  // the GEMM three ways, and the bias sum
    const int64_t M = 5, K = 37, J = 9;
    Buffer x(M * K, true), w(J * K, true), b(J, true), y(M * J), g(M * J, true), dx(M * K), dw(J * K), db(J);
    check("linear + tanh forward", launch_gemm(x.dev, K, 1, w.dev, 1, K, y.dev, M, J, K, b.dev, &tanh_avg, nullptr, nullptr), {&y});
    check("linear dL/dx", launch_gemm(g.dev, J, 1, w.dev, K, 1, dx.dev, M, K, J, nullptr, nullptr, nullptr, nullptr), {&dx});
    check("linear dL/dW", launch_gemm(g.dev, 1, J, x.dev, K, 1, dw.dev, J, K, M, nullptr, nullptr, db.dev, nullptr), {&dw, &db});
  }
  {  // the training loader
    const int64_t n = 5, row = 33, B = 4;
    std::vector<uint8_t> images(n * row);
    for (size_t i = 0; i < images.size(); ++i) images[i] = static_cast<uint8_t>(i * 37);
    const int64_t index[B] = {4, 0, 2, 2};
    uint8_t* di;
    int64_t* dix;
    cudaMalloc(reinterpret_cast<void**>(&di), images.size());
    cudaMalloc(reinterpret_cast<void**>(&dix), sizeof index);
    cudaMemcpy(di, images.data(), images.size(), cudaMemcpyHostToDevice);
    cudaMemcpy(dix, index, sizeof index, cudaMemcpyHostToDevice);
    Buffer out(B * row);
    check("gather_normalize", launch_gather_normalize(di, dix, out.dev, n, B, row, 0.5f, 0.5f, nullptr), {&out});
    cudaFree(di);
    cudaFree(dix);
  }
  {  // the whole network (lenet5.cu): forward for inference (float, uint8) and training, backward
    using G = NetGeometry;
    const int64_t N = 3, J3 = 10;
    const NetLayout L = net_layout(J3);
    Buffer params(L.total, true);  // the parameters in model order, where the gradients go too
    const float* q = params.dev;
    const NetParams p{q + L.w1, q + L.b1, q + L.w2, q + L.b2, q + L.f1w, q + L.f1b, q + L.f2w, q + L.f2b, q + L.f3w, q + L.f3b};
    Buffer x(N * 28 * 28, true), logits(N * J3), logits_u8(N * J3), logits_t(N * J3);
    check("whole network forward", launch_net_forward(x.dev, nullptr, 0, 1, p, logits.dev, nullptr, N, 28, 28, 2, J3, tanh_avg, nullptr), {&logits});
    std::vector<uint8_t> images(N * 32 * 32);
    for (size_t i = 0; i < images.size(); ++i) images[i] = static_cast<uint8_t>(i * 29);
    uint8_t* di;
    cudaMalloc(reinterpret_cast<void**>(&di), images.size());
    cudaMemcpy(di, images.data(), images.size(), cudaMemcpyHostToDevice);
    check("whole network forward, uint8 32x32", launch_net_forward(nullptr, di, 0.5f, 0.5f, p, logits_u8.dev, nullptr, N, 32, 32, 0, J3, tanh_avg, nullptr), {&logits_u8});
    cudaFree(di);
    Buffer act1(N * 6 * 28 * 28), p1(N * 6 * 14 * 14), act2(N * 16 * 10 * 10), p2(N * 400), h1(N * 120), h2(N * 84);
    const NetSaved s{act1.dev, p1.dev, act2.dev, p2.dev, h1.dev, h2.dev};
    check("whole network forward, training", launch_net_forward(x.dev, nullptr, 0, 1, p, logits_t.dev, &s, N, 28, 28, 2, J3, tanh_avg, nullptr),
          {&logits_t, &act1, &p1, &act2, &p2, &h1, &h2});
    Buffer g3(N * J3, true), g2(N * G::kJ2), g1(N * G::kJ1), dpre2(N * 1600), dp1(N * 1176);
    Buffer partial(grad_chunks(N) * L.total), grads(L.total);  // ten gradients side by side
    const int64_t at[10] = {L.w1, L.b1, L.w2, L.b2, L.f1w, L.f1b, L.f2w, L.f2b, L.f3w, L.f3b};
    const int64_t size[10] = {6 * 25, 6, 16 * 6 * 25, 16, 120 * 400, 120, 84 * 120, 84, J3 * 84, J3};
    NetGradOut out{};
    for (int i = 0; i < 10; ++i) {
      out.p[i] = grads.dev + at[i];
      const int64_t end = i < 9 ? at[i + 1] : L.total;  // the layout's padding after part i: no kernel writes it
      cudaMemset(grads.dev + at[i] + size[i], 0, sizeof(float) * (end - at[i] - size[i]));
    }
    check("whole network backward", launch_net_backward(g3.dev, x.dev, p, s, {g2.dev, g1.dev, dpre2.dev, dp1.dev}, partial.dev,
                                                        out, N, 28, 28, 2, J3, tanh_avg, nullptr), {&g2, &g1, &dpre2, &dp1, &grads});
    check("whole network forward, training, relu + max", launch_net_forward(x.dev, nullptr, 0, 1, p, logits_t.dev, &s, N, 28, 28, 2, J3, relu_max, nullptr),
          {&logits_t, &act1, &p1, &act2, &p2, &h1, &h2});
    check("whole network backward, relu + max", launch_net_backward(g3.dev, x.dev, p, s, {g2.dev, g1.dev, dpre2.dev, dp1.dev}, partial.dev,
                                                                    out, N, 28, 28, 2, J3, relu_max, nullptr), {&g2, &g1, &dpre2, &dp1, &grads});
  }
  std::printf("%s\n", failures ? "some kernels FAILED" : "every kernel ran");
  return failures ? 1 : 0;
}
