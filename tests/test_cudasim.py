"""lenet_fast's CUDA kernels, run on the CPU in CI under the harness csrc/cudasim/ (see
tests/cudasim.py): every kernel, forward and backward, through the very torch-side code a CUDA
build runs, against stock PyTorch (the project's accuracy rule) and the CPU kernels, at odd sizes
and in two thread orders; the whole-network ops as the CUDA build composes them; degenerate
input; one run of every launcher under AddressSanitizer and one under ThreadSanitizer; and the
harness's own tests, with planted bugs it must catch.

What this proves and what it cannot: README, "GPU status".
"""
import copy
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import cudasim
from helpers import assert_matches_reference
from lenet_fast import LeNet5, TorchLeNet5

pytestmark = [pytest.mark.cudasim,
              pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None, reason="no C++ compiler")]
O = torch.ops.lenet_fast
ROOT = Path(__file__).resolve().parents[1]

# (IC, OC, H, W, padding): LeNet's layers, the 32x32 classic, then odd sizes and every padding
CONV_CASES = [(1, 6, 28, 28, 2), (6, 16, 14, 14, 0), (1, 6, 32, 32, 0), (3, 20, 9, 11, 1), (2, 9, 7, 6, 3),
              (4, 3, 6, 7, 4), (16, 120, 5, 5, 0)]
BATCHES = [1, 3, 17]


@pytest.fixture(scope="module")
def sim():
    return cudasim.load()


@pytest.fixture(params=["forward", "reverse"])
def order(request, sim):
    cudasim.set_order(request.param)
    yield request.param
    cudasim.set_order("forward")


def close(got, want, what):
    """The simulated CUDA kernel against the CPU kernel: the same arithmetic, other summation orders."""
    got, want = got.double(), want.double()
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    assert not got.isnan().any() or want.isnan().any(), f"{what}: NaN (an element no kernel wrote?)"
    scale = max(1.0, want.abs().max().item()) if want.numel() else 1.0
    bad = (got - want).abs() > 1e-5 * scale + 1e-4 * want.abs()
    assert not bad.any(), f"{what}: {bad.sum().item()} elements differ, max {(got - want).abs().max().item():.3g}"


def stock(fn, inputs, grad=None, wrt=()):
    """fn's output in float32 and float64, and with grad, the gradients of wrt (input positions)."""
    out = []
    for dtype in (torch.float32, torch.float64):
        ins = [t.detach().to(dtype).requires_grad_(i in wrt) for i, t in enumerate(inputs)]
        y = fn(*ins)
        grads = torch.autograd.grad(y, [ins[i] for i in wrt], grad.to(dtype)) if grad is not None else ()
        out.append((y.detach(), grads))
    return out


