import os

import pytest
import torch

# Triton has no CPU backend: without a GPU its kernels run in the interpreter, which must be chosen
# before triton is first imported (lenet_fast imports it only when its Triton path is used).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import lenet_fast
from lenet_fast import _C
from lenet_fast.reference import float32_reference

CUDA = lenet_fast.cuda_available()
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not CUDA, reason="no CUDA GPU with a CUDA build of lenet_fast")]),
]
# Every CPU kernel variant compiled in and runnable here (e.g. "avx2", "baseline").
CPU_ISAS = _C.cpu_isas().split(",")


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def skip_unless_triton_runs_on(device):
    """Triton runs compiled on CUDA tensors, and on CPU tensors only in its interpreter, which is
    on (TRITON_INTERPRET=1, set above) only where no GPU is visible: on a GPU machine the CPU
    cases of the Triton tests are skipped rather than failed."""
    from lenet_fast import triton_linear

    ok, why = triton_linear.available(device)
    if not ok:
        pytest.skip(f"Triton on {device}: {why}")


@pytest.fixture(params=CPU_ISAS)
def cpu_isa(request):
    """Runs a test once per CPU kernel variant; restores the default afterwards."""
    before = _C.cpu_isa()
    _C.set_cpu_isa(request.param)
    yield request.param
    _C.set_cpu_isa(before)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _true_float32():
    """Every stock reference in the suite is true float32: no TF32 for cuDNN convolutions, which
    PyTorch allows by default on CUDA (tests/helpers.py also asks for it where it compares)."""
    with float32_reference():
        yield
