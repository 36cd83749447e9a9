"""Where a CPU training step's time goes: the bench's step (forward, F.cross_entropy, backward,
torch's fused Adam) split into its phases, and lenet_fast's two ops split into their kernels.

    python benchmarks/step_breakdown.py                       # batch 64, torch's threads, ~1 min
    python benchmarks/step_breakdown.py --threads 1 --json benchmarks/results/step-breakdown.json
    python benchmarks/step_breakdown.py --kernels perf        # + each kernel's share (perf record)
    python benchmarks/step_breakdown.py --kernels callgrind   # + instructions per kernel (valgrind)

Phases are timed with perf_counter around each part of the step, many steps, medians. Inside the
two whole-network ops the profiler separates the C++ op from the Python and autograd around it.
Kernel shares come from an outside tool run on this same loop in a child process: `perf record`
(sampled time; where the VM allows it) or `valgrind --tool=callgrind` (instruction counts, exactly
repeatable on these noisy machines, but not time: a kernel with more instructions per FMA can still
be the faster one). Run it on a quiet machine; nothing else may run while it times.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHASES = ["zero_grad", "forward", "loss", "backward", "optimizer"]


def _step_parts(batch: int, variant: str):
    import torch
    import torch.nn.functional as F

    from lenet_fast import LeNet5

    torch.manual_seed(0)
    act, pool = variant.split("-")
    model = LeNet5(activation=act, pooling=pool)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    x = torch.randn(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    state = {}

    parts = {
        "zero_grad": lambda: opt.zero_grad(set_to_none=True),
        "forward": lambda: state.__setitem__("out", model(x)),
        "loss": lambda: state.__setitem__("loss", F.cross_entropy(state["out"], y)),
        "backward": lambda: state["loss"].backward(),
        "optimizer": opt.step,
    }
    return parts


def loop(batch: int, steps: int, variant: str) -> None:
    """The bare step, for an outside profiler (perf, callgrind) to watch."""
    parts = _step_parts(batch, variant)
    for _ in range(steps):
        for name in PHASES:
            parts[name]()


def time_phases(batch: int, steps: int, variant: str) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    parts = _step_parts(batch, variant)
    for _ in range(30):  # warm up: allocator, OpenMP threads, Adam's state
        for name in PHASES:
            parts[name]()
    samples = {name: [] for name in PHASES}
    totals = []
    for _ in range(steps):
        t0 = time.perf_counter()
        for name in PHASES:
            t = time.perf_counter()
            parts[name]()
            samples[name].append(time.perf_counter() - t)
        totals.append(time.perf_counter() - t0)
    us = {name: statistics.median(v) * 1e6 for name, v in samples.items()}
    # The C++ ops' own time, from the profiler (which adds its own overhead to everything else, so
    # only these two are read from it).
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(min(steps, 200)):
            for name in PHASES:
                parts[name]()
    ops = {e.key: e.cpu_time_total / e.count for e in prof.key_averages() if e.key.startswith("lenet_fast::")}
    return {"steps": steps, "step_us": statistics.median(totals) * 1e6, "phases_us": us, "ops_us": ops,
            "threads": torch.get_num_threads()}


def _child(batch: int, steps: int, variant: str, threads: int) -> list[str]:
    return [sys.executable, "-P", __file__, "--loop", "--batch", str(batch), "--steps", str(steps), "--variant", variant,
            "--threads", str(threads)]


def _family(symbol: str) -> str | None:
    """lenet_fast's kernel (family<lanes, ...>) a symbol belongs to, or None for anything else."""
    m = re.search(r"lenet_fast::cpu::\(anonymous namespace\)::(\w+)", symbol)
    return m.group(1) if m else None


def kernels_perf(batch: int, variant: str, threads: int, seconds: float = 6.0) -> dict:
    if not shutil.which("perf"):
        return {"skipped": "perf is not installed"}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        steps = max(50, int(seconds / 0.002))
        r = subprocess.run(["perf", "record", "-q", "-F", "4000", "-o", str(data), "--", *_child(batch, steps, variant, threads)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return {"skipped": f"perf record failed here: {r.stderr.strip()[-300:]}"}
        rep = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "symbol", "--stdio", "-q"],
                             capture_output=True, text=True)
    shares: dict[str, float] = {}
    other = 0.0
    for line in rep.stdout.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[.\]\s+(.*)", line)
        if not m:
            m2 = re.match(r"\s*([\d.]+)%", line)
            other += float(m2.group(1)) if m2 else 0.0
            continue
        pct, sym = float(m.group(1)), m.group(2)
        fam = _family(sym)
        if fam:
            shares[fam] = shares.get(fam, 0.0) + pct
        else:
            other += pct
    return {"tool": "perf record (sampled time, % of the process: startup included)", "percent": shares,
            "percent_elsewhere": other}