def conv_inputs(n, ic, oc, h, w):
    return torch.randn(n, ic, h, w), torch.randn(oc, ic, 5, 5) / (ic * 25) ** 0.5, torch.randn(oc) * 0.1


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
@pytest.mark.parametrize("n", BATCHES)
def test_conv_forward(sim, order, case, n):
    ic, oc, h, w, pad = case
    x, wt, b = conv_inputs(n, ic, oc, h, w)
    (y32, _), (y64, _) = stock(lambda x, w, b: F.conv2d(x, w, b, padding=pad), [x, wt, b])
    y = sim.conv5x5(x, wt, b, pad)
    assert_matches_reference(y, y32, y64, f"conv5x5{case}")
    close(y, O.conv5x5(x, wt, b, pad), f"conv5x5{case} vs CPU")
    if h + 2 * pad - 4 >= 2 and w + 2 * pad - 4 >= 2:
        pooled, act = sim.conv5x5_act_pool(x, wt, b, pad, True)
        (p32, _), (p64, _) = stock(lambda x, w, b: F.avg_pool2d(torch.tanh(F.conv2d(x, w, b, padding=pad)), 2), [x, wt, b])
        (a32, _), (a64, _) = stock(lambda x, w, b: torch.tanh(F.conv2d(x, w, b, padding=pad)), [x, wt, b])
        assert_matches_reference(pooled, p32, p64, f"conv5x5_act_pool{case}")
        assert_matches_reference(act, a32, a64, f"conv5x5_act_pool{case} act (odd edges included)")
        assert torch.equal(sim.conv5x5_act_pool(x, wt, b, pad, False)[0], pooled)


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
@pytest.mark.parametrize("n", BATCHES)
def test_conv_backward(sim, order, case, n):
    ic, oc, h, w, pad = case
    x, wt, b = conv_inputs(n, ic, oc, h, w)
    ho, wo = h + 2 * pad - 4, w + 2 * pad - 4
    g = torch.randn(n, oc, ho, wo)
    (_, (dx32, dw32, db32)), (_, (dx64, dw64, db64)) = stock(
        lambda x, w, b: F.conv2d(x, w, b, padding=pad), [x, wt, b], g, wrt=(0, 1, 2))
    dx = sim.conv5x5_backward_input(g, wt, pad)
    dw, db = sim.conv5x5_backward_weight(g, x, pad)
    assert_matches_reference(dx, dx32, dx64, f"conv5x5_backward_input{case}")
    assert_matches_reference(dw, dw32, dw64, f"conv5x5_backward_weight{case} dw")
    assert_matches_reference(db, db32, db64, f"conv5x5_backward_weight{case} db")
    close(dx, O.conv5x5_backward_input(g, wt, pad), "dx vs CPU")
    for a, c in zip((dw, db), O.conv5x5_backward_weight(g, x, pad)):
        close(a, c, "dw, db vs CPU")
    if ho >= 2 and wo >= 2:  # the fused op's backward: pooled gradient through pool and tanh
        gp = torch.randn(n, oc, ho // 2, wo // 2)
        act = torch.tanh(F.conv2d(x, wt, b, padding=pad))
        (_, (fw32, fb32)), (_, (fw64, fb64)) = stock(
            lambda x, w, b: F.avg_pool2d(torch.tanh(F.conv2d(x, w, b, padding=pad)), 2), [x, wt, b], gp, wrt=(1, 2))
        fw, fb = sim.conv5x5_act_pool_backward_weight(gp, act, x, pad)
        assert_matches_reference(fw, fw32, fw64, f"conv5x5_act_pool_backward_weight{case} dw")
        assert_matches_reference(fb, fb32, fb64, f"conv5x5_act_pool_backward_weight{case} db")
        close(sim.act_pool_backward(gp, act), O.act_pool_backward(gp, act), "act_pool_backward vs CPU")


@pytest.mark.parametrize("case", CONV_CASES[:2], ids=str)
def test_conv_large_batch(sim, case):
    """300 images: the weight gradient's partial sums over several chunks, one block per image."""
    ic, oc, h, w, pad = case
    x, wt, b = conv_inputs(300, ic, oc, h, w)
    g = torch.randn(300, oc, h + 2 * pad - 4, w + 2 * pad - 4)
    (_, (dw32, db32)), (_, (dw64, db64)) = stock(lambda x, w, b: F.conv2d(x, w, b, padding=pad), [x, wt, b], g, wrt=(1, 2))
    dw, db = sim.conv5x5_backward_weight(g, x, pad)
    assert_matches_reference(dw, dw32, dw64, "dw over 300 images")
    assert_matches_reference(db, db32, db64, "db over 300 images")
    close(sim.conv5x5_act_pool(x, wt, b, pad, True)[0], O.conv5x5_act_pool(x, wt, b, pad, True)[0], "forward, 300 images")


@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (3, 4, 7, 9), (300, 6, 28, 28)], ids=str)
def test_pool_and_tanh(sim, order, shape):
    x = torch.randn(shape) * 3
    g = torch.randn(shape)
    gp = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    (p32, (dp32,)), (p64, (dp64,)) = stock(lambda t: F.avg_pool2d(t, 2), [x], gp, wrt=(0,))
    assert_matches_reference(sim.avg_pool2x2(x), p32, p64, "avg_pool2x2")
    assert_matches_reference(sim.avg_pool2x2_backward(gp, shape[2], shape[3]), dp32, dp64, "avg_pool2x2_backward")
    (t32, (dt32,)), (t64, (dt64,)) = stock(torch.tanh, [x], g, wrt=(0,))
    y = sim.act(x)
    assert_matches_reference(y, t32, t64, "tanh")
    assert_matches_reference(sim.act_backward(g, y), dt32, dt64, "act_backward")
    close(sim.act_backward(g, y), O.act_backward(g, y), "tanh_backward vs CPU")


