"""Benchmarks of lenet_fast against stock PyTorch (eager and torch.compile), contenders interleaved.

    python -m lenet_fast.bench                   # quick set (~1 min on a 2-core CPU)
    python -m lenet_fast.bench --full            # every case: model, training step, each fused op
    python -m lenet_fast.bench --full --device cuda --json out.json   # also writes out.png
    python -m lenet_fast.bench --case "train" --batch 64 --no-compile
    python -m lenet_fast.bench --variant all     # the model's variants (relu-max, ...): inference
                                                 # and training step at batch 64 each

Contenders, all with identical weights:
    lenet_fast                       the package's model / op (native C++ or CUDA kernels)
    lenet_fast triton                fc layers in Triton (CUDA only: on the CPU Triton only interprets)
    stock eager                      the tutorial's nn-module LeNet-5, or the op's torch equivalent
    stock compile                    the same under torch.compile (default mode, static shapes)
    stock compile (reduce-overhead)  CUDA only: torch.compile with CUDA graphs

Cases: whole-model inference at batch 1, 64, 1024, 16384 (and 65536 on CUDA); a training step
(forward, CrossEntropyLoss, backward, fused Adam) at 64 and 1024, and on the CPU the same again with a
busy-looping process per core competing ("train step, machine shared"); each fused op forward and
forward+backward (conv+tanh+pool for conv1 and conv2, linear+tanh for fc1 and fc2, linear for fc3).
With --variant, the whole-model cases of the network's variants instead (lenet_fast.LeNet5 against
the stock twin built from the same nn modules, e.g. "inference [relu-max]").

Method: each case warms every contender up (compiling where needed), then times them in
alternating rounds (A B C A B C ...), each round a block of iterations sized to about --round-ms,
and reports the median of the per-round means. CUDA rounds are timed with CUDA events; CPU rounds
with perf_counter. "vs eager" is stock eager's median over the contender's; "vs compile" is the
best stock compile median over the contender's (both > 1 mean the contender is faster).
GFLOP/s counts a multiply-add as 2 FLOPs and ignores bias, tanh and pooling; "peak" is that as a
share of the device's float32 FMA limit (peak_gflops: SMs x FP32 lanes x 2 x max SM clock on a GPU,
threads x FLOPs per cycle x clock on the CPU; LENET_FAST_PEAK_GFLOPS overrides). On CUDA each
whole-model case also counts, with the profiler, the kernels one call runs and the launches the
host makes for it (a CUDA graph replay is one launch); "lenet_fast graph" is the training step
captured as a CUDA graph, as python -m lenet_fast.train runs it.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F

import lenet_fast
from lenet_fast import LeNet5, TorchLeNet5, ops, variants

FORMAT = 2  # of the JSON this writes; benchmarks/report.py reads this format only

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

Fn = Callable[[], object]


@dataclass(frozen=True)
class Case:
    name: str  # e.g. "inference", "train step", "conv2+tanh+pool fwd+bwd"
    batch: int
    flops: int  # per image
    build: Callable[[int, torch.device, tuple], dict]  # (batch, device, compile modes) -> {contender: fn}
    kind: str = "model"  # "model", "train" or "op"
    contend: int = 0     # CPU-bound processes started beside the contenders while they are timed


@dataclass
class Result:
    device: str
    case: str
    batch: int
    contender: str
    median_s: float
    images_per_s: float
    gflops: float
    vs_eager: float
    vs_compile: float
    iters_per_round: int
    samples_s: list = field(default_factory=list)
    peak_share: float = float("nan")  # gflops over the device's float32 FMA limit
    launches: int | None = None       # host kernel launches per call (CUDA, whole-model cases)
    kernels: int | None = None        # kernels run per call


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
            F.cross_entropy(model(x), y).backward()
            opt.step()
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


# ------------------------------------------------------------------------------ timing

def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_block(fn: Fn, iters: int, device: torch.device) -> float:
    """Mean seconds per call over `iters` back-to-back calls (CUDA events on a GPU)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / iters
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) / iters


