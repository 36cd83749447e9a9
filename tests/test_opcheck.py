"""torch.library.opcheck for every op: schema, fake kernel, autograd registration, AOT dispatch."""
import pytest
import torch

import lenet_fast

O = torch.ops.lenet_fast


def samples(device):
    r = lambda *s, grad=False: torch.randn(*s, device=device, requires_grad=grad)  # noqa: E731
    x1, w1, b1 = r(3, 1, 28, 28, grad=True), r(6, 1, 5, 5, grad=True), r(6, grad=True)
    x2, w2, b2 = r(2, 6, 14, 14, grad=True), r(16, 6, 5, 5, grad=True), r(16, grad=True)
    h, fw, fb = r(5, 400, grad=True), r(120, 400, grad=True), r(120, grad=True)
    params = [r(6, 1, 5, 5), r(6), r(16, 6, 5, 5), r(16), r(120, 400), r(120), r(84, 120), r(84), r(10, 84), r(10)]
    # lenet5_backward's inputs, from a forward on the same parameters
    xb = r(3, 1, 28, 28)
    logits, saved = O.lenet5_forward_train(xb, *params, 2)
    bwd = lambda mask: (torch.randn_like(logits), xb, *params[0::2], saved, 2, mask)  # noqa: E731
    nd = lambda t: t.detach()  # noqa: E731  (a tensor that needs no gradient)
    return [
        (O.conv5x5, (x1, w1, b1, 2)),
        (O.conv5x5, (r(2, 3, 9, 11), r(5, 3, 5, 5), r(5), 1)),
        # every differentiable input mixed with non-differentiable ones (frozen weight, trainable bias, ...)
        (O.conv5x5, (nd(x1), nd(w1), b1, 2)),
        (O.conv5x5, (x1, nd(w1), b1, 2)),
        (O.conv5x5_act_pool, (x1, w1, b1, 2, True)),
        (O.conv5x5_act_pool, (x2, w2, b2, 0, True)),
        (O.conv5x5_act_pool, (x2, w2, b2, 0, False)),
        (O.conv5x5_act_pool, (nd(x2), nd(w2), b2, 0, True)),
        (O.conv5x5_act_pool, (x2, nd(w2), nd(b2), 0, True)),
        (O.conv5x5_act_pool, (r(2, 2, 9, 7), r(3, 2, 5, 5), r(3), 0, True)),
        (O.conv5x5_backward_input, (r(3, 16, 10, 10), r(16, 6, 5, 5), 0)),
        (O.conv5x5_backward_input, (r(3, 6, 28, 28), r(6, 1, 5, 5), 2)),
        (O.conv5x5_backward_weight, (r(3, 16, 10, 10), r(3, 6, 14, 14), 0)),
        (O.act_pool_backward, (r(3, 6, 14, 14), r(3, 6, 28, 28))),
        (O.conv5x5_act_pool_backward_weight, (r(3, 6, 14, 14), r(3, 6, 28, 28), r(3, 1, 28, 28), 2)),
        (O.conv5x5_act_pool_backward_weight, (r(2, 16, 2, 3), r(2, 16, 5, 7), r(2, 6, 9, 11), 0)),
        (O.avg_pool2x2, (r(3, 6, 28, 28, grad=True),)),
        (O.avg_pool2x2, (r(2, 3, 7, 9, grad=True),)),
        (O.avg_pool2x2_backward, (r(2, 3, 3, 4), 7, 9)),
        (O.act, (r(4, 7, grad=True),)),
        (O.act_backward, (r(4, 7), r(4, 7))),
        (O.linear, (h, fw, fb)),
        (O.linear, (nd(h), nd(fw), fb)),
        (O.linear_act, (h, fw, fb)),
        (O.linear_act, (h, nd(fw), fb)),
        (O.linear_act, (r(2, 3, 84, grad=True), r(10, 84, grad=True), r(10, grad=True))),
        (O.linear_backward_input, (r(5, 120), r(120, 400))),
        (O.linear_backward_weight, (r(5, 120), r(5, 400))),
        (O.lenet5_forward, (r(4, 1, 28, 28), *params, 2)),
        (O.gather_normalize, (torch.randint(0, 256, (9, 1, 28, 28), dtype=torch.uint8, device=device),
                              torch.tensor([8, 0, 3, 3], device=device), 0.5, 0.5)),
        (O.lenet5_forward_train, (r(3, 1, 28, 28, grad=True), *[p.detach().requires_grad_() for p in params], 2)),
        (O.lenet5_forward_train, (r(2, 1, 32, 32), *[p.detach().requires_grad_() for p in params], 0)),
        # frozen features, trainable head; biases only
        (O.lenet5_forward_train, (r(2, 1, 28, 28), *[p.detach().requires_grad_(i >= 8) for i, p in enumerate(params)], 2)),
        (O.lenet5_forward_train, (r(2, 1, 28, 28), *[p.detach().requires_grad_(i % 2 == 1) for i, p in enumerate(params)], 2)),
        (O.lenet5_backward, bwd([True] * 11)),
        (O.lenet5_backward, bwd([False] + [True] * 10)),
        (O.lenet5_backward, bwd([False] * 9 + [True, True])),
        (O.lenet5_backward, bwd([True] + [False] * 10)),
        # the network's variants: the trailing activation / pooling / negative_slope arguments
        (O.conv5x5_act_pool, (x1, w1, b1, 2, True, "relu", "max", 0.01)),
        (O.conv5x5_act_pool, (x2, w2, nd(b2), 0, False, "sigmoid", "max", 0.01)),
        (O.act_pool_backward, (r(3, 6, 14, 14), r(3, 6, 28, 28), "leaky_relu", "max", 0.2)),
        (O.conv5x5_act_pool_backward_weight, (r(3, 6, 14, 14), r(3, 6, 28, 28), r(3, 1, 28, 28), 2, "relu", "max", 0.01)),
        (O.act, (r(4, 7, grad=True), "leaky_relu", 0.2)),
        (O.act_backward, (r(4, 7), r(4, 7), "sigmoid", 0.01)),
        (O.linear_act, (h, fw, fb, "relu", 0.01)),
        (O.lenet5_forward, (r(4, 1, 28, 28), *params, 2, 0.0, 1.0, "leaky_relu", "max", 0.2)),
        (O.lenet5_forward_train, (r(3, 1, 28, 28), *[p.detach().requires_grad_() for p in params], 2, "relu", "max", 0.01)),
        (O.lenet5_backward, (*bwd([False] + [True] * 10), "tanh", "avg", 0.01)),
    ]


