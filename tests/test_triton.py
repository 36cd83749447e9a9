"""The Triton fully connected layers (lenet_fast.triton_linear): on CPU tensors they run in
Triton's interpreter (conftest sets TRITON_INTERPRET=1), on CUDA tensors as compiled kernels."""
import pytest
import torch
import torch.nn.functional as F

from lenet_fast import LeNet5, TorchLeNet5
from lenet_fast import triton_linear as T
from conftest import skip_unless_triton_runs_on
from helpers import compare_model_with_stock, compare_with_stock

pytestmark = pytest.mark.skipif(not T.HAVE_TRITON, reason="triton is not installed")

# (M, K, N): fc1, fc2, fc3 at batch 1, odd batches, and a larger batch that spans two dW/db
# partial chunks (kept narrow: the interpreter runs every program in Python)
CASES = [(1, 400, 120), (7, 120, 84), (33, 84, 10), (300, 84, 10)]


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("act", ["tanh", "none"])
def test_triton_linear(device, case, act):
    skip_unless_triton_runs_on(device)
    m, k, n = case
    x = torch.randn(m, k, device=device)
    w = torch.randn(n, k, device=device) / k**0.5
    b = torch.randn(n, device=device) * 0.1
    if act == "tanh":
        compare_with_stock(lambda *a: T.triton_linear(*a, True), lambda *a: torch.tanh(F.linear(*a)), [x, w, b], f"triton linear_act{case}")
    else:
        compare_with_stock(lambda *a: T.triton_linear(*a, False), F.linear, [x, w, b], f"triton linear{case}")


def test_triton_linear_strided_and_leading_dims(device):
    skip_unless_triton_runs_on(device)
    x = torch.randn(2, 3, 40, device=device)[..., ::2]
    w = torch.randn(10, 20, device=device)
    b = torch.randn(10, device=device)
    compare_with_stock(lambda *a: T.triton_linear(*a, True), lambda *a: torch.tanh(F.linear(*a)), [x, w, b], "triton strided 3-D")


def test_triton_backward_is_deterministic(device):
    skip_unless_triton_runs_on(device)
    g, x, w = torch.randn(600, 10, device=device), torch.randn(600, 84, device=device), torch.randn(10, 84, device=device)
    y = torch.tanh(torch.randn(600, 10, device=device))
    first = T.triton_linear_backward(g, x, w, y)
    again = T.triton_linear_backward(g, x, w, y)
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_model_with_triton_fc_matches_stock(device):
    skip_unless_triton_runs_on(device)
    torch.manual_seed(0)
    fast = LeNet5(fc_backend="triton").to(device)
    stock = TorchLeNet5().to(device)
    stock.load_state_dict(fast.state_dict())
    x = torch.randn(5, 1, 28, 28, device=device)
    compare_model_with_stock(fast, stock, x, name=" (triton fc)")
    with torch.no_grad():
        torch.testing.assert_close(fast(x), stock(x), rtol=1e-5, atol=1e-5)


def test_backend_selection(monkeypatch):
    assert LeNet5().fc_backend == "native"
    assert LeNet5(fc_backend="auto").fc_backend == "native"
    monkeypatch.setenv("LENET_FAST_FC_BACKEND", "triton")
    assert LeNet5().fc_backend == "triton"
    assert "fc_backend='triton'" in repr(LeNet5())
    with pytest.raises(ValueError, match="fc_backend must be one of auto, native, triton"):
        LeNet5(fc_backend="cublas")


def test_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    ok, why = T.available("cpu")
    assert not ok and "TRITON_INTERPRET=1" in why
    with pytest.raises(RuntimeError, match=r"lenet_fast::triton_linear: Triton has no CPU backend"):
        T.triton_linear(torch.randn(2, 4), torch.randn(3, 4), torch.randn(3), True)


def test_bad_input(device):
    skip_unless_triton_runs_on(device)
    with pytest.raises(RuntimeError, match=r"lenet_fast::triton_linear: expected x to be float32, got torch.float64"):
        T.triton_linear(torch.randn(2, 4, dtype=torch.float64, device=device), torch.randn(3, 4, device=device), torch.randn(3, device=device), True)
    with pytest.raises(RuntimeError, match=r"expected x \(\.\.\., 4\)"):
        T.triton_linear(torch.randn(2, 5, device=device), torch.randn(3, 4, device=device), torch.randn(3, device=device), True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="Triton's CPU interpreter reads FakeTensor data pointers, so opcheck's fake-tensor tests need a GPU")
def test_opcheck_and_compile_cuda():
    device = "cuda"
    x = torch.randn(5, 120, device=device, requires_grad=True)
    w = torch.randn(84, 120, device=device, requires_grad=True)
    b = torch.randn(84, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.lenet_fast.triton_linear, (x, w, b, True))
    torch.manual_seed(0)
    fast = LeNet5(fc_backend="triton").to(device)
    stock = TorchLeNet5().to(device)
    stock.load_state_dict(fast.state_dict())
    compiled = torch.compile(fast, fullgraph=True)
    x = torch.randn(64, 1, 28, 28, device=device)
    torch.testing.assert_close(compiled(x), stock(x), rtol=1e-4, atol=1e-5)


def test_fc_benchmark_cases_run(device):
    """The benchmark's fc cases build and call every contender; Triton is one on CUDA (on the CPU
    Triton only interprets, which is not worth timing)."""
    from lenet_fast import bench

    dev = torch.device(device)
    for case in bench.cases(dev, True):
        if "linear" not in case.name or case.batch != 64:
            continue
        contenders = case.build(3, dev, ())
        assert ("lenet_fast triton" in contenders) == (device == "cuda")
        want = contenders[bench.EAGER]()
        for name, fn in contenders.items():
            got = fn()
            for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
                torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4, msg=lambda m: f"{case.name} {name}: {m}")