def interleaved(contenders: dict, device, rounds=15, round_ms=30.0, warmup=3, max_case_s=30.0, min_rounds=5):
    """{name: fn} -> ({name: [seconds per call, one per round]}, {name: iterations per round}).

    Warm-up calls (which also compile) come first; then the rounds, alternating the contenders so
    that drifts of a shared machine fall on all of them alike. Rounds are cut (not below
    min_rounds) when one pass over the contenders would take the case past max_case_s.
    """
    iters = {}
    for name, fn in contenders.items():
        for _ in range(warmup):
            fn()
        _sync(device)
        one = max(min(time_block(fn, 1, device) for _ in range(2)), 1e-7)
        iters[name] = max(1, int(round_ms / 1e3 / one))
    pass_s = sum(iters[n] * max(time_block(fn, 1, device), 1e-7) for n, fn in contenders.items())
    rounds = max(min_rounds, min(rounds, int(max_case_s / pass_s)))
    samples = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            samples[name].append(time_block(fn, iters[name], device))
    return samples, iters


def _cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cpu_mhz() -> float | None:
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":", 1)[1]) for line in f if line.startswith("cpu MHz")]
        return max(mhz) if mhz else None
    except (OSError, ValueError):
        return None


# FP32 FMA lanes per SM by compute capability (the CUDA programming guide's throughput table).
_FP32_LANES = {(7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128, (9, 0): 128}


def peak_gflops(device: torch.device) -> tuple[float, str]:
    """The device's float32 FMA limit in GFLOP/s and how it was worked out (nan if unknown)."""
    if os.environ.get("LENET_FAST_PEAK_GFLOPS"):
        return float(os.environ["LENET_FAST_PEAK_GFLOPS"]), "LENET_FAST_PEAK_GFLOPS"
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        lanes = _FP32_LANES.get((p.major, p.minor), 128)
        mhz = _nvidia_query("clocks.max.sm")
        if not mhz:
            return float("nan"), "unknown (no SM clock from nvidia-smi)"
        mhz = float(mhz)
        return p.multi_processor_count * lanes * 2 * mhz / 1e3, \
            f"{p.multi_processor_count} SMs x {lanes} FP32 lanes x 2 x {mhz:.0f} MHz"
    flags = _cpu_flags()
    per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 8
    mhz = _cpu_mhz()
    if not mhz:
        return float("nan"), "unknown (no clock in /proc/cpuinfo)"
    threads = torch.get_num_threads()
    return threads * per_cycle * mhz / 1e3, f"{threads} threads x {per_cycle} FLOP/cycle x {mhz:.0f} MHz"


_LAUNCH_CALLS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx",
                 "cudaGraphLaunch", "cuGraphLaunch", "cudaLaunchCooperativeKernel")


