"""The benchmark's cases and their contenders: lenet_fast and stock PyTorch (eager, torch.compile)
with identical weights and inputs, each built as a call without arguments for timing.py to time."""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F

from lenet_fast import LeNet5, TorchLeNet5, ops, variants

# Multiply-adds per image of each layer (28x28 input, conv1 padded by 2).
MACS = {"conv1": 6 * 28 * 28 * 25, "conv2": 16 * 10 * 10 * 150, "fc1": 400 * 120, "fc2": 120 * 84, "fc3": 84 * 10}
FWD_FLOPS = 2 * sum(MACS.values())  # ~0.83 MFLOP per image
# Backward: a weight gradient for every layer and an input gradient for all but conv1.
TRAIN_FLOPS = 3 * FWD_FLOPS - 2 * MACS["conv1"]  # ~2.26 MFLOP per image

EAGER = "stock eager"
COMPILE = "stock compile"
COMPILE_RO = "stock compile (reduce-overhead)"
GRAPH = "lenet_fast graph"
# The training step timed while a busy-looping process per core competes for the CPU: how much a
# shared machine (a compile, another run) slows each contender down (OpenMP barriers that spin
# lose whole time slices when a thread is descheduled).
SHARED_TRAIN = "train step, machine shared"


@dataclass(frozen=True)
class Case:
    name: str  # e.g. "inference", "train step", "conv2+tanh+pool fwd+bwd"
    batch: int
    flops: int  # per image
    build: Callable[[int, torch.device, tuple], dict]  # (batch, device, compile modes) -> {contender: fn}
    kind: str = "model"  # "model", "train" or "op"
    contend: int = 0     # CPU-bound processes started beside the contenders while they are timed


# ---------------------------------------------------------------------------- contenders

def compile_modes(device: torch.device, which: str = "all") -> tuple:
    """(contender name, torch.compile mode) pairs for this device: which = "all" (default mode,
    and on CUDA reduce-overhead too), "default", "reduce-overhead" (CUDA only) or "none"."""
    modes = ()
    if which in ("all", "default"):
        modes += ((COMPILE, None),)
    if which in ("all", "reduce-overhead") and device.type == "cuda":
        modes += ((COMPILE_RO, "reduce-overhead"),)
    return modes


def _compiled(fn, mode):
    # Static shapes: each case compiles for its own batch, as a user compiling for one batch would.
    return torch.compile(fn, mode=mode, dynamic=False)


def _step_begin(name):
    """CUDA-graph contenders must be told where an iteration starts (their outputs are reused)."""
    if name == COMPILE_RO:
        return torch.compiler.cudagraph_mark_step_begin
    return lambda: None


def _triton_ok(device) -> bool:
    from lenet_fast import triton_linear

    return device.type == "cuda" and triton_linear.available(device)[0]


def contender_names(case: Case, device: torch.device, modes) -> list[str]:
    """The contenders `case.build` returns on this device, in order, without building them."""
    names = ["lenet_fast"]
    if _triton_ok(device) and (case.kind != "op" or "linear" in case.name):
        names.append("lenet_fast triton")
    if case.kind == "train" and device.type == "cuda":
        names.append(GRAPH)
    return names + [EAGER] + [name for name, _ in modes]


# A variant of the network by name: "<activation>-<pooling>" (LeakyReLU at the stock default
# slope, 0.01); the tutorial's network is "tanh-avg".
DEFAULT_VARIANT = variants.name(variants.DEFAULT_ACTIVATION, variants.DEFAULT_POOLING)
VARIANTS = tuple(variants.name(a, p) for a in variants.ACTIVATIONS for p in variants.POOLINGS)


def variant_kwargs(name: str) -> dict:
    activation, _, pooling = name.rpartition("-")
    return {"activation": activation, "pooling": pooling}


def _models(device, modes, seed=0, variant=DEFAULT_VARIANT):
    """{contender: model}, every one with the same weights (separate copies: training mutates them)."""
    torch.manual_seed(seed)
    kw = variant_kwargs(variant)
    fast = LeNet5(**kw).to(device)
    stock = TorchLeNet5(**kw).to(device)
    stock.load_state_dict(fast.state_dict())
    models = {"lenet_fast": fast}
    if _triton_ok(device):
        t = LeNet5(fc_backend="triton", **kw).to(device)
        t.load_state_dict(fast.state_dict())
        models["lenet_fast triton"] = t
    models[EAGER] = stock
    for name, mode in modes:
        models[name] = _compiled(copy.deepcopy(stock), mode)
    return models


def inference_case(batch, device, modes, variant=DEFAULT_VARIANT):
    x = torch.randn(batch, 1, 28, 28, device=device)

    def run(name, model):
        begin = _step_begin(name)

        def f():
            with torch.no_grad():
                begin()
                return model(x)
        return f

    return {name: run(name, m) for name, m in _models(device, modes, variant=variant).items()}


