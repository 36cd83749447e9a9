"""A short forward + backward through every lenet_fast op, for compute-sanitizer.

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck python -P benchmarks/sanitize_run.py
    python -P benchmarks/sanitize_run.py --device cpu     # the same calls on the CPU (a dry run)

Odd batch sizes and paddings, so that every kernel's tail and bounds checks are exercised; each
result is compared with stock PyTorch so a kernel that reads the wrong memory also fails here.
Without the caching allocator (the variable above) every tensor is its own allocation, so
memcheck sees an out-of-bounds access instead of a read inside a pooled block.
"""
import argparse
import os

import torch
import torch.nn.functional as F

import lenet_fast
from lenet_fast import LeNet5, TorchLeNet5, ops
from lenet_fast.reference import float32_reference


def close(a, b, what):
    # fp32 sums of different order: tolerance scaled by the result's magnitude (the test suite
    # holds the kernels to the tighter float64-referenced rule; this run is about memory).
    atol = 1e-5 * max(1.0, b.abs().max().item())
    torch.testing.assert_close(a, b, rtol=1e-4, atol=atol, msg=lambda m: f"{what}: {m}")


def run(device: torch.device, triton: bool) -> None:
    # Stock PyTorch as a true float32 reference: by default cuDNN may use TF32 on CUDA.
    with float32_reference():
        _run(device, triton)


def _run(device: torch.device, triton: bool) -> None:
    torch.manual_seed(0)
    for batch in (1, 3, 33):
        # Whole model: inference op, training op and its backward, against the stock model.
        fast = LeNet5().to(device)
        stock = TorchLeNet5().to(device)
        stock.load_state_dict(fast.state_dict())
        x = torch.randn(batch, 1, 28, 28, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        with torch.no_grad():
            close(fast(x), stock(x), f"lenet5_forward batch {batch}")
        F.cross_entropy(fast(x), y).backward()
        F.cross_entropy(stock(x), y).backward()
        for (name, p), q in zip(fast.named_parameters(), stock.parameters()):
            close(p.grad, q.grad, f"lenet5_backward {name}.grad batch {batch}")

        # Per-layer ops, forward and backward, odd spatial sizes and every padding.
        for padding in (0, 1, 2):
            xi = torch.randn(batch, 3, 13, 11, device=device, requires_grad=True)
            w = torch.randn(5, 3, 5, 5, device=device, requires_grad=True)
            b = torch.randn(5, device=device, requires_grad=True)
            for ours, ref in (
                (ops.conv5x5, lambda x, w, b: F.conv2d(x, w, b, padding=padding)),
                (ops.conv5x5_act_pool, lambda x, w, b: F.avg_pool2d(torch.tanh(F.conv2d(x, w, b, padding=padding)), 2)),
            ):
                out, want = ours(xi, w, b, padding), ref(xi, w, b)
                close(out, want, f"{ours.__name__} padding {padding} batch {batch}")
                g = torch.randn_like(out)
                for got, exp, n in zip(torch.autograd.grad(out, (xi, w, b), g), torch.autograd.grad(want, (xi, w, b), g), "xwb"):
                    close(got, exp, f"{ours.__name__} grad {n} padding {padding} batch {batch}")
        t = torch.randn(batch, 3, 9, 7, device=device, requires_grad=True)
        for ours, ref in ((ops.avg_pool2x2, lambda t: F.avg_pool2d(t, 2)), (ops.act, torch.tanh)):
            out, want = ours(t), ref(t)
            close(out, want, f"{ours.__name__} batch {batch}")
            g = torch.randn_like(out)
            close(torch.autograd.grad(out, t, g)[0], torch.autograd.grad(want, t, g)[0], f"{ours.__name__} grad batch {batch}")
        xf = torch.randn(batch, 37, device=device, requires_grad=True)
        wf = torch.randn(19, 37, device=device, requires_grad=True)
        bf = torch.randn(19, device=device, requires_grad=True)
        linears = [(ops.linear, F.linear), (ops.linear_act, lambda *a: torch.tanh(F.linear(*a)))]
        if triton:
            from lenet_fast.triton_linear import triton_linear

            linears += [(lambda *a: triton_linear(*a, True), lambda *a: torch.tanh(F.linear(*a)))]
        for ours, ref in linears:
            out, want = ours(xf, wf, bf), ref(xf, wf, bf)
            close(out, want, f"linear batch {batch}")
            g = torch.randn_like(out)
            for got, exp in zip(torch.autograd.grad(out, (xf, wf, bf), g), torch.autograd.grad(want, (xf, wf, bf), g)):
                close(got, exp, f"linear grad batch {batch}")
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--no-triton", action="store_true", help="leave out the Triton fc kernels")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not lenet_fast.cuda_available():
        raise SystemExit("sanitize_run: no usable CUDA GPU or no CUDA kernels in this build (python -m lenet_fast.info)")
    run(device, triton=device.type == "cuda" and not args.no_triton)
    print(f"sanitize_run: every op forward and backward on {device} matched stock PyTorch"
          f" (caching allocator {'off' if os.environ.get('PYTORCH_NO_CUDA_MEMORY_CACHING') == '1' else 'on'})")


if __name__ == "__main__":
    main()
