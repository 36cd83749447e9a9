"""lenet_fast.LeNet5 against the tutorial's stock LeNet-5 sharing its weights."""
import copy

import pytest
import torch
import torch.nn.functional as F

from lenet_fast import LeNet5, TorchLeNet5
from helpers import assert_matches_reference, compare_model_with_stock


def pair(device, seed=0):
    torch.manual_seed(seed)
    fast = LeNet5().to(device)
    torch.manual_seed(seed)
    stock = TorchLeNet5().to(device)
    return fast, stock


def test_same_parameters_names_shapes_and_init():
    fast, stock = pair("cpu")
    a, b = dict(fast.named_parameters()), dict(stock.named_parameters())
    assert list(a) == list(b) == [
        "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias",
    ]
    for name in a:
        assert a[name].shape == b[name].shape
        assert torch.equal(a[name], b[name]), f"{name} initialised differently"
    assert a["fc1.weight"].shape == (120, 400) and a["conv2.weight"].shape == (16, 6, 5, 5)


def test_state_dict_round_trips_both_ways():
    fast, stock = pair("cpu")
    other = TorchLeNet5()
    other.load_state_dict(fast.state_dict(), strict=True)
    fresh = LeNet5()
    fresh.load_state_dict(other.state_dict(), strict=True)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), other(x), rtol=1e-5, atol=1e-5)
    assert fast.state_dict().keys() == stock.state_dict().keys()


@pytest.mark.parametrize("n", [1, 5, 64, 513])
def test_logits_and_every_gradient(device, n):
    fast, stock = pair(device)
    compare_model_with_stock(fast, stock, torch.randn(n, 1, 28, 28, device=device))


def test_inference_path_matches_training_path(device):
    """Under no_grad the model makes one lenet5_forward call; it must agree with the op chain."""
    fast, stock = pair(device)
    x = torch.randn(37, 1, 28, 28, device=device)
    with torch.no_grad():
        infer = fast(x)
        ref = stock(x)
    train = fast(x)
    torch.testing.assert_close(infer, train.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(infer, ref, rtol=1e-5, atol=1e-5)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), infer)


@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_optimizer_steps_track_stock(device, opt):
    fast, stock = pair(device)
    make = {
        "adam": lambda p: torch.optim.Adam(p, lr=1e-3),
        "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-4),
    }[opt]
    of, os_ = make(fast.parameters()), make(stock.parameters())
    for _ in range(5):
        x = torch.randn(32, 1, 28, 28, device=device)
        y = torch.randint(0, 10, (32,), device=device)
        for model, o in ((fast, of), (stock, os_)):
            o.zero_grad()
            F.cross_entropy(model(x), y).backward()
            o.step()
    for (name, a), (_, b) in zip(fast.named_parameters(), stock.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"{name} drifted from stock")


def test_classic_32x32_input(device):
    torch.manual_seed(1)
    fast = LeNet5(input_size=32).to(device)
    assert fast.conv1.padding == (0, 0)
    x = torch.randn(6, 1, 32, 32, device=device)
    w = {k: v for k, v in fast.named_parameters()}
    h = F.avg_pool2d(torch.tanh(F.conv2d(x, w["conv1.weight"], w["conv1.bias"])), 2)
    h = F.avg_pool2d(torch.tanh(F.conv2d(h, w["conv2.weight"], w["conv2.bias"])), 2)
    # C5: a 5x5 convolution to 120 maps of 1x1 is fc1 on the flattened 400 features
    c5 = torch.tanh(F.conv2d(h, w["fc1.weight"].view(120, 16, 5, 5), w["fc1.bias"])).flatten(1)
    ref = F.linear(torch.tanh(F.linear(c5, w["fc2.weight"], w["fc2.bias"])), w["fc3.weight"], w["fc3.bias"])
    torch.testing.assert_close(fast(x), ref, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), ref, rtol=1e-4, atol=1e-5)


def test_torch_compile_fullgraph(device):
    fast, stock = pair(device)
    compiled = torch.compile(fast, fullgraph=True)
    x = torch.randn(8, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (8,), device=device)
    loss = F.cross_entropy(compiled(x), y)
    loss.backward()
    ref_loss = F.cross_entropy(stock(x), y)
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    for (name, a), (_, b) in zip(fast.named_parameters(), stock.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), stock(x), rtol=1e-5, atol=1e-5)


def test_input_gradient(device):
    """dL/dx (saliency maps, adversarial examples) through the whole-network backward."""
    fast, stock = pair(device)
    stock64 = copy.deepcopy(stock).double()
    x = torch.randn(6, 1, 28, 28, device=device)
    grads = []
    for model, inp in ((fast, x), (stock, x), (stock64, x.double())):
        inp = inp.clone().requires_grad_(True)
        model(inp).square().sum().backward()
        grads.append(inp.grad)
    assert_matches_reference(*grads, name="dL/dx")
    assert all(p.grad is not None for p in fast.parameters())
