"""Benchmarks of lenet_fast against stock PyTorch (eager and torch.compile), contenders interleaved.

    python -m lenet_fast.bench                   # quick set (~1 min on a 2-core CPU)
    python -m lenet_fast.bench --full            # every case: model, training step, each fused op
    python -m lenet_fast.bench --full --device cuda --json out.json   # also writes out.png
    python -m lenet_fast.bench --case "train" --batch 64 --no-compile
    python -m lenet_fast.bench --variant all     # the model's variants (relu-max, ...): inference
                                                 # and training step at batch 64 each
    python -m lenet_fast.bench --gpu-model       # predicted H200 time per CUDA kernel (no GPU needed)

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
share of the device's float32 FMA limit (peak_gflops: SMs x FP32 lanes x 2 x max SM clock on a GPU;
on the CPU what an FMA loop on the widest vectors gets on every thread at once, measured before the
cases run, since the clock cores run at is not cpuinfo's nominal MHz; where that cannot be measured,
threads x the CPU kind's FLOPs per cycle x clock, report.cpu_kind: Zen 4's AVX-512 runs on 256-bit
units; LENET_FAST_PEAK_GFLOPS overrides, LENET_FAST_PEAK_NOMINAL=1 asks for the formula). On CUDA each
whole-model case also counts, with the profiler, the kernels one call runs and the launches the
host makes for it (a CUDA graph replay is one launch); "lenet_fast graph" is the training step
captured as a CUDA graph, as python -m lenet_fast.train runs it.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import torch

import lenet_fast

# The single-module API, which tests, benchmarks/ and scripts import from lenet_fast.bench.
from .workloads import (CHECK_CASES, COMPILE, COMPILE_RO, DEFAULT_VARIANT, EAGER, FWD_FLOPS, GRAPH, MACS, OPS,
                        SHARED_TRAIN, TRAIN_FLOPS, VARIANTS, Case, cases, compile_modes, contender_names,
                        inference_case, op_case, op_flops, training_case, variant_cases, variant_kwargs)
from .report import FORMAT, Result, environment, peak_gflops, plot, read_json, table, write_json
from .timing import Fn, busy_processes, count_launches, interleaved, run_case, time_block


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lenet_fast.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
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
    p.add_argument("--gpu-model", action="store_true", help="print the predicted H200 time of every CUDA kernel "
                   "from the CPU harness's profile (no GPU needed; lenet_fast.bench.gpu_model), then exit")
    p.add_argument("--profile", metavar="JSON", help="--gpu-model's input (default: benchmarks/results/"
                   "cudasim-profile.json of the checkout)")
    p.add_argument("--replot", metavar="JSON", help="only draw the plot of an earlier --json file (to --plot, "
                   "or beside it as .png), then exit")
    return p


def _chosen_variants(p, args) -> list[str] | None:
    if not args.variant:
        return None
    variants = list(VARIANTS) if "all" in args.variant else list(dict.fromkeys(args.variant))
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"--variant: unknown {', '.join(unknown)} (known: {', '.join(VARIANTS)}, all)")
    return variants


def _replot(p, args) -> list[Result]:
    saved, env = read_json(args.replot)
    path = args.plot or os.path.splitext(args.replot)[0] + ".png"
    if not plot(saved, path, env):
        p.error(f"--replot: nothing to plot in {args.replot} (no whole-model cases, or no matplotlib)")
    print(f"wrote {path}")
    return saved


def _devices(p, args) -> list[torch.device]:
    if args.device == "all":
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    else:
        devices = [torch.device(args.device)]
    for d in devices:
        if d.type == "cuda" and not lenet_fast.cuda_available():
            p.error("--device cuda: no usable CUDA GPU, or this lenet_fast build has no CUDA kernels "
                    "(python -m lenet_fast.info says which)")
    return devices


def _chosen_cases(p, args, device, variants) -> list[Case]:
    chosen = [c for c in cases(device, args.full, args.check, variants)
              if not args.case or any(s in c.name for s in args.case)]
    if args.batch:
        chosen = [replace(c, batch=b) for c in {c.name: c for c in chosen}.values() for b in args.batch]
    if not chosen:
        p.error(f"no case matches --case {args.case} (cases: {sorted({c.name for c in cases(device, True)})})")
    return chosen


def _run_device(p, args, device, variants, env, results: list[Result]) -> None:
    """Times the chosen cases on one device, adding each case's results to `results` and printing
    its rows as it finishes."""
    modes = compile_modes(device, "none" if args.no_compile else args.compile_mode)
    round_ms = args.round_ms or (10.0 if device.type == "cuda" else 30.0)
    for case in _chosen_cases(p, args, device, variants):
        t0 = time.perf_counter()
        rs = run_case(case, device, modes, args.rounds, round_ms, args.max_case_s, only=args.contender)
        results += rs
        if args.json:  # after every case, so that a run cut short keeps what it measured
            write_json(args.json, env, vars(args), results)
        print(table(rs).split("\n", 1)[1] + f"   [{time.perf_counter() - t0:.0f} s]", flush=True)


def _summarize(args, env, results: list[Result]) -> None:
    print()
    print(table(results))
    if args.json:
        write_json(args.json, env, vars(args), results)
        print(f"wrote {args.json}")
    plot_path = args.plot or (os.path.splitext(args.json)[0] + ".png" if args.json else None)
    if plot_path and not args.no_plot and plot(results, plot_path, env):
        print(f"wrote {plot_path}")


def main(argv=None) -> list[Result]:
    p = _parser()
    args = p.parse_args(argv)
    variants = _chosen_variants(p, args)
    if args.replot:
        return _replot(p, args)
    if args.gpu_model:
        from . import gpu_model

        gpu_model.main(args.profile, args.json)
        return []
    devices = _devices(p, args)
    env = environment(devices)
    print(" ".join(f"{k}={v}" for k, v in env.items() if k != "lenet_fast_build"), flush=True)
    results = []
    for d in devices:
        _run_device(p, args, d, variants, env, results)
    _summarize(args, env, results)
    return results
