"""Comparison rules shared by the tests.

The rule (after flash-attention's tests): lenet_fast's float32 error against a float64 reference
is at most twice stock PyTorch's float32 error against the same reference, plus a small floor for
results stock PyTorch happens to compute exactly (pooling, some sums).
"""
import torch

from lenet_fast.reference import float32_reference

LAYOUTS = ["contiguous", "channels_last", "strided"]


def make_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as t in the given memory layout (4-D tensors for channels_last)."""
    if layout == "contiguous":
        return t.contiguous()
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t.t().contiguous().t() if t.dim() == 2 else t
    if layout == "strided":  # every other element of a larger buffer
        big = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
        big[..., ::2] = t
        out = big[..., ::2]
        assert out.numel() <= 1 or not out.is_contiguous()
        return out
    raise ValueError(layout)


def assert_matches_reference(ours, stock32, ref64, name="", floor=1e-6):
    ours, stock32 = ours.detach().double().cpu(), stock32.detach().double().cpu()
    ref64 = ref64.detach().double().cpu()
    assert ours.shape == ref64.shape, f"{name}: shape {tuple(ours.shape)} != {tuple(ref64.shape)}"
    finite = torch.isfinite(ref64)
    assert torch.equal(torch.isnan(ours), torch.isnan(ref64)), f"{name}: NaNs differ from reference"
    assert torch.equal(ours[~finite & ~torch.isnan(ref64)], ref64[~finite & ~torch.isnan(ref64)]), f"{name}: infinities differ"
    if ref64.numel() == 0 or not finite.any():
        return
    ours, stock32, ref64 = ours[finite], stock32[finite], ref64[finite]
    our_err = (ours - ref64).abs().max().item()
    stock_err = (stock32 - ref64).abs().max().item()
    scale = ref64.abs().max().item()
    bound = 2 * stock_err + floor * max(scale, 1.0)
    assert our_err <= bound, (
        f"{name}: max error {our_err:.3g} vs float64 exceeds 2x stock PyTorch's {stock_err:.3g} "
        f"(+ floor; bound {bound:.3g}, scale {scale:.3g})"
    )


def grads_of(fn, inputs, grad_out):
    """Output of fn(*inputs) and the gradients of <fn(*inputs), grad_out> w.r.t. inputs."""
    inputs = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*inputs)
    out.backward(grad_out.to(out.dtype))
    return out, [t.grad for t in inputs]


def compare_with_stock(ours_fn, stock_fn, inputs, name):
    """Forward and every input gradient of ours_fn against stock_fn in float32 and float64
    (stock float32 in true float32: no TF32 on CUDA)."""
    with torch.no_grad(), float32_reference():
        probe = stock_fn(*[t.detach() for t in inputs])
    grad_out = torch.randn(probe.shape, dtype=torch.float64, device=probe.device)
    out, grads = grads_of(ours_fn, inputs, grad_out)
    with float32_reference():
        out32, grads32 = grads_of(stock_fn, inputs, grad_out)
        out64, grads64 = grads_of(stock_fn, [t.double() for t in inputs], grad_out)
    assert out.dtype == torch.float32
    assert_matches_reference(out, out32, out64, f"{name} forward")
    for i, (g, g32, g64) in enumerate(zip(grads, grads32, grads64)):
        assert_matches_reference(g, g32, g64, f"{name} grad of input {i}")


def compare_model_with_stock(fast, stock, x, name=""):
    """Logits and every parameter's gradient of a cross-entropy step: fast (float32) against the
    stock model in float32 and float64; stock must hold the same weights."""
    import copy

    import torch.nn.functional as F

    stock64 = copy.deepcopy(stock).double()
    labels = torch.randint(0, 10, (x.shape[0],), device=x.device)
    outs, grads = [], []
    for model, inp in ((fast, x), (stock, x), (stock64, x.double())):
        with float32_reference():
            out = model(inp)
            F.cross_entropy(out, labels).backward()
        outs.append(out)
        grads.append({k: p.grad for k, p in model.named_parameters()})
    assert_matches_reference(*outs, name=f"logits{name}")
    for key in grads[0]:
        assert_matches_reference(grads[0][key], grads[1][key], grads[2][key], name=f"grad {key}{name}")
