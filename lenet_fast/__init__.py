"""lenet_fast: LeNet-5 on hand-written C++/CUDA kernels registered as PyTorch custom ops.

    from lenet_fast import LeNet5          # drop-in for the tutorial's nn.Module
    torch.ops.lenet_fast.*                 # the ops themselves (see lenet_fast.ops)
"""
import torch  # noqa: F401  (loads libtorch, which the extension links against)

try:
    from . import _C  # noqa: F401  (the compiled kernels; loading it registers the ops)
except ImportError as e:  # a source checkout that was never built
    raise ImportError(
        "lenet_fast: the compiled extension lenet_fast._C is missing or broken "
        f"({e}). Install with `pip install --no-build-isolation .` (run from outside the source "
        "directory, or with `python -P`, so the installed package is the one imported), or build "
        "in place with `python setup.py build_ext --inplace`."
    ) from e

from . import ops
from ._version import __version__
from .model import LeNet5
from .reference import TorchLeNet5


def cuda_available() -> bool:
    """True when this build has CUDA kernels and a GPU is visible."""
    return build_info()["with_cuda"] and torch.cuda.is_available()


def build_info() -> dict:
    """What was compiled: version, torch and CUDA versions, CUDA architectures, CPU ISA."""
    info = dict(_C.build_info())
    info["cpu_isa"] = _C.cpu_isa()
    info["cpu_isas_available"] = _C.cpu_isas()
    return info


__all__ = ["LeNet5", "TorchLeNet5", "ops", "build_info", "cuda_available", "__version__"]
