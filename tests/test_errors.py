"""Bad input: each case is a clear error naming the op, or the right answer — never a crash."""
import pytest
import torch

from lenet_fast import LeNet5, TorchLeNet5, ops
from conftest import CUDA

O = torch.ops.lenet_fast


def conv_args(device="cpu"):
    return torch.randn(2, 6, 14, 14, device=device), torch.randn(16, 6, 5, 5, device=device), torch.randn(16, device=device)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x, w, b: O.conv5x5(x.double(), w, b, 0), r"lenet_fast::conv5x5: expected x to be float32, got Double"),
        (lambda x, w, b: O.conv5x5(x, w.half(), b, 0), r"lenet_fast::conv5x5: expected weight to be float32, got Half"),
        (lambda x, w, b: O.conv5x5(x[0], w, b, 0), r"lenet_fast::conv5x5: expected x to be 4-D \(N, C, H, W\), got shape \[6, 14, 14\]"),
        (lambda x, w, b: O.conv5x5(x[:, :3], w, b, 0), r"expected weight \(out_channels, 3, 5, 5\) to match the 3 channels of x"),
        (lambda x, w, b: O.conv5x5(x[:, :, :3, :3], w, b, 0), r"lenet_fast::conv5x5: expected H and W of at least 5 with padding 0"),
        (lambda x, w, b: O.conv5x5(x, w[:, :, :3, :3], b, 0), r"expected a 5x5 kernel"),
        (lambda x, w, b: O.conv5x5(x, w, b[:3], 0), r"expected bias of shape \(16\), got \[3\]"),
        (lambda x, w, b: O.conv5x5(x, w, b, 5), r"expected padding in \[0, 4\] for a 5x5 kernel, got 5"),
        (lambda x, w, b: O.conv5x5_act_pool(x[:, :, :5, :5], w, b, 0, False), r"lenet_fast::conv5x5_act_pool: expected a convolution output of at least 2x2"),
        (lambda x, w, b: O.avg_pool2x2(x[:, :, :1]), r"lenet_fast::avg_pool2x2: expected H and W of at least 2"),
        (lambda x, w, b: O.act(x.to(torch.int32)), r"lenet_fast::act: expected x to be float32, got Int"),
        (lambda x, w, b: O.act_backward(x, x[:1]), r"lenet_fast::act_backward: expected grad and y to have the same shape"),
        (lambda x, w, b: O.act_pool_backward(x, x), r"lenet_fast::act_pool_backward: expected grad of shape \[2, 6, 7, 7\]"),
        (lambda x, w, b: O.linear(x.flatten(1), torch.randn(10, 5), torch.randn(10)), r"lenet_fast::linear: expected x's last dimension to have in_features = 5"),
        (lambda x, w, b: O.linear_act(torch.randn(3, 5), torch.randn(10, 5), torch.randn(9)), r"lenet_fast::linear_act: expected bias of shape \(10\), got \[9\]"),
        (lambda x, w, b: O.linear(torch.randn(3, 5), torch.randn(10, 5, 1), torch.randn(10)), r"expected weight to be 2-D"),
        (lambda x, w, b: O.conv5x5_backward_weight(torch.randn(2, 16, 9, 10), x, 0), r"expected grad of shape \[2, OC, 10, 10\]"),
    ],
)
def test_bad_input_is_a_clear_error(call, match):
    x, w, b = conv_args()
    with pytest.raises(RuntimeError, match=match):
        call(x, w, b)


def test_model_rejects_wrong_input_shape():
    m = LeNet5()
    with pytest.raises(ValueError, match=r"LeNet5\(input_size=28\) expects input of shape \(N, 1, 28, 28\), got \(2, 1, 32, 32\)"):
        m(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="input_size must be 28 or 32"):
        LeNet5(input_size=30)
    with torch.no_grad(), pytest.raises(RuntimeError, match="lenet_fast::lenet5_forward: expected x to be float32, got Double"):
        m(torch.randn(2, 1, 28, 28, dtype=torch.float64))


