// The schemas of every lenet_fast op, in one place. Device implementations are registered in
// csrc/ops/cpu/*.cpp and csrc/ops/cuda/*.cpp; fake kernels and autograd in lenet_fast/ops.py.
//
// All convolutions are 5x5 with stride 1; `padding` is symmetric zero padding in [0, 4].
// Backward ops are ops too, so torch.compile sees them as opaque, fake-able calls.
#include <torch/library.h>

#include "kernels/variant.h"

namespace lenet_fast {
void register_no_cuda_kernels();  // no_cuda.cpp, in CPU-only builds
}

// The trailing arguments that choose a variant of the network (csrc/kernels/variant.h, parse_variant).
#define VARIANT                                                                             \
  "str activation=\"" LF_DEFAULT_ACTIVATION "\", str pooling=\"" LF_DEFAULT_POOLING "\", " \
  "float negative_slope=" LF_DEFAULT_NEGATIVE_SLOPE
#define ACTIVATION "str activation=\"" LF_DEFAULT_ACTIVATION "\", float negative_slope=" LF_DEFAULT_NEGATIVE_SLOPE

TORCH_LIBRARY(lenet_fast, m) {
  // y = conv(x, weight) + bias: x (N, IC, H, W), weight (OC, IC, 5, 5), bias (OC) -> (N, OC, Ho, Wo)
  m.def("conv5x5(Tensor x, Tensor weight, Tensor bias, int padding) -> Tensor");
  // (pool(act(conv5x5(...))), act(conv5x5(...)) if save_act else an empty tensor): tanh and 2x2
  // average pooling unless `activation` ("tanh", "relu", "leaky_relu" with negative_slope >= 0,
  // "sigmoid") and `pooling` ("avg", "max") say otherwise. The ops whose names say tanh / pool take
  // the same three trailing arguments; the names are the tutorial's default network.
  m.def(
      "conv5x5_act_pool(Tensor x, Tensor weight, Tensor bias, int padding, bool save_act, " VARIANT ") "
      "-> (Tensor, Tensor)");
  // dL/dx of conv5x5 from dL/dy (N, OC, Ho, Wo) -> (N, IC, Ho + 4 - 2 padding, ...)
  m.def("conv5x5_backward_input(Tensor grad, Tensor weight, int padding) -> Tensor");
  // (dL/dweight, dL/dbias) of conv5x5 from dL/dy and the input x
  m.def("conv5x5_backward_weight(Tensor grad, Tensor x, int padding) -> (Tensor, Tensor)");
  // conv5x5_backward_weight of the fused op, from its pooled gradient and saved act, without
  // writing the full-resolution gradient (what act_pool_backward would produce) to memory
  m.def(
      "conv5x5_act_pool_backward_weight(Tensor grad, Tensor act, Tensor x, int padding, " VARIANT ") "
      "-> (Tensor, Tensor)");
  // dL/d(conv output) of the fused op: its pooled gradient back through the pool and activation
  // (max pooling finds the element each window took from act, as the forward's scan did)
  m.def("act_pool_backward(Tensor grad, Tensor act, " VARIANT ") -> Tensor");

  // 2x2 average pooling, stride 2, floor mode: (N, C, H, W) -> (N, C, H/2, W/2)
  m.def("avg_pool2x2(Tensor x) -> Tensor");
  m.def("avg_pool2x2_backward(Tensor grad, SymInt height, SymInt width) -> Tensor");
  // the activation (tanh unless `activation` says otherwise) elementwise, and its backward from
  // the saved output y (for tanh, grad * (1 - y^2))
  m.def("act(Tensor x, " ACTIVATION ") -> Tensor");
  m.def("act_backward(Tensor grad, Tensor y, " ACTIVATION ") -> Tensor");

  // Data loading: rows of a uint8 dataset picked by index, as float32 normalised the way
  // torchvision's ToTensor() + Normalize(mean, std) does: images (N, ...) uint8, index (B) int64
  // -> (B, ...) float32. One op per batch instead of a gather and three elementwise passes.
  m.def("gather_normalize(Tensor images, Tensor index, float mean, float std) -> Tensor");

  // x (..., K), weight (J, K), bias (J) -> (..., J)
  m.def("linear(Tensor x, Tensor weight, Tensor bias) -> Tensor");
  m.def("linear_act(Tensor x, Tensor weight, Tensor bias, " ACTIVATION ") -> Tensor");
  // dL/dx = grad @ weight, where grad is the gradient at the pre-activation
  m.def("linear_backward_input(Tensor grad, Tensor weight) -> Tensor");
  // (dL/dweight, dL/dbias) = (grad^T x, grad summed over rows)
  m.def("linear_backward_weight(Tensor grad, Tensor x) -> (Tensor, Tensor)");

  // The whole LeNet-5 forward in one call, for inference (no autograd): one dispatch instead of
  // five; on the CPU each thread carries a few images through every layer while they are in
  // cache, on CUDA it is one kernel. x (N, 1, S, S) float32 -> logits (N, classes); x may also be
  // the raw uint8 images, normalised inside as ToTensor() + Normalize(mean, std) would (mean and
  // std apply to uint8 x only).
  m.def(
      "lenet5_forward(Tensor x, Tensor conv1_weight, Tensor conv1_bias, Tensor conv2_weight, "
      "Tensor conv2_bias, Tensor fc1_weight, Tensor fc1_bias, Tensor fc2_weight, Tensor fc2_bias, "
      "Tensor fc3_weight, Tensor fc3_bias, int conv1_padding, float mean=0.0, float std=1.0, " VARIANT ") "
      "-> Tensor");

  // Training: the whole forward as one op that also returns what backward needs, and the whole
  // backward as one op (csrc/ops/lenet5_train.cpp), so a step costs two trips through Python autograd
  // instead of twenty. Saved: (act1, pool1, act2, pool2 flattened, h1, h2).
  m.def(
      "lenet5_forward_train(Tensor x, Tensor conv1_weight, Tensor conv1_bias, Tensor conv2_weight, "
      "Tensor conv2_bias, Tensor fc1_weight, Tensor fc1_bias, Tensor fc2_weight, Tensor fc2_bias, "
      "Tensor fc3_weight, Tensor fc3_bias, int conv1_padding, " VARIANT ") -> (Tensor, Tensor[])");
  // The gradients of x and each parameter, in lenet5_forward's order; where output_mask says an
  // input needs none, that output is an empty tensor and nothing that only it needs is computed.
  m.def(
      "lenet5_backward(Tensor grad, Tensor x, Tensor conv1_weight, Tensor conv2_weight, "
      "Tensor fc1_weight, Tensor fc2_weight, Tensor fc3_weight, Tensor[] saved, int conv1_padding, "
      "bool[11] output_mask, " VARIANT ") -> Tensor[]");

#ifndef LENET_FAST_WITH_CUDA
  lenet_fast::register_no_cuda_kernels();  // every op above, from the dispatcher's own list
#endif
}
