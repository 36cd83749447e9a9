"""The network's variants (tutorial sections 5.2 and 7): ReLU, LeakyReLU and sigmoid beside tanh,
max pooling beside average pooling. Every op that takes a variant, and the model, against its stock
twin built from nn.ReLU / nn.LeakyReLU / nn.Sigmoid / nn.MaxPool2d, under the project's accuracy
rule; max pooling's gradient goes to the element stock PyTorch picks, ties and NaNs included."""
import copy

import pytest
import torch
import torch.nn.functional as F

from lenet_fast import LeNet5, TorchLeNet5
from lenet_fast.ops import ACTIVATIONS, POOLINGS
from lenet_fast.reference import activation_module, pooling_module
from helpers import LAYOUTS, compare_model_with_stock, compare_with_stock, make_layout

O = torch.ops.lenet_fast
VARIANTS = [(a, p) for a in ACTIVATIONS for p in POOLINGS]
SLOPE = 0.2  # the tutorial's LeakyReLU example


def stock_act(activation, slope=SLOPE):
    return activation_module(activation, slope)


@pytest.mark.parametrize("activation,pooling", VARIANTS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape,padding", [((3, 1, 28, 28), 2), ((2, 6, 14, 14), 0), ((2, 3, 11, 9), 1)])
def test_conv_act_pool(device, activation, pooling, layout, shape, padding):
    torch.manual_seed(0)
    x = make_layout(torch.randn(*shape, device=device), layout)
    w = torch.randn(5, shape[1], 5, 5, device=device) * 0.3
    b = torch.randn(5, device=device) * 0.1
    act, pool = stock_act(activation), pooling_module(pooling)

    def ours(x, w, b):
        return O.conv5x5_act_pool(x, w, b, padding, True, activation, pooling, SLOPE)[0]

    def stock(x, w, b):
        return pool(act(F.conv2d(x, w, b, padding=padding)))

    compare_with_stock(ours, stock, [x, w, b], f"conv5x5_act_pool[{activation}, {pooling}]")


@pytest.mark.parametrize("activation,pooling", VARIANTS)
def test_conv_act_pool_recomputes_without_saved_activation(activation, pooling):
    """The Python entry point keeps no activation when nothing needs a gradient; with autograd
    active but save_act false, backward recomputes it (the variant's) from the inputs."""
    torch.manual_seed(1)
    x, w, b = torch.randn(2, 1, 12, 12), torch.randn(4, 1, 5, 5), torch.randn(4)
    act, pool = stock_act(activation), pooling_module(pooling)
    compare_with_stock(lambda x, w, b: O.conv5x5_act_pool(x, w, b, 0, False, activation, pooling, SLOPE)[0],
                       lambda x, w, b: pool(act(F.conv2d(x, w, b))), [x, w, b], f"recompute[{activation}, {pooling}]")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_linear_act(device, activation):
    torch.manual_seed(2)
    x, w, b = torch.randn(7, 30, device=device), torch.randn(11, 30, device=device) * 0.3, torch.randn(11, device=device)
    act = stock_act(activation)
    compare_with_stock(lambda x, w, b: O.linear_act(x, w, b, activation, SLOPE),
                       lambda x, w, b: act(F.linear(x, w, b)), [x, w, b], f"linear_act[{activation}]")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_elementwise_act(device, activation):
    x = torch.linspace(-12, 12, 4001, device=device).reshape(1, 4001)
    x[0, :3] = torch.tensor([0.0, -0.0, 1e-30])
    compare_with_stock(lambda x: O.act(x, activation, SLOPE), stock_act(activation), [x], f"tanh op [{activation}]")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_act_special_values(device, activation):
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 100.0, -100.0], device=device)
    ours, stock = O.act(x, activation, SLOPE), stock_act(activation)(x)
    torch.testing.assert_close(ours, stock, equal_nan=True, atol=1e-7, rtol=0)


