"""The stock PyTorch LeNet-5 of the reference tutorial (section 8), verbatim in structure: the
baseline every test and benchmark compares lenet_fast against; and float32_reference(), the
setting under which stock PyTorch is a true float32 reference on CUDA."""
import contextlib

import torch
import torch.nn as nn

from . import variants
from .variants import DEFAULT_ACTIVATION, DEFAULT_NEGATIVE_SLOPE, DEFAULT_POOLING


@contextlib.contextmanager
def float32_reference():
    """Within it, stock PyTorch computes float32 convolutions and matmuls in float32 on CUDA.

    PyTorch's defaults let cuDNN run float32 convolutions in TF32 (10-bit mantissa products), so
    out of the box stock conv2d on a GPU is less accurate than lenet_fast's kernels and cannot
    serve as the float32 side of an accuracy comparison. This switches TF32 off for cuDNN and
    cuBLAS and restores the previous settings on exit. (The legacy allow_tf32 flags: they set
    every cuDNN flag of the newer fp32_precision API consistently, in every torch supported.)
    """
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


# The stock module of each of lenet_fast.variants.ACTIVATIONS and POOLINGS.
_ACTIVATION_MODULES = {"tanh": nn.Tanh, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "sigmoid": nn.Sigmoid}
_POOLING_MODULES = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}
assert set(_ACTIVATION_MODULES) == set(variants.ACTIVATIONS) and set(_POOLING_MODULES) == set(variants.POOLINGS), \
    "lenet_fast.reference: a variant without its stock module"


def activation_module(activation: str = DEFAULT_ACTIVATION, negative_slope: float = DEFAULT_NEGATIVE_SLOPE) -> nn.Module:
    """The stock module for one of lenet_fast.variants.ACTIVATIONS."""
    variants.check("activation_module", activation, None, negative_slope)
    if activation == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    return _ACTIVATION_MODULES[activation]()


def pooling_module(pooling: str = DEFAULT_POOLING) -> nn.Module:
    """The stock 2x2, stride-2 module for one of lenet_fast.variants.POOLINGS."""
    variants.check("pooling_module", pooling=pooling)
    return _POOLING_MODULES[pooling](kernel_size=2, stride=2)


class TorchLeNet5(nn.Module):
    """The tutorial's LeNet-5 in stock PyTorch; activation and pooling build its variants from the
    stock modules (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.MaxPool2d), as the tutorial's sections 5.2
    and 7 describe."""

    def __init__(self, activation: str = DEFAULT_ACTIVATION, pooling: str = DEFAULT_POOLING,
                 negative_slope: float = DEFAULT_NEGATIVE_SLOPE):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5, stride=1, padding=2)  # 6x28x28
        self.pool1 = pooling_module(pooling)  # 6x14x14
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)  # 16x10x10
        self.pool2 = pooling_module(pooling)  # 16x5x5
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)
        self.act = activation_module(activation, negative_slope)

    def forward(self, x):
        x = self.act(self.conv1(x))
        x = self.pool1(x)
        x = self.act(self.conv2(x))
        x = self.pool2(x)
        x = x.view(x.size(0), -1)
        x = self.act(self.fc1(x))
        x = self.act(self.fc2(x))
        return self.fc3(x)
