"""lenet_fast.LeNet5: a drop-in for the tutorial's LeNet-5 that runs on the lenet_fast kernels.

The parameters live in ordinary nn.Conv2d / nn.Linear modules built in the stock order, so the
names, shapes, default initialisation (same values under the same seed) and state_dicts are the
stock model's; only forward() differs. It is one op for the whole network:

    conv5x5_act_pool(conv1) -> conv5x5_act_pool(conv2) -> flatten
    -> linear_act(fc1) -> linear_act(fc2) -> linear(fc3)

as lenet5_forward when autograd has nothing to record (no_grad, inference_mode), else as
lenet5_forward_train, whose backward is the single op lenet5_backward. At LeNet's size the
per-op overhead of Python autograd outweighs the arithmetic of a small batch, so the model makes
two autograd calls per step instead of ten forward and backward ones.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn

from . import ops, variants
from .reference import activation_module, pooling_module

_PADDING = {28: 2, 32: 0}  # the tutorial's Fashion-MNIST input, and LeNet-5's classic 32x32
FC_BACKENDS = ("native", "triton")
# "auto" resolves to native until the two have been measured side by side on a GPU: native is the
# whole-network op (one call per forward and per backward); Triton needs per-layer calls.
_AUTO_FC_BACKEND = "native"


# torch.jit.is_tracing() without its two Python frames (a batch-1 forward asks on every call)
_tracing_state = torch._C._get_tracing_state

TRITON_NOT_ONNX = (
    "LeNet5(fc_backend='triton') cannot be exported to ONNX: its fc layers are Triton kernels, which have "
    "no ONNX form. Export the same weights through the native model instead: m = LeNet5(<same arguments>, "
    "fc_backend='native'); m.load_state_dict(model.state_dict()); lenet_fast.onnx.export(m, (x,))")


def _resolve_fc_backend(name: str | None) -> str:
    name = name or os.environ.get("LENET_FAST_FC_BACKEND") or "auto"
    name = _AUTO_FC_BACKEND if name == "auto" else name
    if name not in FC_BACKENDS:
        raise ValueError(f"LeNet5: fc_backend must be one of auto, {', '.join(FC_BACKENDS)} (argument or "
                         f"LENET_FAST_FC_BACKEND), got {name!r}")
    if name == "triton":
        from . import triton_linear

        if not triton_linear.HAVE_TRITON:
            raise RuntimeError("LeNet5: fc_backend='triton' needs triton, which is not installed "
                               "(pip install triton), or use fc_backend='native'")
    return name


class LeNet5(nn.Module):
    """LeNet-5 on the lenet_fast kernels.

    Args:
        input_size: 28 (default; the tutorial's Fashion-MNIST model, conv1 padded by 2) or 32
            (the classic LeNet-5 table: conv1 unpadded, and fc1 then acts as the C5 layer).
        num_classes: outputs of fc3.
        fc_backend: the fully connected layers' kernels: "native" (C++/CUDA), "triton", or
            "auto" (default; currently native). None reads LENET_FAST_FC_BACKEND.
        activation: after every hidden layer: "tanh" (default, the tutorial's), "relu",
            "leaky_relu" (with negative_slope, >= 0) or "sigmoid"; the stock twin uses nn.Tanh,
            nn.ReLU, nn.LeakyReLU(negative_slope) or nn.Sigmoid.
        pooling: after each convolution, 2x2 with stride 2: "avg" (default, nn.AvgPool2d) or
            "max" (nn.MaxPool2d; ties go to the element stock PyTorch picks).
    """

    def __init__(self, input_size: int = 28, num_classes: int = 10, fc_backend: str | None = None,
                 activation: str = variants.DEFAULT_ACTIVATION, pooling: str = variants.DEFAULT_POOLING,
                 negative_slope: float = variants.DEFAULT_NEGATIVE_SLOPE):
        super().__init__()
        self.fc_backend = _resolve_fc_backend(fc_backend)
        if input_size not in _PADDING:
            raise ValueError(f"LeNet5: input_size must be 28 or 32, got {input_size}")
        variants.check("LeNet5", activation, pooling, negative_slope)
        self.input_size = input_size
        self.activation, self.pooling, self.negative_slope = activation, pooling, float(negative_slope)
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5, stride=1, padding=_PADDING[input_size])
        self.pool1 = pooling_module(pooling)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.pool2 = pooling_module(pooling)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        self.act = activation_module(activation, negative_slope)  # (no parameters: the state_dict is the stock one)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.input_size
        if x.shape[1:] != (1, s, s) or x.dim() != 4:
            raise ValueError(
                f"LeNet5(input_size={s}) expects input of shape (N, 1, {s}, {s}), got {tuple(x.shape)}"
            )
        # Straight from the submodules' dicts: nn.Module attribute lookup is slow enough to show
        # in batch-1 latency, and reading them every call still follows any module replacement.
        m = self._modules
        c1, c2, f1, f2, f3 = (m["conv1"]._parameters, m["conv2"]._parameters, m["fc1"]._parameters,
                              m["fc2"]._parameters, m["fc3"]._parameters)  # (a generator costs 0.2 us)
        params = [c1["weight"], c1["bias"], c2["weight"], c2["bias"], f1["weight"], f1["bias"],
                  f2["weight"], f2["bias"], f3["weight"], f3["bias"]]
        padding = m["conv1"].padding[0]
        if self.fc_backend == "triton":
            return self._forward_triton_fc(x, params, padding, self._variant())
        if _tracing_state() is not None:  # torch.jit.is_tracing() in one C call
            return self._forward_traced(x, params, padding)
        return ops.lenet5_forward(x, params, padding, 0.0, 1.0, *self._variant())

    def _forward_traced(self, x, params, padding, mean=0.0, std=1.0):
        # A trace keeps one op, so it is chosen by the module's mode, not the grad mode (which
        # torch.jit.trace's own check turns off for its second run): an eval-mode trace holds the
        # inference op (no autograd through it), a training-mode trace the training op, whose
        # backward is lenet5_backward.
        if self.training:
            return ops._lib.lenet5_forward_train(x, *params, padding, *self._variant())[0]
        return ops._lib.lenet5_forward(x, *params, padding, mean, std, *self._variant())

    def _variant(self) -> tuple[str, str, float]:
        return self.activation, self.pooling, self.negative_slope

    def forward_uint8(self, images: torch.Tensor, mean: float = 0.5, std: float = 0.5) -> torch.Tensor:
        """Logits of raw uint8 images (N, 1, S, S), normalised as ToTensor() + Normalize(mean, std)
        would, for inference: on CUDA the whole network, normalisation included, is one kernel.
        Same logits as forward() on the normalised images."""
        if images.dtype != torch.uint8:
            raise TypeError(f"LeNet5.forward_uint8: expected uint8 images, got {images.dtype}")
        s = self.input_size
        if images.shape[1:] != (1, s, s) or images.dim() != 4:
            raise ValueError(f"LeNet5(input_size={s}).forward_uint8 expects images of shape (N, 1, {s}, {s}), "
                             f"got {tuple(images.shape)}")
        params, padding = list(self.parameters()), self.conv1.padding[0]
        # As in forward: a trace by the module's mode, otherwise by whether autograd records.
        tracing = _tracing_state() is not None
        if self.fc_backend == "triton" or (self.training if tracing else ops._needs_grad(*params)):
            index = torch.arange(images.shape[0], device=images.device)
            return self(ops.gather_normalize(images, index, mean, std))
        if tracing:
            return self._forward_traced(images, params, padding, mean, std)
        return ops.lenet5_forward(images, params, padding, mean, std, *self._variant())

    @staticmethod
    def _forward_triton_fc(x, params, padding, variant):
        from .triton_linear import triton_linear

        if ops._onnx_exporting():
            raise RuntimeError(TRITON_NOT_ONNX)
        activation, pooling, slope = variant
        c1w, c1b, c2w, c2b, f1w, f1b, f2w, f2b, f3w, f3b = params
        x = ops.conv5x5_act_pool(x, c1w, c1b, padding, activation, pooling, slope)
        x = ops.conv5x5_act_pool(x, c2w, c2b, 0, activation, pooling, slope).flatten(1)
        x = triton_linear(x, f1w, f1b, True, activation, slope)
        x = triton_linear(x, f2w, f2b, True, activation, slope)
        return triton_linear(x, f3w, f3b, False)

    def extra_repr(self) -> str:
        variant = f", activation={self.activation!r}, pooling={self.pooling!r}"
        if self.activation == "leaky_relu":
            variant += f", negative_slope={self.negative_slope}"
        return f"input_size={self.input_size}, fc_backend={self.fc_backend!r}" + variant
