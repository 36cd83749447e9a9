"""The graphed training epoch (lenet_fast.graphs) and the uint8 evaluation path.

On the CPU, GraphedSteps(capture=False) runs the very step function a CUDA graph captures, with the
same static buffers: it must train exactly as the eager loop does (the indices from the device-side
offset, the smaller last batch, the running loss and accuracy). On a GPU, the captured graphs must
give the eager loop's losses and weights, and a training step must stay within its launch budget.
"""
import pytest
import torch
import torch.nn.functional as F

import lenet_fast
from conftest import CUDA
from lenet_fast import LeNet5, TorchLeNet5, data, train
from lenet_fast.graphs import GraphedSteps


def _setup(device, n=300, batch=64, seed=0, impl="lenet_fast"):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    args = train.parse_args(["--device", str(device)])
    model = train.build_model(impl, device, seed)
    optimizer = train.build_optimizer(args, model.parameters(), device)
    loader = data.DeviceLoader(images, labels, batch, shuffle=True, seed=seed, device=device)
    return model, optimizer, loader


@pytest.mark.parametrize("n, batch", [(300, 64), (256, 64), (40, 64)])
def test_graph_step_bookkeeping_matches_the_eager_loop(n, batch):
    """Two epochs through GraphedSteps' step function (not captured) against train_epoch: the same
    losses, accuracies and final weights, bit for bit; a last batch smaller than the others, none,
    and only one."""
    cpu = torch.device("cpu")
    m1, o1, l1 = _setup(cpu, n, batch)
    m2, o2, l2 = _setup(cpu, n, batch)
    steps = GraphedSteps(m2, o2, l2, capture=False)
    assert sorted(steps.steps) == sorted({s for s in (batch if n >= batch else 0, n % batch) if s})
    for _ in range(2):
        eager = train.train_epoch(m1, l1, o1, cpu, progress=False)
        graphed = steps.epoch()
        assert graphed["loss"] == eager["loss"] and graphed["train_accuracy"] == eager["train_accuracy"]
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_graphs_need_cuda_and_the_device_loader():
    model, optimizer, loader = _setup(torch.device("cpu"))
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        GraphedSteps(model, optimizer, loader)
    with pytest.raises(TypeError, match="device-resident loader"):
        GraphedSteps(model, optimizer, [(torch.zeros(1, 1, 28, 28), torch.zeros(1, dtype=torch.long))])


def test_forward_uint8_is_forward_on_normalised_images():
    torch.manual_seed(0)
    model = LeNet5()
    images = torch.randint(0, 256, (37, 1, 28, 28), dtype=torch.uint8)
    x = lenet_fast.ops.gather_normalize(images, torch.arange(37), 0.5, 0.5)
    with torch.inference_mode():
        assert torch.equal(model.forward_uint8(images), model(x))
    assert torch.equal(model.forward_uint8(images).detach(), model(x).detach())  # with autograd on: same
    with pytest.raises(TypeError, match="expected uint8 images"):
        model.forward_uint8(x)
    with pytest.raises(ValueError, match=r"expects images of shape \(N, 1, 28, 28\)"):
        model.forward_uint8(images[:, 0])


def test_uint8_lenet5_forward_op_checks_its_arguments():
    params = [p.detach() for p in LeNet5().parameters()]
    x = torch.randn(2, 1, 28, 28)
    with pytest.raises(RuntimeError, match="lenet_fast::lenet5_forward: mean and std normalise uint8 images; x is Float"):
        torch.ops.lenet_fast.lenet5_forward(x, *params, 2, 0.5, 0.5)
    images = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    with pytest.raises(RuntimeError, match="lenet_fast::lenet5_forward: expected a nonzero std"):
        torch.ops.lenet_fast.lenet5_forward(images, *params, 2, 0.5, 0.0)
    with pytest.raises(RuntimeError, match="lenet_fast::lenet5_forward: expected x to be float32, got Int"):
        torch.ops.lenet_fast.lenet5_forward(images.int(), *params, 2)


def test_evaluation_from_uint8_matches_float_batches():
    """evaluate() feeds lenet_fast's model the uint8 test set directly; the stock model (same
    weights) gets the normalised batches: same accuracy, same loss to rounding."""
    model, _, _ = _setup(torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    images, labels = torch.randint(0, 256, (250, 28, 28), dtype=torch.uint8, generator=g), torch.randint(0, 10, (250,), generator=g)
    loader = data.DeviceLoader(images, labels, 100, shuffle=False)
    stock = TorchLeNet5()
    stock.load_state_dict(model.state_dict())
    a, b = train.evaluate(model, loader), train.evaluate(stock, loader)
    assert a["test_images"] == b["test_images"] == 250
    assert a["confusion"] == b["confusion"]
    assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="no CUDA GPU with a CUDA build of lenet_fast")
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("impl", ["lenet_fast", "torch"])
def test_captured_graphs_train_like_the_eager_loop(impl, optimizer):
    dev = torch.device("cuda")
    args = ["--device", "cuda", "--optimizer", optimizer] + (["--lr", "0.05"] if optimizer == "sgd" else [])

    def make():
        m, _, l = _setup(dev, 300, 64, impl=impl)
        return m, train.build_optimizer(train.parse_args(args), m.parameters(), dev), l

    m1, o1, l1 = make()
    m2, o2, l2 = make()
    steps = GraphedSteps(m2, o2, l2)
    for _ in range(2):
        eager = train.train_epoch(m1, l1, o1, dev, progress=False)
        graphed = steps.epoch()
        assert graphed["loss"] == pytest.approx(eager["loss"], rel=1e-6)
        assert graphed["train_accuracy"] == eager["train_accuracy"]
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _kernel_launches(fn):
    """CUDA kernel launches while fn runs, counted by the profiler."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
               and "memcpy" not in e.name.lower() and "memset" not in e.name.lower())


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="no CUDA GPU with a CUDA build of lenet_fast")
@pytest.mark.parametrize("n", [64, 65536])
def test_launch_budget_on_the_gpu(n):
    """The whole-network ops on a GPU: the inference forward one kernel, the training forward at
    most 2, the backward at most 8 (the profiler's count, the same budget the cudasim test counts)."""
    torch.manual_seed(0)
    model = LeNet5().cuda()
    params = [p.detach() for p in model.parameters()]
    x = torch.randn(n, 1, 28, 28, device="cuda")
    O = torch.ops.lenet_fast
    O.lenet5_forward(x, *params, 2)  # (first call: allocator warm-up)
    assert _kernel_launches(lambda: O.lenet5_forward(x, *params, 2)) == 1
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, device="cuda")
    assert _kernel_launches(lambda: O.lenet5_forward(images, *params, 2, 0.5, 0.5)) == 1
    out = {}
    assert _kernel_launches(lambda: out.update(r=O.lenet5_forward_train(x, *params, 2))) <= 2
    logits, saved = out["r"]
    g = torch.randn_like(logits)
    assert _kernel_launches(lambda: O.lenet5_backward(g, x, *params[0::2], saved, 2, [False] + [True] * 10)) <= 8
