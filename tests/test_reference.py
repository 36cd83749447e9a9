"""Stock PyTorch is the float32 side of every accuracy comparison, so it must compute in true
float32: on CUDA, PyTorch's defaults let cuDNN use TF32 for float32 convolutions, which is less
accurate than lenet_fast's kernels. These tests run on any device: they check the switches."""
import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lenet_fast.reference import float32_reference
from helpers import compare_model_with_stock, compare_with_stock

ROOT = Path(__file__).resolve().parents[1]


def _flags():
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


@pytest.fixture
def tf32_allowed():
    """TF32 allowed, as a fresh process on a GPU machine has it for cuDNN; restored afterwards.
    (Not monkeypatch: torch < 2.14 serves cuBLAS's allow_tf32 through __getattr__, so pytest
    sees no attribute to restore and deletes it.)"""
    before = _flags()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_float32_reference_switches_tf32_off_and_restores(tf32_allowed):
    with float32_reference():
        assert _flags() == (False, False)
    assert _flags() == (True, True)


def test_op_comparisons_use_true_float32(tf32_allowed):
    seen = []

    def stock(x):
        seen.append(_flags())
        return x * 2

    compare_with_stock(lambda x: x * 2, stock, [torch.randn(3)], "probe")
    assert len(seen) >= 2 and set(seen) == {(False, False)}


def test_model_comparisons_use_true_float32(tf32_allowed):
    from lenet_fast import LeNet5, TorchLeNet5

    seen = []

    class Probe(TorchLeNet5):
        def forward(self, x):
            seen.append(_flags())
            return super().forward(x)

    fast, stock = LeNet5(), Probe()
    stock.load_state_dict(fast.state_dict())
    compare_model_with_stock(fast, stock, torch.randn(2, 1, 28, 28))
    assert len(seen) == 2 and set(seen) == {(False, False)}


def test_sanitizer_workload_uses_true_float32(tf32_allowed, monkeypatch):
    spec = importlib.util.spec_from_file_location("sanitize_run", ROOT / "benchmarks" / "sanitize_run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    seen = []
    conv2d = F.conv2d

    def spy(*args, **kwargs):
        seen.append(_flags())
        return conv2d(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", spy)
    mod.run(torch.device("cpu"), triton=False)
    assert seen and set(seen) == {(False, False)}