@pytest.mark.parametrize("activation,pooling", VARIANTS)
def test_act_pool_backward_op(device, activation, pooling):
    """act_pool_backward (and the fused weight gradient) with the variant, odd extents included."""
    torch.manual_seed(3)
    pre = torch.randn(2, 3, 9, 7, device=device)
    act = stock_act(activation)(pre)
    g = torch.randn(2, 3, 4, 3, device=device)
    pre_leaf = pre.clone().requires_grad_(True)
    pooling_module(pooling)(stock_act(activation)(pre_leaf)).backward(g)
    ours = O.act_pool_backward(g, act, activation, pooling, SLOPE)
    torch.testing.assert_close(ours, pre_leaf.grad, rtol=1e-6, atol=1e-7)


def _tied_windows(device):
    """Convolution outputs with equal values inside pooling windows: zero weights and a bias give
    one value everywhere; plus, in a second channel, values that repeat in pairs."""
    x = torch.randn(2, 1, 12, 12, device=device)
    w = torch.zeros(2, 1, 5, 5, device=device)
    w[1, 0, 2, 2] = 1.0  # channel 1 is x itself (cropped); make it tie in pairs:
    x = torch.round(x * 2) / 2  # few distinct values: many ties within windows
    b = torch.tensor([0.3, 0.1], device=device)
    return x, w, b


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_max_pool_ties_go_where_stock_sends_them(device, activation):
    x, w, b = _tied_windows(device)
    g = torch.randn(2, 2, 4, 4, device=device)
    ours_in = [t.clone().requires_grad_(True) for t in (x, w, b)]
    y, _ = O.conv5x5_act_pool(*ours_in, 0, True, activation, "max", SLOPE)
    y.backward(g)
    stock_in = [t.clone().requires_grad_(True) for t in (x, w, b)]
    act = stock_act(activation)
    F.max_pool2d(act(F.conv2d(*stock_in)), 2).backward(g)
    torch.testing.assert_close(y, F.max_pool2d(act(F.conv2d(x, w, b)), 2), rtol=1e-6, atol=1e-6)
    for i, (a, s) in enumerate(zip(ours_in, stock_in)):
        torch.testing.assert_close(a.grad, s.grad, rtol=1e-5, atol=1e-5, msg=lambda m: f"input {i}: {m}")
    # the routing itself, per element: which pixels got a gradient
    act_out = act(F.conv2d(x, w, b))
    dpre = O.act_pool_backward(g, act_out, activation, "max", SLOPE)
    pre = F.conv2d(x, w, b).requires_grad_(True)
    F.max_pool2d(act(pre), 2).backward(g)
    assert torch.equal(dpre != 0, pre.grad != 0)


def test_max_pool_nan_is_taken_as_stock_takes_it(device):
    """ATen's max pool takes a NaN over any number (the last NaN of a window)."""
    pre = torch.tensor([[[[1.0, float("nan"), 3.0, 2.0], [float("nan"), 0.5, 2.0, 3.0]]]], device=device)
    g = torch.tensor([[[[1.0, 2.0]]]], device=device)
    leaf = pre.clone().requires_grad_(True)
    stock_y = F.max_pool2d(torch.tanh(leaf), 2)
    stock_y.backward(g)
    ours_y = O.act(pre)
    d = O.act_pool_backward(g, ours_y, "tanh", "max", SLOPE)
    assert torch.isnan(stock_y[0, 0, 0, 0])
    assert torch.equal(torch.isnan(d), torch.isnan(leaf.grad))
    torch.testing.assert_close(d, leaf.grad, equal_nan=True)


@pytest.mark.parametrize("activation,pooling", VARIANTS)
@pytest.mark.parametrize("n", [1, 37])
def test_model_variant_matches_stock_twin(device, activation, pooling, n):
    torch.manual_seed(n)
    fast = LeNet5(activation=activation, pooling=pooling, negative_slope=SLOPE).to(device)
    stock = TorchLeNet5(activation=activation, pooling=pooling, negative_slope=SLOPE).to(device)
    stock.load_state_dict(fast.state_dict())
    x = torch.randn(n, 1, 28, 28, device=device)
    compare_model_with_stock(fast, stock, x, name=f" [{activation}, {pooling}]")
    with torch.no_grad():  # the inference op
        compare = copy.deepcopy(stock)
        torch.testing.assert_close(fast(x), compare(x), rtol=1e-4, atol=1e-5)


