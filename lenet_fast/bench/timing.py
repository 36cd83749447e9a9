"""Timing the contenders of a case: warm-up, then interleaved rounds (CUDA events on a GPU,
perf_counter on the CPU), medians, and the busy processes of the "machine shared" cases."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from .workloads import COMPILE, EAGER, Case
from .report import Result, peak_gflops

Fn = Callable[[], object]


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