# (N, K, J): fc1, fc2, fc3, then odd widths (tile tails) and a batch spanning many tiles
LINEAR_CASES = [(1, 400, 120), (3, 120, 84), (17, 84, 10), (5, 13, 5), (2, 7, 1), (9, 31, 17), (300, 400, 120)]


@pytest.mark.parametrize("case", LINEAR_CASES, ids=str)
def test_linear(sim, order, case):
    n, k, j = case
    x, w, b = torch.randn(n, k), torch.randn(j, k) / k ** 0.5, torch.randn(j) * 0.1
    g = torch.randn(n, j)
    for name, fn in (("linear", F.linear), ("linear_act", lambda *a: torch.tanh(F.linear(*a)))):
        (y32, _), (y64, _) = stock(fn, [x, w, b])
        y = getattr(sim, name)(x, w, b)
        assert_matches_reference(y, y32, y64, f"{name}{case}")
        close(y, getattr(O, name)(x, w, b), f"{name}{case} vs CPU")
    (_, (dx32, dw32, db32)), (_, (dx64, dw64, db64)) = stock(F.linear, [x, w, b], g, wrt=(0, 1, 2))
    assert_matches_reference(sim.linear_backward_input(g, w), dx32, dx64, f"linear_backward_input{case}")
    dw, db = sim.linear_backward_weight(g, x)
    assert_matches_reference(dw, dw32, dw64, f"linear_backward_weight{case} dw")
    assert_matches_reference(db, db32, db64, f"linear_backward_weight{case} db")


def test_gather_normalize(sim, order):
    images = torch.randint(0, 256, (50, 1, 28, 28), dtype=torch.uint8)
    index = torch.randperm(50)[:37]
    assert torch.equal(sim.gather_normalize(images, index, 0.5, 0.5), O.gather_normalize(images, index, 0.5, 0.5))
    with pytest.raises(RuntimeError, match=r"lenet_fast::gather_normalize: CUDA error: device-side assert triggered .*src >= 0 && src < n"):
        sim.gather_normalize(images, torch.tensor([3, 50]), 0.5, 0.5)


def _model_pair(seed=0):
    torch.manual_seed(seed)
    fast = LeNet5()
    ref = TorchLeNet5()
    ref.load_state_dict(fast.state_dict())
    return fast, ref


@pytest.mark.parametrize("n", [1, 3, 17, 300])
def test_whole_network(sim, order, n):
    """lenet5_forward, lenet5_forward_train and lenet5_backward as a CUDA build composes them,
    against the stock model's logits and gradients."""
    fast, ref = _model_pair()
    params = [p.detach() for p in fast.parameters()]
    x = torch.randn(n, 1, 28, 28)
    labels = torch.randint(0, 10, (n,))
    ref64 = TorchLeNet5().double()
    ref64.load_state_dict(ref.state_dict())
    outs, grads = [], []
    for model, inp in ((ref, x), (ref64, x.double())):
        inp = inp.clone().requires_grad_(True)
        out = model(inp)
        F.cross_entropy(out, labels).backward()
        outs.append(out.detach())
        grads.append([inp.grad] + [p.grad for p in model.parameters()])
    with launches() as forward:
        logits = sim.lenet5_forward(x, *params, 2)
    assert forward.count == 1, "lenet5_forward is one kernel on CUDA"
    assert_matches_reference(logits, *outs, name="lenet5_forward logits")
    with launches() as forward_train:
        logits_t, saved = sim.lenet5_forward_train(x, *params, 2)
    assert forward_train.count <= 2, f"the training forward took {forward_train.count} launches"
    assert torch.equal(logits_t, logits)
    g = torch.autograd.grad(F.cross_entropy(logits_t.requires_grad_(), labels), logits_t)[0]
    got = sim.lenet5_backward(g, x, *params[0::2], saved, 2, [True] * 11)
    names = ["x"] + [name for name, _ in fast.named_parameters()]
    for i, name in enumerate(names):
        assert_matches_reference(got[i], grads[0][i], grads[1][i], name=f"lenet5_backward {name}")
    # the usual training call: no input gradient, conv1's through the fused weight-gradient op
    with launches() as backward:
        usual = sim.lenet5_backward(g, x, *params[0::2], saved, 2, [False] + [True] * 10)
    assert backward.count <= 8, f"the training backward took {backward.count} launches"
    assert usual[0].numel() == 0
    assert len({t.untyped_storage().data_ptr() for t in usual[1:]}) == 10, "a custom op's outputs may not alias"
    for i in range(1, 11):
        assert_matches_reference(usual[i], grads[0][i], grads[1][i], name=f"lenet5_backward {names[i]}, fused")
        close(usual[i], got[i], f"lenet5_backward {names[i]}, fused vs per-layer kernels")


