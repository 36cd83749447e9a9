"""The stock PyTorch LeNet-5 of the reference tutorial (section 8), verbatim in structure: the
baseline every test and benchmark compares lenet_fast against; and float32_reference(), the
setting under which stock PyTorch is a true float32 reference on CUDA."""
import contextlib

import torch
import torch.nn as nn


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


class TorchLeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5, stride=1, padding=2)  # 6x28x28
        self.pool1 = nn.AvgPool2d(kernel_size=2, stride=2)  # 6x14x14
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)  # 16x10x10
        self.pool2 = nn.AvgPool2d(kernel_size=2, stride=2)  # 16x5x5
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = torch.tanh(self.conv1(x))
        x = self.pool1(x)
        x = torch.tanh(self.conv2(x))
        x = self.pool2(x)
        x = x.view(x.size(0), -1)
        x = torch.tanh(self.fc1(x))
        x = torch.tanh(self.fc2(x))
        return self.fc3(x)
