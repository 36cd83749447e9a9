"""The CPU's whole-network training step (csrc/ops/cpu/net_train.cpp: the forward as one parallel
region, the backward as two) gives the per-layer ops' results bit for bit: it calls the same
kernels per image and sums the same chunks in the same order. The per-layer path is what
lenet5_backward composes when x needs a gradient, and what the per-layer ops give when called one
by one."""
import pytest
import torch
import torch.nn.functional as F

from lenet_fast import LeNet5

O = torch.ops.lenet_fast


def _per_layer_forward(x, params, padding, variant=("tanh", "avg", 0.01)):
    w1, b1, w2, b2, f1w, f1b, f2w, f2b, f3w, f3b = params
    act, _, slope = variant
    p1, act1 = O.conv5x5_act_pool(x, w1, b1, padding, True, *variant)
    p2, act2 = O.conv5x5_act_pool(p1, w2, b2, 0, True, *variant)
    flat = p2.flatten(1)
    h1 = O.linear_act(flat, f1w, f1b, act, slope)
    h2 = O.linear_act(h1, f2w, f2b, act, slope)
    return O.linear(h2, f3w, f3b), [act1, p1, act2, flat, h1, h2]


# The tutorial's network, and variants that exercise every activation and both poolings.
VARIANTS = [("tanh", "avg", 0.01), ("relu", "max", 0.01), ("leaky_relu", "max", 0.2), ("sigmoid", "avg", 0.01),
            ("sigmoid", "max", 0.01)]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v[0]}-{v[1]}")
@pytest.mark.parametrize("input_size,batch", [(28, 1), (28, 37), (28, 300), (32, 9)])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_whole_network_step_matches_per_layer_ops(input_size, batch, threads, variant):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(input_size + batch)
        model = LeNet5(input_size=input_size)
        params = [p.detach() for p in model.parameters()]
        padding = model.conv1.padding[0]
        x = torch.randn(batch, 1, input_size, input_size)
        logits, saved = O.lenet5_forward_train(x, *params, padding, *variant)
        want_logits, want_saved = _per_layer_forward(x, params, padding, variant)
        assert torch.equal(logits, want_logits)
        for i, (a, b) in enumerate(zip(saved, want_saved)):
            assert torch.equal(a, b), f"saved[{i}]"

        g = torch.randn_like(logits)
        weights = [params[i] for i in (0, 2, 4, 6, 8)]
        fused = O.lenet5_backward(g, x, *weights, saved, padding, [False] + [True] * 10, *variant)
        per_layer = O.lenet5_backward(g, x, *weights, saved, padding, [True] * 11, *variant)  # x too: per-layer ops
        assert fused[0].numel() == 0
        for i in range(1, 11):
            assert torch.equal(fused[i], per_layer[i]), f"gradient {i} differs (max {(fused[i] - per_layer[i]).abs().max():.3g})"
    finally:
        torch.set_num_threads(before)


def test_training_step_through_autograd_takes_the_whole_network_path():
    """The model's step (x needs no gradient) and the same step with x's gradient asked for give the
    same parameter gradients: the two paths agree under autograd too."""
    torch.manual_seed(0)
    model = LeNet5()
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    grads = []
    for x_grad in (False, True):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x.clone().requires_grad_(x_grad)), y).backward()
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_whole_network_backward_declines_foreign_saved_tensors():
    """Saved tensors of the wrong shape are not the fused path's to interpret: the per-layer ops
    then report them with their own error."""
    model = LeNet5()
    params = [p.detach() for p in model.parameters()]
    x = torch.randn(4, 1, 28, 28)
    logits, saved = O.lenet5_forward_train(x, *params, 2)
    saved = list(saved)
    saved[0] = saved[0][:, :, :27]
    weights = [params[i] for i in (0, 2, 4, 6, 8)]
    with pytest.raises(RuntimeError, match="act_pool_backward|conv5x5"):
        O.lenet5_backward(torch.randn_like(logits), x, *weights, saved, 2, [False] + [True] * 10)


def test_backward_materialises_no_gradient_for_the_saved_activations():
    """lenet5_forward_train returns the activations it saves as outputs that never get a gradient;
    autograd must not fill a zero gradient of each one's shape before the backward (2.5 MB of
    zeros a step at batch 64: set_materialize_grads(false) in csrc/ops/lenet5_train.cpp)."""
    torch.manual_seed(0)
    model = LeNet5()
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    loss = F.cross_entropy(model(x), y)
    saved_shapes = [[16, 6, 28, 28], [16, 6, 14, 14], [16, 16, 10, 10], [16, 400], [16, 120], [16, 84]]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
        loss.backward()
    fills = [(e.name, e.input_shapes[0]) for e in prof.events()
             if e.name in ("aten::fill_", "aten::zero_", "aten::zeros_like") and e.input_shapes and e.input_shapes[0] in saved_shapes]
    assert fills == []
    assert all(p.grad is not None for p in model.parameters())