VARIANTS = [(a, p) for a in ("tanh", "relu", "leaky_relu", "sigmoid") for p in ("avg", "max")]
SLOPE = 0.2


def _stock_act(activation):
    from lenet_fast.reference import activation_module

    return activation_module(activation, SLOPE)


@pytest.mark.parametrize("activation,pooling", VARIANTS)
@pytest.mark.parametrize("case", [(1, 6, 28, 28, 2), (3, 5, 9, 11, 1)], ids=str)
def test_variant_layer_kernels(sim, order, activation, pooling, case):
    """Every kernel that takes a variant (the fused conv forward, the pool + activation backward,
    the fused weight gradient, the fc epilogue, the elementwise activation and its backward)
    against stock PyTorch and the CPU kernels; ties in max-pool windows included (x rounded to
    halves: equal conv outputs)."""
    from lenet_fast.reference import pooling_module

    ic, oc, h, w, pad = case
    x, wt, b = conv_inputs(3, ic, oc, h, w)
    x = torch.round(x * 2) / 2
    wt[0] = 0.0  # channel 0: the bias everywhere, every window a tie
    v = (activation, pooling, SLOPE)
    act_fn, pool_fn = _stock_act(activation), pooling_module(pooling)
    stock_fn = lambda x, w, b: pool_fn(act_fn(F.conv2d(x, w, b, padding=pad)))  # noqa: E731
    (y32, _), (y64, _) = stock(stock_fn, [x, wt, b])
    y, act = sim.conv5x5_act_pool(x, wt, b, pad, True, *v)
    assert_matches_reference(y, y32, y64, f"conv5x5_act_pool{case}{v}")
    want_y, want_act = O.conv5x5_act_pool(x, wt, b, pad, True, *v)
    close(y, want_y, f"conv5x5_act_pool{case}{v} vs CPU")
    close(act, want_act, f"conv5x5_act_pool{case}{v} act vs CPU")
    g = torch.randn_like(y)
    (_, grads32), (_, grads64) = stock(stock_fn, [x, wt, b], g, wrt=(1, 2))
    dw, db = sim.conv5x5_act_pool_backward_weight(g, want_act, x, pad, *v)
    assert_matches_reference(dw, grads32[0], grads64[0], f"fused weight gradient{case}{v}")
    assert_matches_reference(db, grads32[1], grads64[1], f"fused bias gradient{case}{v}")
    dpre = sim.act_pool_backward(g, want_act, *v)
    want = O.act_pool_backward(g, want_act, *v)
    assert torch.equal(dpre != 0, want != 0), f"{v}: the gradient went to other elements than the CPU's"
    close(dpre, want, f"act_pool_backward{v} vs CPU")
    xl, wl, bl = torch.randn(7, 40), torch.randn(9, 40) * 0.2, torch.randn(9)
    close(sim.linear_act(xl, wl, bl, activation, SLOPE), O.linear_act(xl, wl, bl, activation, SLOPE), f"linear {v}")
    t = torch.linspace(-10, 10, 1001)
    close(sim.act(t, activation, SLOPE), act_fn(t), f"activation {v}")
    close(sim.act_backward(t, act_fn(t), activation, SLOPE), O.act_backward(t, act_fn(t), activation, SLOPE),
          f"activation backward {v}")