def kernels_callgrind(batch: int, variant: str, threads: int, steps: int = 20) -> dict:
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        return {"skipped": "valgrind is not installed"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        r = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
                            *_child(batch, steps, variant, threads)], capture_output=True, text=True)
        if not out.exists():  # (its exit status can be non-zero from teardown alone)
            return {"skipped": f"valgrind failed: {r.stderr.strip()[-300:]}"}
        ann = subprocess.run(["callgrind_annotate", "--threshold=100", str(out)], capture_output=True, text=True).stdout
    per: dict[str, int] = {}
    total = None
    for line in ann.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)", line) or re.match(r"\s*([\d,]+)\s+(.*)", line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in m.group(2):
            total = n
            continue
        fam = _family(m.group(2))
        if fam:
            per[fam] = per.get(fam, 0) + n
    return {"tool": f"valgrind --tool=callgrind, {steps} steps and the setup; valgrind's CPU has no AVX-512, so these "
                    "are the avx2 kernels",
            "instructions_per_step": {k: v // steps for k, v in per.items()}, "program_total": total}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--variant", default="tanh-avg")
    p.add_argument("--kernels", choices=["none", "perf", "callgrind", "both"], default="none")
    p.add_argument("--json", type=Path)
    p.add_argument("--loop", action="store_true", help=argparse.SUPPRESS)  # the child an outside tool watches
    a = p.parse_args(argv)
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    if a.loop:
        loop(a.batch, a.steps, a.variant)
        return 0
    from lenet_fast import _C
    from lenet_fast.bench.report import environment

    res = {"env": environment([torch.device("cpu")]), "batch": a.batch, "variant": a.variant, "cpu_isa": _C.cpu_isa(),
           "optimizer": "torch.optim.Adam(fused=True)", **time_phases(a.batch, a.steps, a.variant)}
    threads = res["threads"]
    if a.kernels in ("perf", "both"):
        res["kernels_perf"] = kernels_perf(a.batch, a.variant, threads)
    if a.kernels in ("callgrind", "both"):
        res["kernels_callgrind"] = kernels_callgrind(a.batch, a.variant, threads)
    print(markdown(res))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


def markdown(res: dict) -> str:
    env = res["env"]
    lines = [f"Training step, batch {res['batch']}, {res['variant']}, {res['threads']} thread(s), CPU kernels "
             f"`{res['cpu_isa']}`, {res['optimizer']}; {env['cpu_model']} ({env.get('cpu_kind', '?')}), torch {env['torch']}, "
             f"{env['date']}. Medians over {res['steps']} steps:", "",
             "| phase | µs | share of the step |", "| --- | ---: | ---: |"]
    step = res["step_us"]
    for name in PHASES:
        v = res["phases_us"][name]
        lines.append(f"| {name} | {v:,.0f} | {100 * v / step:.0f}% |")
    lines.append(f"| **step** (median of whole steps) | **{step:,.0f}** | |")
    ops = res["ops_us"]
    f, b = ops.get("lenet_fast::lenet5_forward_train"), ops.get("lenet_fast::lenet5_backward")
    if f and b:
        rest = res["phases_us"]["forward"] + res["phases_us"]["backward"] - f - b
        rest_text = f"{rest:,.0f} µs" if rest > 0 else "less than the profiler's own overhead"
        lines += ["", f"Of these, lenet_fast's two C++ ops: forward {f:,.0f} µs, backward {b:,.0f} µs (profiler, which "
                  f"adds its own overhead to each op); the rest of the forward and backward phases ({rest_text}) is "
                  "Python, autograd and the loss's backward."]
    kp = res.get("kernels_perf")
    if kp and "percent" in kp:
        tot = sum(kp["percent"].values())
        lines += ["", f"Inside the ops, each kernel's share of the time spent in lenet_fast's kernels ({kp['tool']}):", "",
                  "| kernel | share |", "| --- | ---: |"]
        for k, v in sorted(kp["percent"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| `{k}` | {100 * v / tot:.0f}% |")
    elif kp:
        lines += ["", f"Kernel shares: {kp['skipped']}."]
    kc = res.get("kernels_callgrind")
    if kc and "instructions_per_step" in kc:
        lines += ["", f"Instructions per step ({kc['tool']}):", "", "| kernel | instructions |", "| --- | ---: |"]
        for k, v in sorted(kc["instructions_per_step"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| `{k}` | {v:,} |")
    elif kc:
        lines += ["", f"Instruction counts: {kc['skipped']}."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
