"""Triton alternative for LeNet-5's fully connected layers: y = act(x W^T + b) (fc1, fc2; act is
tanh, or relu, leaky_relu, sigmoid for the network's variants) and y = x W^T + b (fc3), forward and
backward, as custom ops `lenet_fast::triton_linear` and
`lenet_fast::triton_linear_backward` (torch.library.triton_op + wrap_triton, so torch.compile
traces into the kernels).

One tiled matmul kernel, C = A . B with strided operands, serves all three products:
    forward  y  (M, N) = x (M, K) . W^T            + bias, the activation in fp32 before the store
    dL/dx    dx (M, K) = gpre (M, N) . W
    dL/dW    dW (N, K) = gpre^T . x                 two passes: per-chunk partials over the batch,
    dL/db    db (N)    = sum_m gpre                 then an in-order sum (deterministic, no atomics)
where gpre = act'(g, y), e.g. g * (1 - y^2) for tanh, is formed while the gradient tile is loaded
(the activation's derivative from the saved output, as csrc/kernels/kernel_math.h's act_backward). Block sizes are fixed for LeNet's widths (120, 84, 10): 32x32x32 tiles; a longer
autotune list would mostly add compile time at these sizes.

Triton has no CPU backend: on CPU tensors the kernels run in Triton's interpreter, which needs
TRITON_INTERPRET=1 set before triton is imported (the tests do this).
"""
from __future__ import annotations

import functools
import os

import torch
from torch import Tensor

from . import variants

try:
    import triton
    import triton.language as tl

    HAVE_TRITON = True
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    HAVE_TRITON = False

BLOCK_M, BLOCK_N, BLOCK_K = 32, 32, 32
CHUNK = 256  # batch rows per dW/db partial
# The kernel's ACT codes: the C++ enum's values (lenet_fast.variants); NO_ACT for fc3.
ACT_CODES = variants.ACT_CODES
NO_ACT = variants.NO_ACTIVATION


def _act_code(op: str, activation: str, negative_slope: float) -> int:
    if activation not in ACT_CODES:
        raise RuntimeError(f"lenet_fast::{op}: expected activation to be one of {', '.join(ACT_CODES)}, "
                           f"got {activation!r}")
    if not variants.negative_slope_ok(negative_slope):
        raise RuntimeError(f"lenet_fast::{op}: expected a finite negative_slope >= 0, got {negative_slope}")
    return ACT_CODES[activation]


def available(device: torch.device | str | None = None) -> tuple[bool, str]:
    """Whether the Triton kernels can run on `device`, and if not, why."""
    if not HAVE_TRITON:
        return False, "triton is not installed (pip install triton)"
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        return False, ("Triton has no CPU backend; for CPU tensors set TRITON_INTERPRET=1 before "
                       "triton is imported (slow: meant for tests), or use CUDA tensors")
    return True, ""


