"""Results do not depend on the number of CPU threads: every reduction (weight and bias gradients
over the batch) is cut into chunks fixed by the problem size and summed in order, so one thread and
two give the same bits, on every CPU kernel variant (ISA) this machine runs."""
import torch
import torch.nn.functional as F

from lenet_fast import LeNet5

O = torch.ops.lenet_fast


def _everything():
    """Forward, loss gradient and every reduction op at batch sizes that span several chunks."""
    torch.manual_seed(0)
    model = LeNet5()
    x = torch.randn(300, 1, 28, 28)
    y = torch.randint(0, 10, (300,))
    F.cross_entropy(model(x), y).backward()
    out = [p.grad for p in model.parameters()]
    with torch.no_grad():
        out.append(model(torch.randn(1024, 1, 28, 28)))
    g, a = torch.randn(257, 6, 14, 14), torch.tanh(torch.randn(257, 6, 28, 28))
    xi = torch.randn(257, 1, 28, 28)
    out += O.conv5x5_act_pool_backward_weight(g, a, xi, 2)
    out += O.conv5x5_backward_weight(torch.randn(257, 16, 10, 10), torch.randn(257, 6, 14, 14), 0)
    out += O.linear_backward_weight(torch.randn(1000, 120), torch.randn(1000, 400))
    out.append(O.conv5x5_backward_input(torch.randn(257, 16, 10, 10), torch.randn(16, 6, 5, 5), 0))
    return out


def test_bit_identical_with_one_and_two_threads(cpu_isa):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _everything()
        torch.set_num_threads(2)
        two = _everything()
    finally:
        torch.set_num_threads(before)
    assert len(one) == len(two)
    for i, (a, b) in enumerate(zip(one, two)):
        assert torch.equal(a, b), f"result {i} differs between 1 and 2 threads (max {(a - b).abs().max().item():.3g})"