@pytest.mark.parametrize("activation,pooling", VARIANTS)
def test_variant_whole_network(sim, order, activation, pooling):
    """The whole-network ops of every variant, as a CUDA build composes them, against the stock twin."""
    torch.manual_seed(7)
    fast = LeNet5(activation=activation, pooling=pooling, negative_slope=SLOPE)
    ref = TorchLeNet5(activation=activation, pooling=pooling, negative_slope=SLOPE)
    ref.load_state_dict(fast.state_dict())
    ref64 = copy.deepcopy(ref).double()
    params = [p.detach() for p in fast.parameters()]
    v = (activation, pooling, SLOPE)
    x, labels = torch.randn(5, 1, 28, 28), torch.randint(0, 10, (5,))
    outs, grads = [], []
    for model, inp in ((ref, x), (ref64, x.double())):
        out = model(inp)
        F.cross_entropy(out, labels).backward()
        outs.append(out.detach())
        grads.append([p.grad for p in model.parameters()])
    with launches() as forward:
        assert_matches_reference(sim.lenet5_forward(x, *params, 2, 0.0, 1.0, *v), *outs, name=f"lenet5_forward {v}")
    with launches() as forward_train:
        logits, saved = sim.lenet5_forward_train(x, *params, 2, *v)
    assert_matches_reference(logits, *outs, name=f"lenet5_forward_train {v}")
    g = torch.autograd.grad(F.cross_entropy(logits.requires_grad_(), labels), logits)[0]
    with launches() as backward:
        got = sim.lenet5_backward(g, x, *params[0::2], saved, 2, [False] + [True] * 10, *v)
    # the whole-network kernels, not the per-layer ones
    assert (forward.count, forward_train.count, backward.count) == (1, 1, 3), (forward.count, forward_train.count,
                                                                               backward.count)
    for i, (name, _) in enumerate(fast.named_parameters()):
        assert_matches_reference(got[i + 1], grads[0][i], grads[1][i], name=f"lenet5_backward {name} {v}")


class launches:
    """Counts the simulated kernel launches inside a with block."""

    def __enter__(self):
        self.before = cudasim.stats()["launches"]
        return self

    def __exit__(self, *exc):
        self.count = cudasim.stats()["launches"] - self.before


def _u8(n, size):
    return torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8)


@pytest.mark.parametrize("input_size", [28, 32])
def test_whole_network_uint8(sim, order, input_size):
    """uint8 images normalised inside the one forward kernel: the same logits as the float32 images
    normalised by gather_normalize, and as the CPU op; both LeNet geometries (28 padded, 32)."""
    torch.manual_seed(1)
    fast = LeNet5(input_size=input_size)
    params = [p.detach() for p in fast.parameters()]
    pad = fast.conv1.padding[0]
    images = _u8(7, input_size)
    xf = O.gather_normalize(images, torch.arange(7), 0.5, 0.5)
    with launches() as counted:
        got = sim.lenet5_forward(images, *params, pad, 0.5, 0.5)
    assert counted.count == 1
    assert torch.equal(got, sim.lenet5_forward(xf, *params, pad))
    close(got, O.lenet5_forward(images, *params, pad, 0.5, 0.5), "uint8 forward vs CPU")
    assert_matches_reference(got, _stock_logits(fast, xf), _stock_logits(fast, xf, torch.float64), name="uint8 forward")


