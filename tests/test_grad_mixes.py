"""Every mix of requires_grad across an op's inputs (frozen weights with trainable biases, a frozen
feature extractor, an input gradient alone, ...): each op, and the model on each fc backend,
returns exactly the gradients autograd asks for, each equal to stock PyTorch's, and runs no
backward kernel whose result nobody needs (checked by recording the ops dispatched in backward)."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from lenet_fast import LeNet5, TorchLeNet5, ops
from lenet_fast import triton_linear as T
from conftest import skip_unless_triton_runs_on
from helpers import assert_matches_reference

O = torch.ops.lenet_fast
MASKS3 = [m for m in itertools.product([False, True], repeat=3) if any(m)]


class OpLog:
    """Records the name of every lenet_fast op dispatched while active, the calls an op makes
    through the dispatcher from C++ included (the profiler sees every dispatcher call)."""

    def __enter__(self):
        self._prof = torch.autograd.profiler.profile()
        self._prof.__enter__()
        return self

    def __exit__(self, *exc):
        self._prof.__exit__(*exc)
        self.names = [e.name.split("::")[1] for e in self._prof.function_events if e.name.startswith("lenet_fast::")]


def _conv_inputs(device):
    x = torch.randn(3, 2, 9, 11, device=device)
    w = torch.randn(4, 2, 5, 5, device=device) / 7
    b = torch.randn(4, device=device) * 0.1
    return [x, w, b]


def _linear_inputs(device):
    return [torch.randn(5, 13, device=device), torch.randn(7, 13, device=device) / 4, torch.randn(7, device=device)]


# name: (ours, stock, inputs, backward ops computing dx, backward ops computing (dw, db))
OPS = {
    "conv5x5": (lambda x, w, b: ops.conv5x5(x, w, b, 1), lambda x, w, b: F.conv2d(x, w, b, padding=1),
                _conv_inputs, {"conv5x5_backward_input"}, {"conv5x5_backward_weight"}),
    "conv5x5_act_pool": (lambda x, w, b: ops.conv5x5_act_pool(x, w, b, 1),
                          lambda x, w, b: F.avg_pool2d(torch.tanh(F.conv2d(x, w, b, padding=1)), 2),
                          _conv_inputs, {"conv5x5_backward_input"}, {"conv5x5_backward_weight"}),
    "conv5x5_act_pool(save_act=False)": (lambda x, w, b: O.conv5x5_act_pool(x, w, b, 1, False)[0],
                                          lambda x, w, b: F.avg_pool2d(torch.tanh(F.conv2d(x, w, b, padding=1)), 2),
                                          _conv_inputs, {"conv5x5_backward_input"}, {"conv5x5_backward_weight"}),
    "linear": (ops.linear, F.linear, _linear_inputs, {"linear_backward_input"}, {"linear_backward_weight"}),
    "linear_act": (ops.linear_act, lambda *a: torch.tanh(F.linear(*a)), _linear_inputs,
                    {"linear_backward_input"}, {"linear_backward_weight"}),
}


def _check_mix(ours, stock, inputs, mask, name):
    """Gradients of the inputs selected by mask: ours against stock float32 and float64."""
    results = []
    for fn, dtype in ((ours, torch.float32), (stock, torch.float32), (stock, torch.float64)):
        ins = [t.detach().to(dtype).requires_grad_(m) for t, m in zip(inputs, mask)]
        out = fn(*ins)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.device, dtype)
        log = OpLog()
        with log:
            grads = torch.autograd.grad(out, [t for t, m in zip(ins, mask) if m], g)
        results.append((grads, log.names))
    (ours_g, called), (g32, _), (g64, _) = results
    for i, (a, b, c) in enumerate(zip(ours_g, g32, g64)):
        assert_matches_reference(a, b, c, f"{name} mask {mask} grad {i}")
    return called


@pytest.mark.parametrize("mask", MASKS3, ids=lambda m: "".join("xwb"[i] if v else "-" for i, v in enumerate(m)))
@pytest.mark.parametrize("op", list(OPS))
def test_op_gradient_mixes(device, op, mask):
    ours, stock, make, dx_ops, dw_ops = OPS[op]
    called = set(_check_mix(ours, stock, make(device), mask, op))
    need_x, need_w, need_b = mask
    assert bool(called & dx_ops) == need_x, f"{op}: input-gradient kernel ran: {sorted(called)}"
    assert bool(called & dw_ops) == (need_w or need_b), f"{op}: weight-gradient kernel ran: {sorted(called)}"


@pytest.mark.skipif(not T.HAVE_TRITON, reason="triton is not installed")
@pytest.mark.parametrize("mask", MASKS3, ids=lambda m: "".join("xwb"[i] if v else "-" for i, v in enumerate(m)))
@pytest.mark.parametrize("act", [True, False], ids=["tanh", "none"])
def test_triton_gradient_mixes(device, act, mask):
    skip_unless_triton_runs_on(device)
    stock = (lambda *a: torch.tanh(F.linear(*a))) if act else F.linear
    called = _check_mix(lambda *a: T.triton_linear(*a, act), stock, _linear_inputs(device), mask, "triton_linear")
    assert called.count("triton_linear_backward") == 1


def test_single_input_ops(device):
    x = torch.randn(3, 2, 7, 9, device=device)
    _check_mix(ops.avg_pool2x2, lambda t: F.avg_pool2d(t, 2), [x], (True,), "avg_pool2x2")
    _check_mix(ops.act, torch.tanh, [x], (True,), "tanh")


PARAMS = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias",
          "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]
# Sets of what needs a gradient ("x" is the input image): the common fine-tuning setups, each
# tensor alone, and a few arbitrary mixes.
MODEL_MIXES = [
    set(PARAMS), set(PARAMS) | {"x"}, {"x"},
    {p for p in PARAMS if p.endswith("bias")},                      # BitFit: biases only
    {"fc3.weight", "fc3.bias"},                                     # a new head on frozen features
    {p for p in PARAMS if p.startswith("fc")},                      # frozen convolutions
    {p for p in PARAMS if p.startswith("conv")},                    # frozen classifier
    *({p} for p in PARAMS),
    {"x", "fc1.weight"}, {"conv1.bias", "fc2.weight"}, {"conv2.weight", "fc3.bias", "x"},
]


def _mix_id(mix):
    return "all" if mix == set(PARAMS) else "+".join(sorted(mix)) if len(mix) < 4 else f"{len(mix)} tensors"


@pytest.mark.parametrize("backend", ["native", pytest.param("triton", marks=pytest.mark.skipif(not T.HAVE_TRITON, reason="no triton"))])
@pytest.mark.parametrize("mix", MODEL_MIXES, ids=_mix_id)
def test_model_gradient_mixes(device, backend, mix):
    if backend == "triton":
        skip_unless_triton_runs_on(device)
    torch.manual_seed(0)
    fast = LeNet5(fc_backend=backend).to(device)
    stock = TorchLeNet5().to(device)
    stock.load_state_dict(fast.state_dict())
    stock64 = TorchLeNet5().to(device).double()
    stock64.load_state_dict(fast.state_dict())
    x = torch.randn(5, 1, 28, 28, device=device)
    labels = torch.randint(0, 10, (5,), device=device)
    grads, logs = [], []
    for model, inp in ((fast, x), (stock, x), (stock64, x.double())):
        for name, p in model.named_parameters():
            p.requires_grad_(name in mix)
        inp = inp.clone().requires_grad_("x" in mix)
        out = model(inp)
        log = OpLog()
        with log:
            F.cross_entropy(out, labels).backward()
        logs.append(log.names)
        got = {name: p.grad for name, p in model.named_parameters()}
        got["x"] = inp.grad
        grads.append(got)
    for name in ["x", *PARAMS]:
        if name in mix:
            assert_matches_reference(grads[0][name], grads[1][name], grads[2][name], f"{backend} {name}")
        else:
            assert grads[0][name] is None, f"{backend}: {name} needs no gradient but got one"
    want = _expected_backward_ops(mix, backend)
    got = {name: logs[0].count(name) for name in want}
    assert got == want, f"{backend}: backward ran {sorted(logs[0])}"


def _expected_backward_ops(mix, backend):
    """How often each backward op must run for this mix: only what the needed gradients use."""
    idx = {n for n, name in enumerate(["x", *PARAMS]) if name in mix}  # 0 is x, 1 conv1.weight, ...
    d = min(idx)  # the deepest tensor that needs a gradient; nothing below it is computed
    some = lambda *i: int(bool(idx & set(i)))  # noqa: E731
    x = int(0 in idx)
    if backend == "native":
        # A training step's mask takes the whole-network kernels (CPU: net_train.cpp, CUDA:
        # lenet5.cu), which call no other op; any other mask, the per-layer ops below.
        per_layer = int(mix != set(PARAMS))
        return {
            "lenet5_backward": 1,
            "linear_backward_weight": per_layer * (some(9, 10) + some(7, 8) + some(5, 6)),
            "linear_backward_input": per_layer * ((d <= 8) + (d <= 6) + (d <= 4)),
            "act_backward": per_layer * ((d <= 8) + (d <= 6)),
            "act_pool_backward": per_layer * ((d <= 4) + x),
            "conv5x5_backward_weight": per_layer * (some(3, 4) + (some(1, 2) and x)),
            "conv5x5_act_pool_backward_weight": per_layer * (some(1, 2) and not x),  # conv1, no image gradient
            "conv5x5_backward_input": per_layer * ((d <= 2) + x),
        }
    return {  # per-layer autograd: Triton fc layers, conv5x5_act_pool ops
        "triton_linear_backward": 1 + (d <= 8) + (d <= 6),
        "act_pool_backward": (d <= 4) + (d <= 2),
        "conv5x5_backward_weight": some(3, 4) + some(1, 2),
        "conv5x5_backward_input": (d <= 2) + x,
        "lenet5_backward": 0,
    }


def test_lenet5_backward_returns_only_what_is_asked(device):
    """The op itself: an output is a full gradient where output_mask asks for it, else empty."""
    torch.manual_seed(0)
    m = LeNet5().to(device)
    params = [p.detach() for p in m.parameters()]
    x = torch.randn(4, 1, 28, 28, device=device)
    logits, saved = O.lenet5_forward_train(x, *params, 2)
    g = torch.randn_like(logits)
    weights = [params[i] for i in (0, 2, 4, 6, 8)]
    full = O.lenet5_backward(g, x, *weights, saved, 2, [True] * 11)
    for mask in ([False] * 9 + [True, True], [True] + [False] * 10, [False, False, True] + [False] * 8,
                 [i % 2 == 0 for i in range(11)]):
        got = O.lenet5_backward(g, x, *weights, saved, 2, mask)
        for i, (a, want) in enumerate(zip(got, full)):
            if mask[i]:
                assert torch.equal(a, want), f"output {i}"
            else:
                assert a.numel() == 0, f"output {i} was not asked for"
