// The C++ half of the deployment example: load a LeNet5 that AOTInductor compiled into a .pt2
// package (export_model.py), run a batch, and check the logits against the ones eager PyTorch
// wrote. No Python at run time: the package calls lenet_fast's ops through the dispatcher, which
// knows them because this program links the lenet_fast library (CMakeLists.txt).
//
//   aoti_lenet5 lenet5.pt2 images.f32 logits.f32 [input_size, default 28]
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// A raw float32 file as a (numel / row, dims...) tensor.
torch::Tensor read_f32(const std::string& path, std::vector<int64_t> row_shape) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  const std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  int64_t row = 1;
  for (const int64_t d : row_shape) row *= d;
  const int64_t n = static_cast<int64_t>(bytes.size() / sizeof(float));
  if (n == 0 || n % row != 0 || bytes.size() % sizeof(float) != 0)
    throw std::runtime_error(path + ": " + std::to_string(bytes.size()) + " bytes is not a whole number of rows of " +
                             std::to_string(row) + " float32 values");
  row_shape.insert(row_shape.begin(), n / row);
  return torch::from_blob(const_cast<char*>(bytes.data()), row_shape, torch::kFloat32).clone();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && argc != 5) {
    std::fprintf(stderr, "usage: %s lenet5.pt2 images.f32 logits.f32 [input_size]\n", argv[0]);
    return 2;
  }
  try {
    const int64_t size = argc == 5 ? std::stoll(argv[4]) : 28;
    torch::inductor::AOTIModelPackageLoader model(argv[1]);
    const torch::Tensor images = read_f32(argv[2], {1, size, size});
    const torch::Tensor want = read_f32(argv[3], {10});
    if (want.size(0) != images.size(0)) throw std::runtime_error("images and logits hold different batch sizes");

    const torch::NoGradGuard no_grad;
    const std::vector<torch::Tensor> out = model.run({images});
    const torch::Tensor& logits = out.at(0);
    if (logits.sizes() != want.sizes()) {
      std::printf("MISMATCH: logits of shape %s, expected %s\n", c10::str(logits.sizes()).c_str(),
                  c10::str(want.sizes()).c_str());
      return 1;
    }
    // The same kernels as the Python run; the library is a separate build, so allow float32 rounding.
    const double max_diff = (logits - want).abs().max().item<double>();
    const bool ok = torch::allclose(logits, want, /*rtol=*/1e-5, /*atol=*/1e-5);
    std::printf("batch %lld: max |C++ - eager| = %.3g, classes of the first 8: ",
                static_cast<long long>(images.size(0)), max_diff);
    const torch::Tensor classes = logits.argmax(1);
    for (int64_t i = 0; i < std::min<int64_t>(8, classes.size(0)); ++i)
      std::printf("%lld ", static_cast<long long>(classes[i].item<int64_t>()));
    std::printf("\n%s\n", ok ? "ok" : "MISMATCH");
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "aoti_lenet5: %s\n", e.what());
    return 1;
  }
}