def _stock_logits(fast, x, dtype=torch.float32):
    """The stock layers' logits with fast's parameters (any input size or class count)."""
    p = [t.detach().to(dtype) for t in fast.parameters()]
    y = F.avg_pool2d(torch.tanh(F.conv2d(x.to(dtype), p[0], p[1], padding=fast.conv1.padding[0])), 2)
    y = F.avg_pool2d(torch.tanh(F.conv2d(y, p[2], p[3])), 2).flatten(1)
    y = torch.tanh(F.linear(torch.tanh(F.linear(y, p[4], p[5])), p[6], p[7]))
    return F.linear(y, p[8], p[9])


def test_whole_network_large_tile(sim):
    """From 4096 images a forward block takes 8 images (and the last block here only 3)."""
    torch.manual_seed(2)
    fast = LeNet5()
    params = [p.detach() for p in fast.parameters()]
    x = torch.randn(4099, 1, 28, 28)
    with launches() as counted:
        got = sim.lenet5_forward(x, *params, 2)
    assert counted.count == 1
    close(got, O.lenet5_forward(x, *params, 2), "forward, tiles of 8")
    logits, saved = sim.lenet5_forward_train(x, *params, 2)
    assert torch.equal(logits, got)
    for a, b in zip(saved, O.lenet5_forward_train(x, *params, 2)[1]):
        close(a, b, "saved activations, tiles of 8")


def test_whole_network_other_shapes_take_the_layer_kernels(sim):
    """Shapes the fused kernels do not serve (here 130 classes) run the per-layer kernels: same
    answers, more launches."""
    torch.manual_seed(3)
    fast = LeNet5(num_classes=130)
    params = [p.detach() for p in fast.parameters()]
    x = torch.randn(3, 1, 28, 28)
    with launches() as counted:
        got = sim.lenet5_forward(x, *params, 2)
    assert counted.count > 1
    assert_matches_reference(got, _stock_logits(fast, x), _stock_logits(fast, x, torch.float64), name="130 classes")
    images = _u8(3, 28)
    close(sim.lenet5_forward(images, *params, 2, 0.5, 0.5), O.lenet5_forward(images, *params, 2, 0.5, 0.5),
          "uint8, per-layer kernels")


def test_degenerate_input_like_the_cpu(sim):
    """tests/test_degenerate.py's cases: the same answer or the same error as the CPU kernels."""
    import test_degenerate

    for name, (make, _) in test_degenerate.CASES.items():
        op, args = make()
        sim_op = getattr(sim, op.__name__.split(".")[0])
        try:
            want = op(*args)
        except RuntimeError as e:
            with pytest.raises(RuntimeError) as got:
                sim_op(*args)
            assert str(got.value).split("\n")[0].replace("lenet_fast_cudasim", "lenet_fast") == str(e).split("\n")[0], name
            continue
        got = sim_op(*args)
        for a, b in zip(got if isinstance(got, (list, tuple)) else [got], want if isinstance(want, (list, tuple)) else [want]):
            close(a, b, name)


def test_kernels_really_ran_here(sim):
    before = cudasim.stats()
    sim.conv5x5(torch.randn(3, 1, 28, 28), torch.randn(6, 1, 5, 5), torch.randn(6), 2)
    after = cudasim.stats()
    assert after["launches"] == before["launches"] + 1 and after["blocks"] == before["blocks"] + 3
    assert after["threads"] == before["threads"] + 3 * 256


# ---- the harness's own tests and the sanitizer runs: small C++ programs, no torch -----------------

CXX = shutil.which("g++") or shutil.which("c++")
FLAGS = ["-std=c++20", "-O1", "-g", "-Wall", "-Wno-unknown-pragmas", "-DLENET_FAST_CUDASIM",
         f"-I{ROOT / 'csrc'}"]