SAMPLE_IDS = [f"{i}-{op.__name__}" for i, (op, _) in enumerate(samples("cpu"))]


@pytest.mark.parametrize("index", range(len(SAMPLE_IDS)), ids=SAMPLE_IDS)
def test_opcheck(device, index):
    op, args = samples(device)[index]
    torch.library.opcheck(op, args)


def _cpp_ops():
    """The ops the extension registers (the Triton ones, lenet_fast::triton_*, are Python
    triton_ops with their own tests in test_triton.py)."""
    return sorted(n.split("::")[1] for n in torch._C._dispatch_get_all_op_names()
                  if n.startswith("lenet_fast::") and not n.startswith("lenet_fast::triton_"))


def test_every_op_has_an_opcheck_sample():
    sampled = {op.__name__.split(".")[0] for op, _ in samples("cpu")}
    missing = sorted(set(_cpp_ops()) - sampled)
    assert not missing, f"ops with no opcheck sample: {missing}"


def _registration(name, key):
    """The dispatcher's line for op `name`'s kernel at dispatch key `key` ("CUDA: registered at
    FILE:LINE :: ..."), or None."""
    for line in torch._C._dispatch_dump(f"lenet_fast::{name}").splitlines():
        if line.startswith(f"{key}: "):
            return line
    return None


def test_every_op_has_a_cpu_cuda_and_fake_kernel():
    names = _cpp_ops()
    assert "conv5x5" in names and "lenet5_backward" in names  # the schemas were found at all
    for name in names:
        for key in ("CPU", "CUDA", "Meta"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(f"lenet_fast::{name}", key), f"{name} has no {key} kernel"


def test_cuda_kernels_are_real_in_a_cuda_build_and_the_stub_elsewhere():
    """A CPU-only build registers one boxed error stub (csrc/ops/no_cuda.cpp) as every op's CUDA
    kernel, which has_kernel_for_dispatch_key counts as a kernel: so tell the two apart by where the
    kernel was registered. A CUDA build must register a real kernel for every op, a CPU-only build
    the stub."""
    with_cuda = lenet_fast.build_info()["with_cuda"]
    for name in _cpp_ops():
        line = _registration(name, "CUDA")
        assert line is not None, f"{name} has no CUDA kernel"
        is_stub = "no_cuda.cpp" in line
        if with_cuda:
            assert not is_stub and "csrc/ops/cuda/" in line, f"{name}: a CUDA build's CUDA kernel is not a real one: {line}"
        else:
            assert is_stub, f"{name}: a CPU-only build's CUDA kernel is not the no-CUDA stub: {line}"
