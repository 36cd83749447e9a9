"""Degenerate inputs (empty batches, zero channels or features, empty datasets): every op gives
the mathematically right answer or a clear error naming the op, and the same on every device.

Each case builds its inputs on the CPU; on the CPU the result is checked against what the
operation means (a sum over nothing is zero, so a convolution over zero input channels is its
bias), and on CUDA it must equal the CPU kernels' result or raise the same error."""
import pytest
import torch
import torch.nn.functional as F

import lenet_fast
from conftest import CUDA

O = torch.ops.lenet_fast


def _r(*shape):
    return torch.randn(*shape)


def _params():
    torch.manual_seed(0)
    return [p.detach() for p in lenet_fast.LeNet5().parameters()]


def _pool_act(t):
    return F.avg_pool2d(torch.tanh(t), 2)


def _lenet5_backward_n0():
    params = _params()
    x = _r(0, 1, 28, 28)
    logits, saved = O.lenet5_forward_train(x, *params, 2)
    return O.lenet5_backward, (_r(0, 10), x, *params[0::2], saved, 2, [True] * 11)


def _zeros_like_params():
    return [torch.zeros(0, 1, 28, 28)] + [torch.zeros_like(p) for p in _params()]


# name: (() -> (op, args on the CPU), expected: (args) -> outputs | an error message regex)
CASES = {
    "conv5x5 no input channels": (
        lambda: (O.conv5x5, (_r(2, 0, 7, 7), _r(3, 0, 5, 5), _r(3), 1)),
        lambda x, w, b, p: b.view(1, 3, 1, 1).expand(2, 3, 5, 5)),
    "conv5x5 empty batch": (
        lambda: (O.conv5x5, (_r(0, 2, 7, 7), _r(3, 2, 5, 5), _r(3), 1)),
        lambda x, w, b, p: torch.zeros(0, 3, 5, 5)),
    "conv5x5 no output channels": (
        lambda: (O.conv5x5, (_r(2, 2, 7, 7), _r(0, 2, 5, 5), _r(0), 1)),
        r"lenet_fast::conv5x5: expected at least one output channel"),
    "conv5x5_act_pool no input channels": (
        lambda: (O.conv5x5_act_pool, (_r(2, 0, 7, 7), _r(3, 0, 5, 5), _r(3), 1, True)),
        lambda x, w, b, p, s: (_pool_act(b.view(1, 3, 1, 1).expand(2, 3, 5, 5)),
                               torch.tanh(b).view(1, 3, 1, 1).expand(2, 3, 5, 5))),
    "conv5x5_act_pool empty batch": (
        lambda: (O.conv5x5_act_pool, (_r(0, 2, 7, 7), _r(3, 2, 5, 5), _r(3), 1, True)),
        lambda x, w, b, p, s: (torch.zeros(0, 3, 2, 2), torch.zeros(0, 3, 5, 5))),
    "conv5x5_backward_weight no input channels": (
        lambda: (O.conv5x5_backward_weight, (_r(2, 3, 1, 1), _r(2, 0, 5, 5), 0)),
        lambda g, x, p: (torch.zeros(3, 0, 5, 5), g.sum((0, 2, 3)))),
    "conv5x5_backward_weight no output channels": (
        lambda: (O.conv5x5_backward_weight, (_r(2, 0, 1, 1), _r(2, 3, 5, 5), 0)),
        lambda g, x, p: (torch.zeros(0, 3, 5, 5), torch.zeros(0))),
    "conv5x5_backward_weight empty batch": (
        lambda: (O.conv5x5_backward_weight, (_r(0, 3, 1, 1), _r(0, 2, 5, 5), 0)),
        lambda g, x, p: (torch.zeros(3, 2, 5, 5), torch.zeros(3))),
    "conv5x5_act_pool_backward_weight no input channels": (
        lambda: (O.conv5x5_act_pool_backward_weight, (_r(2, 3, 1, 1), torch.tanh(_r(2, 3, 2, 2)), _r(2, 0, 6, 6), 0)),
        lambda g, a, x, p: (torch.zeros(3, 0, 5, 5), O.act_pool_backward(g, a).sum((0, 2, 3)))),
    "conv5x5_act_pool_backward_weight empty batch": (
        lambda: (O.conv5x5_act_pool_backward_weight, (_r(0, 3, 1, 1), _r(0, 3, 2, 2), _r(0, 2, 6, 6), 0)),
        lambda g, a, x, p: (torch.zeros(3, 2, 5, 5), torch.zeros(3))),
    "conv5x5_backward_input no output channels": (
        lambda: (O.conv5x5_backward_input, (_r(2, 0, 5, 5), _r(0, 3, 5, 5), 0)),
        lambda g, w, p: torch.zeros(2, 3, 9, 9)),
    "conv5x5_backward_input no input channels": (
        lambda: (O.conv5x5_backward_input, (_r(2, 3, 5, 5), _r(3, 0, 5, 5), 0)),
        lambda g, w, p: torch.zeros(2, 0, 9, 9)),
    "conv5x5_backward_input empty batch": (
        lambda: (O.conv5x5_backward_input, (_r(0, 3, 5, 5), _r(3, 2, 5, 5), 1)),
        lambda g, w, p: torch.zeros(0, 2, 7, 7)),
    "linear no input features": (
        lambda: (O.linear, (_r(3, 0), _r(4, 0), _r(4))),
        lambda x, w, b: b.expand(3, 4)),
    "linear_act no input features": (
        lambda: (O.linear_act, (_r(2, 3, 0), _r(4, 0), _r(4))),
        lambda x, w, b: torch.tanh(b).expand(2, 3, 4)),
    "linear no output features": (
        lambda: (O.linear, (_r(3, 5), _r(0, 5), _r(0))),
        lambda x, w, b: torch.zeros(3, 0)),
    "linear empty batch": (
        lambda: (O.linear_act, (_r(0, 5), _r(4, 5), _r(4))),
        lambda x, w, b: torch.zeros(0, 4)),
    "linear 1-D input": (
        lambda: (O.linear, (_r(5), _r(4, 5), _r(4))),
        lambda x, w, b: F.linear(x, w, b)),
    "linear_backward_input no output features": (
        lambda: (O.linear_backward_input, (_r(3, 0), _r(0, 5))),
        lambda g, w: torch.zeros(3, 5)),
    "linear_backward_input no input features": (
        lambda: (O.linear_backward_input, (_r(3, 4), _r(4, 0))),
        lambda g, w: torch.zeros(3, 0)),
    "linear_backward_weight no input features": (
        lambda: (O.linear_backward_weight, (_r(3, 4), _r(3, 0))),
        lambda g, x: (torch.zeros(4, 0), g.sum(0))),
    "linear_backward_weight no output features": (
        lambda: (O.linear_backward_weight, (_r(3, 0), _r(3, 5))),
        lambda g, x: (torch.zeros(0, 5), torch.zeros(0))),
    "linear_backward_weight empty batch": (
        lambda: (O.linear_backward_weight, (_r(0, 4), _r(0, 5))),
        lambda g, x: (torch.zeros(4, 5), torch.zeros(4))),
    "avg_pool2x2 no channels": (
        lambda: (O.avg_pool2x2, (_r(2, 0, 4, 5),)),
        lambda x: torch.zeros(2, 0, 2, 2)),
    "avg_pool2x2_backward no channels": (
        lambda: (O.avg_pool2x2_backward, (_r(2, 0, 2, 2), 4, 5)),
        lambda g, h, w: torch.zeros(2, 0, 4, 5)),
    "act empty": (lambda: (O.act, (_r(0, 3),)), lambda x: torch.zeros(0, 3)),
    "act_backward empty": (lambda: (O.act_backward, (_r(0, 3), _r(0, 3))), lambda g, y: torch.zeros(0, 3)),
    "act_pool_backward no channels": (
        lambda: (O.act_pool_backward, (_r(2, 0, 2, 2), _r(2, 0, 4, 4))),
        lambda g, a: torch.zeros(2, 0, 4, 4)),
    "gather_normalize empty dataset": (
        lambda: (O.gather_normalize, (torch.zeros(0, 1, 28, 28, dtype=torch.uint8), torch.tensor([0]), 0.5, 0.5)),
        r"lenet_fast::gather_normalize: expected a non-empty dataset to pick 1 samples from, got images of shape \[0, 1, 28, 28\]"),
    "gather_normalize empty index of an empty dataset": (
        lambda: (O.gather_normalize, (torch.zeros(0, 1, 28, 28, dtype=torch.uint8), torch.zeros(0, dtype=torch.long), 0.5, 0.5)),
        lambda im, i, m, s: torch.zeros(0, 1, 28, 28)),
    "gather_normalize empty rows": (
        lambda: (O.gather_normalize, (torch.zeros(3, 0, dtype=torch.uint8), torch.tensor([0, 2]), 0.5, 0.5)),
        lambda im, i, m, s: torch.zeros(2, 0)),
    "lenet5_forward empty batch": (
        lambda: (O.lenet5_forward, (_r(0, 1, 28, 28), *_params(), 2)),
        lambda *a: torch.zeros(0, 10)),
    "lenet5_backward empty batch": (_lenet5_backward_n0, lambda *a: _zeros_like_params()),
}