SANITIZERS = {"plain": [], "asan": ["-fsanitize=address", "-fno-omit-frame-pointer"], "tsan": ["-fsanitize=thread"]}


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    """Builds a program from tests/cudasim/ on first use, per sanitizer."""
    where = tmp_path_factory.mktemp("cudasim_programs")
    built = {}

    def get(name, sanitizer="plain"):
        key = (name, sanitizer)
        if key not in built:
            out = where / f"{name}-{sanitizer}"
            sources = [str(ROOT / "tests" / "cudasim" / f"{name}.cpp")]
            if name == "run_kernels":
                sources = ["-x", "c++", *map(str, sorted((ROOT / "csrc" / "kernels" / "cuda").glob("*.cu"))), "-x", "none", *sources]
            r = subprocess.run([CXX, *FLAGS, *SANITIZERS[sanitizer], *sources, "-o", str(out)], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr[-4000:]
            built[key] = out
        return built[key]
    return get


def run(program, case=None, mode="fibers", order="forward", **env):
    environ = dict(os.environ, LENET_FAST_CUDASIM_MODE=mode, LENET_FAST_CUDASIM_ORDER=order,
                   ASAN_OPTIONS="detect_leaks=0", TSAN_OPTIONS="halt_on_error=0", **env)
    environ.pop("LD_PRELOAD", None)
    return subprocess.run([str(program)] + ([case] if case else []), capture_output=True, text=True, env=environ,
                          timeout=300)


@pytest.mark.parametrize("order", ["forward", "reverse", "shuffle:5"])
@pytest.mark.parametrize("case", ["block_sum", "rotate", "warp", "uninitialised_shared"])
def test_harness_runs_correct_kernels_right(programs, case, order):
    r = run(programs("selftest"), case, order=order)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("order", ["forward", "reverse", "shuffle:5"])
def test_harness_catches_a_missing_barrier_in_every_order(programs, order):
    r = run(programs("selftest"), "missing_barrier", order=order)
    assert r.returncode == 0 and "outputs wrong without the barrier" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("case, message", [
    ("divergent_barrier", r"reached different __syncthreads\(\): .*selftest.cpp:\d+.*selftest.cpp:\d+"),
    ("exit_before_barrier", r"exited while .* waits at the __syncthreads\(\) at .*selftest.cpp:\d+"),
    ("deadlock", r"deadlock: .* waits at the warp operation at .*selftest.cpp:\d+"),
    ("shuffle_outside_mask", r"reads lane 20, outside the mask 0x0000ffff"),
    ("device_assert", r"device-side assert triggered -- .*selftest.cpp:\d+: asserts: device-side assertion `v\[threadIdx.x\] >= 0' failed"),
    ("bad_launch", r"1025 threads in a block\s+invalid configuration argument"),
])
def test_harness_catches_planted_bugs(programs, case, message):
    import re

    r = run(programs("selftest"), case)
    assert r.returncode == 0 and re.search(message, r.stdout), r.stdout + r.stderr


def test_thread_sanitizer_reports_a_missing_barrier(programs):
    r = run(programs("selftest", "tsan"), "missing_barrier", mode="threads")
    assert "WARNING: ThreadSanitizer: data race" in r.stderr and "selftest.cpp" in r.stderr, r.stderr[-3000:]
    ok = run(programs("selftest", "tsan"), "rotate", mode="threads")
    assert ok.returncode == 0 and "ThreadSanitizer" not in ok.stderr, ok.stderr[-3000:]


def test_address_sanitizer_reports_an_out_of_bounds_store(programs):
    r = run(programs("selftest", "asan"), "out_of_bounds", mode="threads")
    assert r.returncode != 0 and "heap-buffer-overflow" in r.stderr, r.stderr[-3000:]
    line = next(i for i, text in enumerate((ROOT / "tests" / "cudasim" / "selftest.cpp").read_text().splitlines(), 1)
                if "planted off-by-one" in text)
    assert f"selftest.cpp:{line}" in r.stderr  # at the kernel's own source line


@pytest.mark.parametrize("sanitizer", ["asan", "tsan"])
def test_project_kernels_under_sanitizers(programs, sanitizer):
    """Every launcher of the project once with each CUDA thread an OS thread: no memory error, no race."""
    r = run(programs("run_kernels", sanitizer), mode="threads")
    assert r.returncode == 0 and "every kernel ran" in r.stdout, r.stdout[-3000:] + r.stderr[-6000:]
    assert "Sanitizer" not in r.stderr, r.stderr[-6000:]
