"""torch.library.opcheck for every op: schema, fake kernel, autograd registration, AOT dispatch."""
import pytest
import torch

O = torch.ops.lenet_fast


def samples(device):
    r = lambda *s, grad=False: torch.randn(*s, device=device, requires_grad=grad)  # noqa: E731
    x1, w1, b1 = r(3, 1, 28, 28, grad=True), r(6, 1, 5, 5, grad=True), r(6, grad=True)
    x2, w2, b2 = r(2, 6, 14, 14, grad=True), r(16, 6, 5, 5, grad=True), r(16, grad=True)
    h, fw, fb = r(5, 400, grad=True), r(120, 400, grad=True), r(120, grad=True)
    params = [r(6, 1, 5, 5), r(6), r(16, 6, 5, 5), r(16), r(120, 400), r(120), r(84, 120), r(84), r(10, 84), r(10)]
    return [
        (O.conv5x5, (x1, w1, b1, 2)),
        (O.conv5x5, (r(2, 3, 9, 11), r(5, 3, 5, 5), r(5), 1)),
        (O.conv5x5_tanh_pool, (x1, w1, b1, 2, True)),
        (O.conv5x5_tanh_pool, (x2, w2, b2, 0, True)),
        (O.conv5x5_tanh_pool, (x2, w2, b2, 0, False)),
        (O.conv5x5_tanh_pool, (r(2, 2, 9, 7), r(3, 2, 5, 5), r(3), 0, True)),
        (O.conv5x5_backward_input, (r(3, 16, 10, 10), r(16, 6, 5, 5), 0)),
        (O.conv5x5_backward_input, (r(3, 6, 28, 28), r(6, 1, 5, 5), 2)),
        (O.conv5x5_backward_weight, (r(3, 16, 10, 10), r(3, 6, 14, 14), 0)),
        (O.tanh_pool_backward, (r(3, 6, 14, 14), r(3, 6, 28, 28))),
        (O.conv5x5_tanh_pool_backward_weight, (r(3, 6, 14, 14), r(3, 6, 28, 28), r(3, 1, 28, 28), 2)),
        (O.conv5x5_tanh_pool_backward_weight, (r(2, 16, 2, 3), r(2, 16, 5, 7), r(2, 6, 9, 11), 0)),
        (O.avg_pool2x2, (r(3, 6, 28, 28, grad=True),)),
        (O.avg_pool2x2, (r(2, 3, 7, 9, grad=True),)),
        (O.avg_pool2x2_backward, (r(2, 3, 3, 4), 7, 9)),
        (O.tanh, (r(4, 7, grad=True),)),
        (O.tanh_backward, (r(4, 7), r(4, 7))),
        (O.linear, (h, fw, fb)),
        (O.linear_tanh, (h, fw, fb)),
        (O.linear_tanh, (r(2, 3, 84, grad=True), r(10, 84, grad=True), r(10, grad=True))),
        (O.linear_backward_input, (r(5, 120), r(120, 400))),
        (O.linear_backward_weight, (r(5, 120), r(5, 400))),
        (O.lenet5_forward, (r(4, 1, 28, 28), *params, 2)),
        (O.gather_normalize, (torch.randint(0, 256, (9, 1, 28, 28), dtype=torch.uint8, device=device),
                              torch.tensor([8, 0, 3, 3], device=device), 0.5, 0.5)),
        (O.lenet5_forward_train, (r(3, 1, 28, 28, grad=True), *[p.detach().requires_grad_() for p in params], 2)),
        (O.lenet5_forward_train, (r(2, 1, 32, 32), *[p.detach().requires_grad_() for p in params], 0)),
    ]


SAMPLE_IDS = [f"{i}-{op.__name__}" for i, (op, _) in enumerate(samples("cpu"))]


@pytest.mark.parametrize("index", range(len(SAMPLE_IDS)), ids=SAMPLE_IDS)
def test_opcheck(device, index):
    op, args = samples(device)[index]
    torch.library.opcheck(op, args)


def test_every_op_has_a_cpu_cuda_and_fake_kernel():
    # The C++ ops (the Triton ones, lenet_fast::triton_*, are Python triton_ops tested in test_triton)
    names = [n for n in torch._C._dispatch_get_all_op_names()
             if n.startswith("lenet_fast::") and not n.startswith("lenet_fast::triton_")]
    assert len(names) == 18, names
    for name in names:
        for key in ("CPU", "CUDA", "Meta"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(name, key), f"{name} has no {key} kernel"