def test_variant_state_dicts_are_the_stock_ones():
    for activation, pooling in VARIANTS:
        fast = LeNet5(activation=activation, pooling=pooling)
        stock = TorchLeNet5(activation=activation, pooling=pooling)
        stock.load_state_dict(fast.state_dict(), strict=True)
        assert list(fast.state_dict()) == list(stock.state_dict())
    assert "activation='relu', pooling='max'" in repr(LeNet5(activation="relu", pooling="max"))


@pytest.mark.parametrize("activation,pooling", VARIANTS)
def test_uint8_inference_takes_the_variant(activation, pooling):
    torch.manual_seed(4)
    fast = LeNet5(activation=activation, pooling=pooling, negative_slope=SLOPE).eval()
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        want = fast(O.gather_normalize(images, torch.arange(5), 0.5, 0.5))
        torch.testing.assert_close(fast.forward_uint8(images), want, rtol=0, atol=0)


@pytest.mark.parametrize("bad,match", [
    (dict(activation="gelu"), "activation must be one of tanh, relu, leaky_relu, sigmoid, got 'gelu'"),
    (dict(pooling="lp"), "pooling must be one of avg, max, got 'lp'"),
    (dict(negative_slope=-0.1), "negative_slope must be finite and >= 0"),
])
def test_model_rejects_unknown_variants(bad, match):
    with pytest.raises(ValueError, match=match):
        LeNet5(**bad)


@pytest.mark.parametrize("call,match", [
    (lambda x: O.act(x, "swish"), r"lenet_fast::act: expected activation to be one of tanh, relu, leaky_relu, sigmoid, got 'swish'"),
    (lambda x: O.act_pool_backward(x[..., ::2, ::2], x, "tanh", "min"), r"lenet_fast::act_pool_backward: expected pooling to be avg or max, got 'min'"),
    (lambda x: O.linear_act(x.flatten(1), torch.ones(3, 16), torch.ones(3), "leaky_relu", -1.0),
     r"lenet_fast::linear_act: expected a finite negative_slope >= 0"),
])
def test_ops_name_bad_variants(call, match):
    with pytest.raises(RuntimeError, match=match):
        call(torch.zeros(1, 1, 4, 4))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_triton_linear_act(device, activation):
    from conftest import skip_unless_triton_runs_on

    skip_unless_triton_runs_on(device)
    from lenet_fast.triton_linear import triton_linear

    torch.manual_seed(5)
    x, w, b = torch.randn(9, 40, device=device), torch.randn(12, 40, device=device) * 0.3, torch.randn(12, device=device)
    act = stock_act(activation)
    compare_with_stock(lambda x, w, b: triton_linear(x, w, b, True, activation, SLOPE),
                       lambda x, w, b: act(F.linear(x, w, b)), [x, w, b], f"triton_linear[{activation}]")


@pytest.mark.parametrize("activation,pooling", [("relu", "max"), ("leaky_relu", "avg"), ("sigmoid", "max")])
def test_model_variant_with_triton_fc(device, activation, pooling):
    from conftest import skip_unless_triton_runs_on

    skip_unless_triton_runs_on(device)
    torch.manual_seed(6)
    fast = LeNet5(activation=activation, pooling=pooling, negative_slope=SLOPE, fc_backend="triton").to(device)
    stock = TorchLeNet5(activation=activation, pooling=pooling, negative_slope=SLOPE).to(device)
    stock.load_state_dict(fast.state_dict())
    compare_model_with_stock(fast, stock, torch.randn(6, 1, 28, 28, device=device), name=f" triton [{activation}, {pooling}]")


@pytest.mark.slow  # torch.compile: tens of seconds on a 2-core CPU
def test_variant_under_torch_compile():
    """A variant's ops (with their string and float arguments) trace into one graph."""
    torch.manual_seed(8)
    fast = LeNet5(activation="leaky_relu", pooling="max", negative_slope=SLOPE)
    compiled = torch.compile(fast, fullgraph=True)
    x = torch.randn(6, 1, 28, 28)
    eager_out = fast(x)
    eager_out.sum().backward()
    eager_grads = [p.grad.clone() for p in fast.parameters()]
    fast.zero_grad()
    out = compiled(x)
    out.sum().backward()
    torch.testing.assert_close(out, eager_out, rtol=1e-6, atol=1e-6)
    for g, e in zip((p.grad for p in fast.parameters()), eager_grads):
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-6)