def _to(args, device):
    def move(a):
        if isinstance(a, torch.Tensor):
            return a.to(device)
        if isinstance(a, (list, tuple)) and a and isinstance(a[0], torch.Tensor):
            return [t.to(device) for t in a]
        return a
    return [move(a) for a in args]


def _flat(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


@pytest.mark.parametrize("name", list(CASES))
def test_degenerate_input_on_cpu(name):
    make, expected = CASES[name]
    op, args = make()
    if isinstance(expected, str):
        with pytest.raises(RuntimeError, match=expected):
            op(*args)
        return
    got, want = _flat(op(*args)), _flat(expected(*args))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == torch.float32, f"{name}: {g.shape} vs {w.shape}"
        torch.testing.assert_close(g, w.float(), rtol=1e-6, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="no CUDA GPU with a CUDA build of lenet_fast")
@pytest.mark.parametrize("name", list(CASES))
def test_degenerate_input_same_on_cuda(name):
    op, args = CASES[name][0]()
    try:
        want = _flat(op(*args))
    except RuntimeError as e:
        with pytest.raises(RuntimeError) as got:
            op(*_to(args, "cuda"))
            torch.cuda.synchronize()
        assert str(got.value).split("\n")[0] == str(e).split("\n")[0]
        return
    got = _flat(op(*_to(args, "cuda")))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.device.type == "cuda" and g.shape == w.shape
        torch.testing.assert_close(g.cpu(), w, rtol=1e-5, atol=1e-6)