if HAVE_TRITON:
    _TANH_CLAMP = tl.constexpr(variants.TANH_CLAMP)
    _P0, _P1, _P2, _P3, _P4 = (tl.constexpr(c) for c in variants.TANH_P)
    _Q0, _Q1, _Q2, _Q3, _Q4 = (tl.constexpr(c) for c in variants.TANH_Q)

    @triton.jit
    def _tanh(x):
        # The rational function of csrc/kernels/kernel_math.h, its coefficients read from there
        # (lenet_fast.variants): t P(t^2) / Q(t^2), t = x clamped to +-_TANH_CLAMP.
        t = tl.minimum(tl.maximum(x, -_TANH_CLAMP), _TANH_CLAMP)
        z = t * t
        p = _P4 * z + _P3
        p = p * z + _P2
        p = p * z + _P1
        p = p * z + _P0
        q = _Q4 * z + _Q3
        q = q * z + _Q2
        q = q * z + _Q1
        q = q * z + _Q0
        return t * p / q

    @triton.jit
    def _act(x, ACT: tl.constexpr, slope):
        # act_forward of csrc/kernels/kernel_math.h
        if ACT == 0:
            x = _tanh(x)
        elif ACT == 1:
            x = tl.where(x < 0.0, 0.0, x)
        elif ACT == 2:
            x = tl.where(x > 0.0, x, x * slope)
        elif ACT == 3:
            x = 0.5 * _tanh(0.5 * x) + 0.5
        return x

    @triton.jit
    def _act_backward(g, y, ACT: tl.constexpr, slope):
        # act_backward of csrc/kernels/kernel_math.h, from the saved output y
        if ACT == 0:
            g = g * (1.0 - y * y)
        elif ACT == 1:
            g = tl.where(y <= 0.0, 0.0, g)
        elif ACT == 2:
            g = tl.where(y > 0.0, g, g * slope)
        elif ACT == 3:
            g = g * (1.0 - y) * y
        return g

    @triton.jit
    def _lenet_fast_matmul_kernel(  # "lenet_fast" in the name: gpu_check.sh sanitizes kernels by name
        a_ptr, y_ptr,        # A (M, K) by strides (sam, sak); y: saved activation with A's strides, if HAS_Y
        b_ptr,               # B (K, N) by strides (sbk, sbn)
        c_ptr,               # C (chunks, M, N) by strides (scc, scm, scn)
        bias_ptr,            # (N) if HAS_BIAS
        colsum_ptr,          # (chunks, M): sums of A over K, if COLSUM (db of dW's pass)
        M, N, K, k_chunk,
        sam, sak, sbk, sbn, scc, scm, scn, slope,
        HAS_Y: tl.constexpr, HAS_BIAS: tl.constexpr, ACT: tl.constexpr,  # ACT: ACT_CODES, or -1
        COLSUM: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        chunk = tl.program_id(2)  # the reduction is cut into chunks of k_chunk (dW's batch split)
        rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        k_begin = chunk * k_chunk
        k_end = tl.minimum(k_begin + k_chunk, K)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        rowsum = tl.zeros((BLOCK_M,), dtype=tl.float32)
        for k0 in range(k_begin, k_end, BLOCK_K):
            rk = k0 + tl.arange(0, BLOCK_K)
            a_mask = (rm[:, None] < M) & (rk[None, :] < k_end)
            a_off = rm[:, None] * sam + rk[None, :] * sak
            a = tl.load(a_ptr + a_off, mask=a_mask, other=0.0)
            if HAS_Y:  # A is the gradient at the activation's output: back through it
                y = tl.load(y_ptr + a_off, mask=a_mask, other=0.0)
                a = _act_backward(a, y, ACT, slope)
            b = tl.load(b_ptr + rk[:, None] * sbk + rn[None, :] * sbn,
                        mask=(rk[:, None] < k_end) & (rn[None, :] < N), other=0.0)
            acc += tl.dot(a, b, input_precision="ieee")
            if COLSUM:
                rowsum += tl.sum(a, axis=1)
        if HAS_BIAS:
            acc += tl.load(bias_ptr + rn, mask=rn < N, other=0.0)[None, :]
        if not HAS_Y:
            acc = _act(acc, ACT, slope)
        c_mask = (rm[:, None] < M) & (rn[None, :] < N)
        tl.store(c_ptr + chunk * scc + rm[:, None] * scm + rn[None, :] * scn, acc, mask=c_mask)
        if COLSUM:
            if pid_n == 0:
                tl.store(colsum_ptr + chunk * M + rm, rowsum, mask=rm < M)


def _check(op: str, **tensors: Tensor) -> None:
    first_name, first = next(iter(tensors.items()))
    for name, t in tensors.items():
        if t.dtype != torch.float32:
            raise RuntimeError(f"lenet_fast::{op}: expected {name} to be float32, got {t.dtype}")
        if t.device != first.device:
            raise RuntimeError(f"lenet_fast::{op}: expected all tensors on the same device, got "
                               f"{first_name} on {first.device} and {name} on {t.device}")
    ok, why = available(first.device)
    if not ok:
        raise RuntimeError(f"lenet_fast::{op}: {why}")


@functools.lru_cache(maxsize=None)
def _launcher():
    """The matmul kernel as wrap_triton gives it, so torch.compile traces into it. torch before
    2.14 refuses the interpreter's InterpretedFunction (TRITON_INTERPRET=1, CPU tests only); the
    interpreter then runs the kernel as it is."""
    try:
        return torch.library.wrap_triton(_lenet_fast_matmul_kernel)
    except RuntimeError:
        if os.environ.get("TRITON_INTERPRET") == "1":
            return _lenet_fast_matmul_kernel
        raise


def _grid(m, n, chunks=1):
    return (triton.cdiv(m, BLOCK_M), triton.cdiv(n, BLOCK_N), chunks)


@torch.library.triton_op("lenet_fast::triton_linear", mutates_args=())
def triton_linear(x: Tensor, weight: Tensor, bias: Tensor, apply_act: bool, activation: str = variants.DEFAULT_ACTIVATION,
                  negative_slope: float = variants.DEFAULT_NEGATIVE_SLOPE) -> Tensor:
    """act(x W^T + b) for x (..., K), weight (N, K), bias (N) if apply_act, else x W^T + b; act is
    tanh unless activation names another of lenet_fast.ops.ACTIVATIONS."""
    code = _act_code("triton_linear", activation, negative_slope) if apply_act else NO_ACT
    _check("triton_linear", x=x, weight=weight, bias=bias)
    if weight.dim() != 2 or x.dim() < 1 or x.shape[-1] != weight.shape[1] or bias.shape != (weight.shape[0],):
        raise RuntimeError(f"lenet_fast::triton_linear: expected x (..., {weight.shape[-1]}), weight "
                           f"(out, in) and bias (out,), got x {tuple(x.shape)}, weight "
                           f"{tuple(weight.shape)}, bias {tuple(bias.shape)}")
    n_out, k = weight.shape
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    y = torch.empty((m, n_out), device=x.device, dtype=torch.float32)
    if m > 0:
        _launcher()[_grid(m, n_out)](
            x2, x2, weight, y, bias, y, m, n_out, k, max(k, 1),
            x2.stride(0), x2.stride(1), weight.stride(1), weight.stride(0), 0, y.stride(0), y.stride(1),
            negative_slope, HAS_Y=False, HAS_BIAS=True, ACT=code, COLSUM=False,
            BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K)
    return y.view(*x.shape[:-1], n_out)


@torch.library.triton_op("lenet_fast::triton_linear_backward", mutates_args=())
def triton_linear_backward(grad: Tensor, x: Tensor | None, weight: Tensor | None,
                           y: Tensor | None, activation: str = variants.DEFAULT_ACTIVATION,
                           negative_slope: float = variants.DEFAULT_NEGATIVE_SLOPE) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dweight, dbias) of triton_linear from its output gradient and, with an activation, its
    output y (the activation named by activation and negative_slope).

    Only what is asked for is computed: dx needs `weight`, dweight and dbias (one pass) need `x`;
    pass None for what autograd needs no gradient through, and that output is an empty tensor.
    """
    tensors = {k: t for k, t in dict(grad=grad, x=x, weight=weight, y=y).items() if t is not None}
    code = _act_code("triton_linear_backward", activation, negative_slope) if y is not None else NO_ACT
    _check("triton_linear_backward", **tensors)
    if x is None and weight is None:
        raise RuntimeError("lenet_fast::triton_linear_backward: expected x (for dweight, dbias) or "
                           "weight (for dx), got neither")
    n_out = grad.shape[-1]
    k = x.shape[-1] if x is not None else weight.shape[1]
    g2 = grad.reshape(-1, n_out)
    y2 = y.reshape(-1, n_out) if y is not None else g2
    if y is not None and y2.stride() != g2.stride():
        y2, g2 = y2.contiguous(), g2.contiguous()
    m = g2.shape[0]
    kern = _launcher()
    dx, dw, db = (grad.new_empty((0,)) for _ in range(3))  # outputs may not alias each other
    if weight is not None:  # dx = gpre . W: A = gpre (m, n_out), B(j, c) = W[j, c]
        dx = torch.empty((m, k), device=grad.device, dtype=torch.float32)
        if m > 0:
            kern[_grid(m, k)](
                g2, y2, weight, dx, weight, dx, m, k, n_out, max(n_out, 1),
                g2.stride(0), g2.stride(1), weight.stride(0), weight.stride(1), 0, dx.stride(0), dx.stride(1),
                negative_slope, HAS_Y=y is not None, HAS_BIAS=False, ACT=code, COLSUM=False,
                BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K)
        dx = dx.view(*grad.shape[:-1], k)
    if x is not None:
        x2 = x.reshape(-1, k)
        if m > 0:
            # dW partials: A(j, r) = gpre[r, j] over a chunk of rows r, B(r, c) = x[r, c]; the row
            # sums of A over the same chunk are dbias's partials.
            chunks = triton.cdiv(m, CHUNK)
            dw_part = torch.empty((chunks, n_out, k), device=grad.device, dtype=torch.float32)
            db_part = torch.empty((chunks, n_out), device=grad.device, dtype=torch.float32)
            kern[_grid(n_out, k, chunks)](
                g2, y2, x2, dw_part, dw_part, db_part, n_out, k, m, CHUNK,
                g2.stride(1), g2.stride(0), x2.stride(0), x2.stride(1),
                dw_part.stride(0), dw_part.stride(1), dw_part.stride(2), negative_slope,
                HAS_Y=y is not None, HAS_BIAS=False, ACT=code, COLSUM=True,
                BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K)
            dw, db = dw_part.sum(0), db_part.sum(0)  # second pass: partials added in chunk order
        else:
            dw = torch.zeros((n_out, k), device=grad.device, dtype=torch.float32)
            db = torch.zeros((n_out,), device=grad.device, dtype=torch.float32)
    return dx, dw, db


def _setup(ctx, inputs, output):
    x, weight, _, apply_act, activation, negative_slope = inputs
    ctx.activation = (activation, negative_slope)
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    ctx.save_for_backward(x if need_w or need_b else None, weight if need_x else None,
                          output if apply_act else None)


def _backward(ctx, grad):
    x, weight, y = ctx.saved_tensors
    dx, dw, db = triton_linear_backward(grad, x, weight, y, *ctx.activation)
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    return (dx if need_x else None), (dw if need_w else None), (db if need_b else None), None, None, None


triton_linear.register_autograd(_backward, setup_context=_setup)
