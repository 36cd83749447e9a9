"""Every op, forward and backward, against stock PyTorch (nn.Conv2d, AvgPool2d, tanh, Linear)."""
import pytest
import torch
import torch.nn.functional as F

from lenet_fast import ops
from helpers import LAYOUTS, compare_with_stock, make_layout

O = torch.ops.lenet_fast

# (IC, OC, H, W, padding): LeNet's two layers, then awkward ones (odd sizes, >16 channels, padding 4)
CONV_CASES = [
    (1, 6, 28, 28, 2),
    (6, 16, 14, 14, 0),
    (1, 6, 32, 32, 0),
    (3, 20, 9, 11, 1),
    (2, 9, 7, 6, 0),
    (4, 3, 6, 7, 4),
    (16, 120, 5, 5, 0),
]
BATCHES = [1, 3, 7, 64]


def conv_inputs(n, ic, oc, h, w, device, layout="contiguous"):
    x = make_layout(torch.randn(n, ic, h, w, device=device), layout)
    weight = torch.randn(oc, ic, 5, 5, device=device) / (ic * 25) ** 0.5
    bias = torch.randn(oc, device=device) * 0.1
    return x, weight, bias


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
@pytest.mark.parametrize("n", BATCHES)
def test_conv5x5(device, cpu_isa, case, n):
    ic, oc, h, w, pad = case
    inputs = conv_inputs(n, ic, oc, h, w, device)
    compare_with_stock(
        lambda x, wt, b: ops.conv5x5(x, wt, b, pad),
        lambda x, wt, b: F.conv2d(x, wt, b, padding=pad),
        inputs, f"conv5x5{case}",
    )


@pytest.mark.parametrize("case", [c for c in CONV_CASES if c[2] + 2 * c[4] >= 6], ids=str)
@pytest.mark.parametrize("n", BATCHES)
def test_conv5x5_act_pool(device, cpu_isa, case, n):
    ic, oc, h, w, pad = case
    inputs = conv_inputs(n, ic, oc, h, w, device)
    compare_with_stock(
        lambda x, wt, b: ops.conv5x5_act_pool(x, wt, b, pad),
        lambda x, wt, b: F.avg_pool2d(torch.tanh(F.conv2d(x, wt, b, padding=pad)), 2),
        inputs, f"conv5x5_act_pool{case}",
    )


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CONV_CASES[:2], ids=str)
def test_conv_layouts(device, layout, case):
    ic, oc, h, w, pad = case
    inputs = conv_inputs(5, ic, oc, h, w, device, layout)
    compare_with_stock(
        lambda x, wt, b: ops.conv5x5_act_pool(x, wt, b, pad),
        lambda x, wt, b: F.avg_pool2d(torch.tanh(F.conv2d(x, wt, b, padding=pad)), 2),
        inputs, f"conv5x5_act_pool{case} {layout}",
    )
    compare_with_stock(
        lambda x, wt, b: ops.conv5x5(x, wt, b, pad),
        lambda x, wt, b: F.conv2d(x, wt, b, padding=pad),
        inputs, f"conv5x5{case} {layout}",
    )


@pytest.mark.slow
@pytest.mark.parametrize("case", CONV_CASES[:2], ids=str)
def test_conv_large_batch(device, case):
    ic, oc, h, w, pad = case
    inputs = conv_inputs(1024, ic, oc, h, w, device)
    compare_with_stock(
        lambda x, wt, b: ops.conv5x5_act_pool(x, wt, b, pad),
        lambda x, wt, b: F.avg_pool2d(torch.tanh(F.conv2d(x, wt, b, padding=pad)), 2),
        inputs, f"conv5x5_act_pool{case} N=1024",
    )


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_fused_saved_activation(device, case):
    """The activation the fused op keeps for backward is tanh(conv), odd edges included."""
    ic, oc, h, w, pad = case
    if h + 2 * pad < 6 or w + 2 * pad < 6:
        pytest.skip("output too small to pool")
    x, wt, b = conv_inputs(3, ic, oc, h, w, device)
    y, act = O.conv5x5_act_pool(x, wt, b, pad, True)
    y2, empty = O.conv5x5_act_pool(x, wt, b, pad, False)
    torch.testing.assert_close(act, torch.tanh(F.conv2d(x, wt, b, padding=pad)), rtol=1e-5, atol=1e-5)
    assert torch.equal(y, y2) and empty.numel() == 0


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_fused_weight_gradient(device, cpu_isa, case):
    """conv5x5_act_pool_backward_weight == conv5x5_backward_weight(act_pool_backward(...))."""
    ic, oc, h, w, pad = case
    if h + 2 * pad < 6 or w + 2 * pad < 6:
        pytest.skip("output too small to pool")
    x, wt, b = conv_inputs(5, ic, oc, h, w, device)
    _, act = O.conv5x5_act_pool(x, wt, b, pad, True)
    g = torch.randn(5, oc, act.shape[2] // 2, act.shape[3] // 2, device=device)
    ref = O.conv5x5_backward_weight(O.act_pool_backward(g, act), x, pad)
    fused = O.conv5x5_act_pool_backward_weight(g, act, x, pad)
    for a, r in zip(fused, ref):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)


def test_fused_backward_without_saved_activation(device):
    """Called directly with save_act=False, backward recomputes the activation."""
    x, wt, b = conv_inputs(4, 6, 16, 14, 14, device)
    compare_with_stock(
        lambda x, wt, b: O.conv5x5_act_pool(x, wt, b, 0, False)[0],
        lambda x, wt, b: F.avg_pool2d(torch.tanh(F.conv2d(x, wt, b)), 2),
        [x, wt, b], "conv5x5_act_pool(save_act=False)",
    )


