"""lenet_fast: LeNet-5 on hand-written C++/CUDA kernels registered as PyTorch custom ops.

    from lenet_fast import LeNet5          # drop-in for the tutorial's nn.Module
    torch.ops.lenet_fast.*                 # the ops themselves (see lenet_fast.ops)
"""
from . import ops
from ._version import __version__
from .model import LeNet5
from .reference import TorchLeNet5


def cuda_available() -> bool:
    """True when this build has CUDA kernels and a GPU is visible."""
    import torch

    return build_info()["with_cuda"] and torch.cuda.is_available()


def build_info() -> dict:
    """What was compiled: version, torch and CUDA versions, CUDA architectures, CPU ISA."""
    from . import _C

    info = dict(_C.build_info())
    info["cpu_isa"] = _C.cpu_isa()
    info["cpu_isas_available"] = _C.cpu_isas()
    return info


__all__ = ["LeNet5", "TorchLeNet5", "ops", "build_info", "cuda_available", "__version__"]