def count_launches(fn: Fn) -> tuple[int, int]:
    """(host kernel launches, kernels run) of one call of fn on CUDA, from the profiler."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    launches = kernels = 0
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            kernels += "memcpy" not in e.name.lower() and "memset" not in e.name.lower()
        elif e.name in _LAUNCH_CALLS:
            launches += 1
    return launches, kernels


def _spin():
    while True:
        pass


class busy_processes:
    """`n` CPU-bound processes (a busy loop each) for the duration of a with block."""

    def __init__(self, n: int):
        self.n, self.procs = n, []

    def __enter__(self):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # no fork of a process that holds OpenMP and CUDA state
        self.procs = [ctx.Process(target=_spin, daemon=True) for _ in range(self.n)]
        for p in self.procs:
            p.start()
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join()


def run_case(case: Case, device: torch.device, modes, rounds, round_ms, max_case_s, only=None) -> list[Result]:
    torch._dynamo.reset()  # each case compiles its own graphs; no recompile limits across cases
    contenders = case.build(case.batch, device, modes)
    if only:
        contenders = {k: v for k, v in contenders.items() if k in only or k == EAGER}
    with busy_processes(case.contend):
        samples, iters = interleaved(contenders, device, rounds=rounds, round_ms=round_ms, max_case_s=max_case_s)
    med = {k: statistics.median(v) for k, v in samples.items()}
    compiled = [med[k] for k in med if k.startswith(COMPILE)]
    best_compile = min(compiled) if compiled else float("nan")
    peak, _ = peak_gflops(device)
    counts = {}
    if device.type == "cuda" and case.kind in ("model", "train"):
        counts = {k: count_launches(fn) for k, fn in contenders.items()}
    out = []
    for k, t in med.items():
        gflops = case.batch * case.flops / t / 1e9
        launches, kernels = counts.get(k, (None, None))
        out.append(Result(str(device), case.name, case.batch, k, t, case.batch / t, gflops, med[EAGER] / t,
                          best_compile / t, iters[k], samples[k], gflops / peak, launches, kernels))
    return out


# ------------------------------------------------------------------------- environment

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_query(field: str) -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def _nvidia_driver() -> str | None:
    return _nvidia_query("driver_version")


def environment(devices) -> dict:
    info = lenet_fast.build_info()
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    env = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "devices": [str(d) for d in devices],
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": triton_version,
        "lenet_fast": info["version"],
        "lenet_fast_build": info,
        "peak_gflops": {str(d): peak_gflops(d) for d in devices},
    }
    if any(d.type == "cuda" for d in devices):
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_capability=f"sm_{p.major}{p.minor}", gpu_memory_gib=round(p.total_memory / 2**30, 1),
                   gpu_sms=p.multi_processor_count, nvidia_driver=_nvidia_driver(),
                   cuda_runtime=torch.version.cuda)
    return env


# ----------------------------------------------------------------------------- output

def _fmt_time(s: float) -> str:
    return f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def table(results: list[Result]) -> str:
    lines = [f"{'device':<7}{'case':<26}{'batch':>6}  {'contender':<32}{'median':>11}{'images/s':>13}"
             f"{'GFLOP/s':>9}{'peak':>7}{'vs eager':>10}{'vs compile':>11}{'launches/kernels':>18}"]
    for r in results:
        counted = f"{r.launches}/{r.kernels}" if r.launches is not None else "-"
        lines.append(f"{r.device:<7}{r.case:<26}{r.batch:>6}  {r.contender:<32}{_fmt_time(r.median_s):>11}"
                     f"{r.images_per_s:>13,.0f}{r.gflops:>9.1f}{100 * r.peak_share:>6.1f}%{r.vs_eager:>9.2f}x"
                     f"{r.vs_compile:>10.2f}x{counted:>18}")
    return "\n".join(lines)


def plot(results: list[Result], path: str, env: dict) -> bool:
    """Throughput against batch size per contender, log-log: one panel per (device, model case)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is not installed; no plot written (pip install matplotlib)", file=sys.stderr)
        return False
    panels = sorted({(r.device, r.case) for r in results if r.case in ("inference", "train step")})
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, (dev, case) in zip(axes[0], panels):
        rows = [r for r in results if (r.device, r.case) == (dev, case)]
        for name in dict.fromkeys(r.contender for r in rows):
            pts = sorted((r.batch, r.images_per_s) for r in rows if r.contender == name)
            ax.plot(*zip(*pts), marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("images / s")
        where = env.get("gpu") if dev.startswith("cuda") else f"{env['cpu_model']}, {env['torch_threads']} threads"
        ax.set_title(f"{case} on {dev}\n{where}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"lenet_fast {env['lenet_fast']} vs torch {env['torch']} ({env['date']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> list[Result]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="all", help="cpu, cuda, or all (default: cpu, plus cuda when present)")
    p.add_argument("--full", action="store_true", help="every case (default: a quick set)")
    p.add_argument("--check", action="store_true", help="the GPU check's short set: inference at 1, 64, 1024, "
                   "65536 and the training step at 64, 1024 (most telling first)")
    p.add_argument("--case", action="append", help="only cases whose name contains this (repeatable)")
    p.add_argument("--batch", type=int, action="append", help="run the chosen cases at these batch sizes instead (repeatable)")
    p.add_argument("--contender", action="append", help="only these contenders (stock eager is always timed)")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile contenders")
    p.add_argument("--compile-mode", choices=("all", "default", "reduce-overhead"), default="all",
                   help="which torch.compile contenders (default: all; reduce-overhead exists on CUDA only)")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--round-ms", type=float, default=None, help="time per round per contender (default 30 on CPU, 10 on CUDA)")
    p.add_argument("--max-case-s", type=float, default=30.0, help="cut rounds (to no fewer than 5) past this")
    p.add_argument("--variant", action="append", metavar="ACT-POOL",
                   help=f"the whole-model cases of this variant of the network instead ({', '.join(VARIANTS)}, "
                        "or all; repeatable)")
    p.add_argument("--json", help="write environment and results here")
    p.add_argument("--plot", help="write the throughput plot here (default: the --json path with .png)")
    p.add_argument("--no-plot", action="store_true", help="write no plot (--replot makes it later from the JSON)")
    p.add_argument("--replot", metavar="JSON", help="only draw the plot of an earlier --json file (to --plot, "
                   "or beside it as .png), then exit")
    args = p.parse_args(argv)
    variants = None
    if args.variant:
        variants = list(VARIANTS) if "all" in args.variant else list(dict.fromkeys(args.variant))
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            p.error(f"--variant: unknown {', '.join(unknown)} (known: {', '.join(VARIANTS)}, all)")
    if args.replot:
        with open(args.replot) as f:
            data = json.load(f)
        saved = [Result(**r) for r in data["results"]]
        path = args.plot or os.path.splitext(args.replot)[0] + ".png"
        if not plot(saved, path, data["environment"]):
            p.error(f"--replot: nothing to plot in {args.replot} (no whole-model cases, or no matplotlib)")
        print(f"wrote {path}")
        return saved

    if args.device == "all":
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    else:
        devices = [torch.device(args.device)]
    for d in devices:
        if d.type == "cuda" and not lenet_fast.cuda_available():
            p.error("--device cuda: no usable CUDA GPU, or this lenet_fast build has no CUDA kernels "
                    "(python -m lenet_fast.info says which)")
    env = environment(devices)
    print(" ".join(f"{k}={v}" for k, v in env.items() if k != "lenet_fast_build"), flush=True)
    results = []

    def save():  # after every case, so that a run cut short keeps what it measured
        with open(args.json, "w") as f:
            json.dump({"format": FORMAT, "environment": env, "args": vars(args),
                       "results": [asdict(r) for r in results]}, f, indent=1)

    for d in devices:
        modes = compile_modes(d, "none" if args.no_compile else args.compile_mode)
        round_ms = args.round_ms or (10.0 if d.type == "cuda" else 30.0)
        chosen = [c for c in cases(d, args.full, args.check, variants)
                  if not args.case or any(s in c.name for s in args.case)]
        if args.batch:
            chosen = [replace(c, batch=b) for c in {c.name: c for c in chosen}.values() for b in args.batch]
        if not chosen:
            p.error(f"no case matches --case {args.case} (cases: {sorted({c.name for c in cases(d, True)})})")
        for case in chosen:
            t0 = time.perf_counter()
            rs = run_case(case, d, modes, args.rounds, round_ms, args.max_case_s, only=args.contender)
            results += rs
            if args.json:
                save()
            print(table(rs).split("\n", 1)[1] + f"   [{time.perf_counter() - t0:.0f} s]", flush=True)
    print()
    print(table(results))
    if args.json:
        save()
        print(f"wrote {args.json}")
    plot_path = args.plot or (os.path.splitext(args.json)[0] + ".png" if args.json else None)
    if plot_path and not args.no_plot and plot(results, plot_path, env):
        print(f"wrote {plot_path}")
    return results


if __name__ == "__main__":
    main()