def training_case(batch, device, modes, variant=DEFAULT_VARIANT):
    x = torch.randn(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def run(name, model):
        # torch's fused Adam, for every contender, as python -m lenet_fast.train builds it: the
        # for-loop Adam is ~80 small ops a step, a third of a batch-64 step here, and on a shared
        # machine its parallel regions alone cost more than the whole rest of the step.
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        begin = _step_begin(name)

        def f():
            begin()
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss  # for the tests: every contender's losses agree step after step
        return f

    models = _models(device, modes, variant=variant)
    fns = {}
    for name, m in models.items():
        fns[name] = run(name, m)
        if name == "lenet_fast" and device.type == "cuda":
            graph_model = LeNet5(**variant_kwargs(variant)).to(device)
            graph_model.load_state_dict(m.state_dict())
            fns[GRAPH] = _graphed_training_step(graph_model, x, y)
    return fns


def _graphed_training_step(model, x, y):
    """One training step (forward, cross-entropy, backward, fused capturable Adam) as a CUDA graph:
    warmed up on a side stream, captured, and replayed per call."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=True, fused=True)

    def step():
        F.cross_entropy(model(x), y).backward()
        opt.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(side)
    opt.zero_grad(set_to_none=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def _conv_stock(padding):
    def f(x, w, b):
        return F.avg_pool2d(torch.tanh(F.conv2d(x, w, b, padding=padding)), 2)
    return f


def _fc_stock(x, w, b):
    return torch.tanh(F.linear(x, w, b))


# name: (input shape per image, weight shape, conv padding or None for linear, tanh, input needs grad)
OPS = {
    "conv1+tanh+pool": ((1, 28, 28), (6, 1, 5, 5), 2, True, False),
    "conv2+tanh+pool": ((6, 14, 14), (16, 6, 5, 5), 0, True, True),
    "fc1 linear+tanh": ((400,), (120, 400), None, True, True),
    "fc2 linear+tanh": ((120,), (84, 120), None, True, True),
    "fc3 linear": ((84,), (10, 84), None, False, True),
}


def op_flops(op: str, backward: bool) -> int:
    """FLOPs per image of one fused op, forward or forward + backward."""
    _, _, _, _, input_grad = OPS[op]
    macs = MACS[op.split("+")[0].split()[0]]
    return 2 * macs * ((2 + input_grad) if backward else 1)


def op_case(op: str, backward: bool):
    """Builds one fused op's contenders: lenet_fast's op, Triton (fc, CUDA), its torch equivalent."""
    in_shape, w_shape, padding, act, input_grad = OPS[op]

    def build(batch, device, modes):
        x = torch.randn(batch, *in_shape, device=device, requires_grad=backward and input_grad)
        fan_in = w_shape[1] * (25 if padding is not None else 1)
        w = (torch.randn(w_shape, device=device) / fan_in**0.5).requires_grad_(backward)
        b = (0.1 * torch.randn(w_shape[0], device=device)).requires_grad_(backward)
        if padding is not None:
            fns = {"lenet_fast": lambda x, w, b: ops.conv5x5_act_pool(x, w, b, padding)}
            stock = _conv_stock(padding)
        else:
            fns = {"lenet_fast": ops.linear_act if act else ops.linear}
            if _triton_ok(device):
                from lenet_fast.triton_linear import triton_linear

                fns["lenet_fast triton"] = lambda x, w, b: triton_linear(x, w, b, act)
            stock = _fc_stock if act else F.linear
        fns[EAGER] = stock
        for name, mode in modes:
            fns[name] = _compiled(stock, mode)
        inputs = tuple(t for t in (x, w, b) if t.requires_grad)
        grad = torch.randn_like(stock(x, w, b)).detach() if backward else None

        def run(name, fn):
            begin = _step_begin(name)

            def f():
                begin()
                if backward:
                    return torch.autograd.grad(fn(x, w, b), inputs, grad)
                with torch.no_grad():
                    return fn(x, w, b)
            return f

        return {name: run(name, fn) for name, fn in fns.items()}

    return build


# ------------------------------------------------------------------------------- cases

# The GPU check's short set (benchmarks/gpu_check.sh): the whole model only, most telling first,
# so that a run stopped at its time limit has already measured what matters most.
CHECK_CASES = (("inference", 64), ("train step", 64), ("inference", 1024), ("train step", 1024),
               ("inference", 1), ("inference", 65536))


def variant_cases(variants) -> list[Case]:
    """Inference and the training step at batch 64 for each named variant of the network."""
    out = []
    for v in variants:
        out.append(Case(f"inference [{v}]", 64, FWD_FLOPS, partial(inference_case, variant=v)))
        out.append(Case(f"train step [{v}]", 64, TRAIN_FLOPS, partial(training_case, variant=v), "train"))
    return out


def cases(device: torch.device, full: bool = False, check: bool = False, variants=None) -> list[Case]:
    """The quick set, the GPU check's set (check=True), every case (full=True), or the variants'
    cases (variants: a list of names), for one device."""
    if variants:
        return variant_cases(variants)
    if check:
        return [Case(name, b, FWD_FLOPS, inference_case) if name == "inference"
                else Case(name, b, TRAIN_FLOPS, training_case, "train") for name, b in CHECK_CASES]
    if not full:
        return [Case("inference", b, FWD_FLOPS, inference_case) for b in (1, 64, 1024)] + [
            Case("train step", 64, TRAIN_FLOPS, training_case, "train")]
    shared = [] if device.type == "cuda" else [
        Case(SHARED_TRAIN, b, TRAIN_FLOPS, training_case, "train", contend=os.cpu_count() or 1) for b in (64, 1024)]
    cuda = device.type == "cuda"
    out = [Case("inference", b, FWD_FLOPS, inference_case) for b in (1, 64, 1024, 16384) + ((65536,) if cuda else ())]
    out += [Case("train step", b, TRAIN_FLOPS, training_case, "train") for b in (64, 1024)] + shared
    for op in OPS:
        for backward in (False, True):
            for b in (64, 1024) + ((65536,) if cuda else ()):
                out.append(Case(f"{op} {'fwd+bwd' if backward else 'fwd'}", b, op_flops(op, backward),
                                op_case(op, backward), "op"))
    return out

