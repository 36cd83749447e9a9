// C++ smoke test of the ops through the dispatcher, against libtorch's own conv2d / avg_pool2d /
// tanh / linear: what a C++ user of the library sees. Exits non-zero on the first mismatch.
#include <torch/torch.h>

#include <cstdio>
#include <string>

namespace {

int failures = 0;

void expect_close(const std::string& what, const at::Tensor& got, const at::Tensor& want,
                  double tol = 1e-4) {
  const bool ok = got.sizes() == want.sizes() && at::allclose(got, want, tol, tol);
  std::printf("%-40s %s\n", what.c_str(), ok ? "ok" : "MISMATCH");
  if (!ok) ++failures;
}

c10::OperatorHandle op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

}  // namespace

int main() {
  torch::manual_seed(0);
  const auto x = torch::randn({3, 1, 28, 28});
  const auto w1 = torch::randn({6, 1, 5, 5}) / 5, b1 = torch::randn({6});
  const auto w2 = torch::randn({16, 6, 5, 5}) / 12, b2 = torch::randn({16});
  const auto f1 = torch::randn({120, 400}) / 20, g1 = torch::randn({120});
  const auto f2 = torch::randn({84, 120}) / 11, g2 = torch::randn({84});
  const auto f3 = torch::randn({10, 84}) / 9, g3 = torch::randn({10});

  const auto conv = op("lenet_fast::conv5x5").typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t)>();
  expect_close("conv5x5 (padding 2)", conv.call(x, w1, b1, 2), torch::conv2d(x, w1, b1, 1, 2));

  // The ops that take the network's variant: trailing (activation, pooling, negative_slope), strings
  // as c10::string_view from C++.
  using S = c10::string_view;
  const auto fused = op("lenet_fast::conv5x5_act_pool").typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, bool, S, S, double)>();
  const auto p1 = torch::avg_pool2d(torch::tanh(torch::conv2d(x, w1, b1, 1, 2)), 2);
  expect_close("conv5x5_act_pool", std::get<0>(fused.call(x, w1, b1, 2, false, "tanh", "avg", 0.01)), p1);
  expect_close("conv5x5_act_pool relu + max", std::get<0>(fused.call(x, w1, b1, 2, false, "relu", "max", 0.01)),
               torch::max_pool2d(torch::relu(torch::conv2d(x, w1, b1, 1, 2)), 2));

  const auto lin = op("lenet_fast::linear_act").typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, S, double)>();
  const auto h = torch::randn({5, 400});
  expect_close("linear_act", lin.call(h, f1, g1, "tanh", 0.01), torch::tanh(torch::linear(h, f1, g1)));
  expect_close("linear_act as leaky_relu", lin.call(h, f1, g1, "leaky_relu", 0.2),
               torch::leaky_relu(torch::linear(h, f1, g1), 0.2));

  auto net = op("lenet_fast::lenet5_forward").typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, double, double, S, S, double)>();
  auto r = torch::avg_pool2d(torch::tanh(torch::conv2d(p1, w2, b2)), 2).flatten(1);
  r = torch::linear(torch::tanh(torch::linear(torch::tanh(torch::linear(r, f1, g1)), f2, g2)), f3, g3);
  expect_close("lenet5_forward", net.call(x, w1, b1, w2, b2, f1, g1, f2, g2, f3, g3, 2, 0.0, 1.0, "tanh", "avg", 0.01), r);
  // uint8 images, normalised inside as ToTensor() + Normalize(0.5, 0.5) would
  const at::Tensor u8 = torch::randint(0, 256, x.sizes(), torch::kUInt8);
  expect_close("lenet5_forward uint8", net.call(u8, w1, b1, w2, b2, f1, g1, f2, g2, f3, g3, 2, 0.5, 0.5, "tanh", "avg", 0.01),
               net.call((u8.to(torch::kFloat) / 255.0f - 0.5f) / 0.5f, w1, b1, w2, b2, f1, g1, f2, g2, f3, g3, 2, 0.0, 1.0,
                        "tanh", "avg", 0.01));

  try {
    conv.call(x.to(torch::kDouble), w1, b1, 2);
    std::printf("bad dtype accepted: MISMATCH\n");
    ++failures;
  } catch (const c10::Error& e) {
    const bool named = std::string(e.what()).find("lenet_fast::conv5x5: expected x to be float32") != std::string::npos;
    std::printf("%-40s %s\n", "clear error on float64 input", named ? "ok" : "MISMATCH");
    if (!named) ++failures;
  }
  std::printf("%s\n", failures ? "FAILED" : "all passed");
  return failures ? 1 : 0;
}