def test_lenet5_forward_checks_every_layer():
    m = LeNet5()
    params = [p.detach() for p in m.parameters()]
    x = torch.randn(2, 1, 28, 28)
    bad = list(params)
    bad[4] = torch.randn(120, 399)
    with pytest.raises(RuntimeError, match=r"lenet5_forward: expected the flattened pool2 output to have in_features = 399"):
        O.lenet5_forward(x, *bad, 2)
    bad = list(params)
    bad[2] = torch.randn(16, 5, 5, 5)
    with pytest.raises(RuntimeError, match=r"expected conv2_weight \(out_channels, 6, 5, 5\) to match the 6 channels of pool1's output"):
        O.lenet5_forward(x, *bad, 2)


def test_empty_batch(device):
    x = torch.randn(0, 1, 28, 28, device=device)
    m = LeNet5().to(device)
    out = m(x)
    assert out.shape == (0, 10)
    out.sum().backward()
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in m.parameters())
    with torch.no_grad():
        assert m(x).shape == (0, 10)
    assert ops.avg_pool2x2(torch.randn(0, 3, 4, 4, device=device)).shape == (0, 3, 2, 2)
    assert ops.linear_act(torch.randn(0, 7, device=device), torch.randn(3, 7, device=device), torch.randn(3, device=device)).shape == (0, 3)


def test_nan_and_inf_propagate_like_stock(device):
    torch.manual_seed(0)
    fast = LeNet5().to(device)
    stock = TorchLeNet5().to(device)
    stock.load_state_dict(fast.state_dict())
    x = torch.randn(4, 1, 28, 28, device=device)
    x[0, 0, 10, 10] = float("nan")
    x[1, 0, 3, 3] = float("inf")
    x[2, 0, 20, 5] = -float("inf")
    for grad_mode in (True, False):
        with torch.set_grad_enabled(grad_mode):
            a, b = fast(x), stock(x)
        assert torch.equal(torch.isnan(a), torch.isnan(b))
        finite = ~torch.isnan(b)
        torch.testing.assert_close(a[finite], b[finite], rtol=1e-5, atol=1e-5)
    t = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0], device=device)
    torch.testing.assert_close(ops.act(t), torch.tanh(t), equal_nan=True)


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_mixed_devices_are_a_clear_error():
    x, w, b = conv_args()
    with pytest.raises(RuntimeError, match=r"lenet_fast::conv5x5: expected all tensors on the same device, got x on cuda:0 and weight on cpu"):
        O.conv5x5(x.cuda(), w, b.cuda(), 0)
    with pytest.raises(RuntimeError, match=r"expected all tensors on the same device"):
        O.linear(torch.randn(2, 5), torch.randn(3, 5).cuda(), torch.randn(3).cuda())


def test_every_cuda_kernel_names_the_op_when_it_cannot_run():
    """Each op's CUDA kernel, reached with CPU tensors (redispatched, so this runs anywhere): in a
    CPU-only build, an error saying the build has no CUDA kernels; in a CUDA build, one saying the
    kernel takes CUDA tensors. Either way the op is named, never a generic dispatcher error."""
    import lenet_fast
    from test_opcheck import _cpp_ops, samples

    cuda_only = torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA)
    why = ("this implementation runs on CUDA tensors" if lenet_fast.build_info()["with_cuda"]
           else "got CUDA tensors, but this build of lenet_fast has no CUDA kernels")
    tried = set()
    for op, args in samples("cpu"):
        name = op.__name__.split(".")[0]
        if name in tried:
            continue
        tried.add(name)
        args = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
        with pytest.raises(RuntimeError, match=f"lenet_fast::{name}: .*{why}"):
            op.default.redispatch(cuda_only, *args)
    assert tried == set(_cpp_ops())