@pytest.mark.parametrize("shape", [(1, 6, 28, 28), (3, 16, 10, 10), (7, 2, 5, 9), (64, 6, 28, 28)], ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_avg_pool2x2(device, cpu_isa, shape, layout):
    x = make_layout(torch.randn(shape, device=device), layout)
    compare_with_stock(ops.avg_pool2x2, lambda t: F.avg_pool2d(t, 2), [x], f"avg_pool2x2{shape}")


@pytest.mark.parametrize("shape", [(1,), (7, 13), (3, 6, 28, 28), (1000, 120)], ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_tanh(device, cpu_isa, shape, layout):
    x = make_layout(torch.randn(shape, device=device) * 4, layout)
    compare_with_stock(ops.act, torch.tanh, [x], f"tanh{shape}")


def test_tanh_full_range(device, cpu_isa):
    """The rational tanh of csrc/kernels/kernel_math.h over its whole range and past its clamp, against
    float64: within 3.5 eps |tanh(x)| (its documented bound), every float32 in [4, 9.2) included
    (where the error is largest, tanh being nearly 1), and exact where float32 tanh is (-0, tiny
    values, +-1 beyond the clamp, infinities, NaN)."""
    special = [0.0, -0.0, 9.1, -9.1, 9.2, 88.0, -1e-30, 1e-30, 1e-8]
    as_int = lambda v: torch.tensor(v).view(torch.int32).item()  # noqa: E731
    every = torch.arange(as_int(4.0), as_int(9.2), dtype=torch.int32).view(torch.float32)
    x = torch.cat([torch.linspace(-12, 12, 100001), every, -every[::7], torch.tensor(special)]).to(device)
    ours = ops.act(x).double()
    ref = torch.tanh(x.double())
    ulp = torch.finfo(torch.float32).eps * ref.abs().clamp_min(torch.finfo(torch.float32).tiny)
    assert ((ours - ref).abs() / ulp).max().item() <= 3.5
    edge = ops.act(torch.tensor([-0.0, 1e-30, 9.2, -20.0, float("inf"), -float("inf"), float("nan")], device=device))
    assert torch.equal(edge[:6].cpu(), torch.tensor([-0.0, 1e-30, 1.0, -1.0, 1.0, -1.0]))
    assert torch.signbit(edge[0]) and torch.isnan(edge[6])


# (N, K, J): fc1, fc2, fc3 at several batches, then odd widths (vector tails, tile tails)
LINEAR_CASES = [(1, 400, 120), (3, 120, 84), (7, 84, 10), (64, 400, 120), (257, 120, 84), (5, 13, 5), (2, 7, 1), (9, 31, 17)]


@pytest.mark.parametrize("case", LINEAR_CASES, ids=str)
@pytest.mark.parametrize("act", ["tanh", "none"])
def test_linear(device, cpu_isa, case, act):
    n, k, j = case
    x = torch.randn(n, k, device=device)
    w = torch.randn(j, k, device=device) / k**0.5
    b = torch.randn(j, device=device) * 0.1
    if act == "tanh":
        compare_with_stock(ops.linear_act, lambda *a: torch.tanh(F.linear(*a)), [x, w, b], f"linear_act{case}")
    else:
        compare_with_stock(ops.linear, F.linear, [x, w, b], f"linear{case}")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_linear_layouts_and_leading_dims(device, layout):
    x = make_layout(torch.randn(6, 400, device=device), layout)
    w = make_layout(torch.randn(120, 400, device=device) / 20, layout)
    b = torch.randn(120, device=device)
    compare_with_stock(ops.linear_act, lambda *a: torch.tanh(F.linear(*a)), [x, w, b], f"linear_act {layout}")
    x3 = torch.randn(2, 3, 84, device=device)
    w3, b3 = torch.randn(10, 84, device=device) / 9, torch.randn(10, device=device)
    compare_with_stock(ops.linear, F.linear, [x3, w3, b3], "linear 3-D input")


@pytest.mark.slow
def test_linear_large_batch(device):
    x = torch.randn(4096, 400, device=device)
    w, b = torch.randn(120, 400, device=device) / 20, torch.randn(120, device=device)
    compare_with_stock(ops.linear_act, lambda *a: torch.tanh(F.linear(*a)), [x, w, b], "linear_act N=4096")


def test_c5_is_fc1_on_32x32(device):
    """With the classic 32x32 input, C5 (a 5x5 conv to 120 maps of 1x1) is fc1 on the 400 features."""
    pooled2 = torch.randn(9, 16, 5, 5, device=device)
    w = torch.randn(120, 400, device=device) / 20
    b = torch.randn(120, device=device)
    c5 = ops.conv5x5(pooled2, w.view(120, 16, 5, 5), b, 0)
    assert c5.shape == (9, 120, 1, 1)
    torch.testing.assert_close(c5.flatten(1), ops.linear(pooled2.flatten(1), w, b), rtol=1e-5, atol=1e-5)


def test_deterministic(device):
    x, wt, b = conv_inputs(300, 6, 16, 14, 14, device)
    g = torch.randn(300, 16, 10, 10, device=device)
    first = O.conv5x5_backward_weight(g, x, 0)
    for _ in range(3):
        again = O.conv5x5_backward_weight(g, x, 0)
        assert all(torch.equal(a, b) for a, b in zip(first, again))
    h, gl = torch.randn(1000, 400, device=device), torch.randn(1000, 120, device=device)
    first = O.linear_backward_weight(gl, h)
    assert all(torch.equal(a, b) for a, b in zip(first, O.linear_backward_weight(gl, h)))
