"""The predicted H200 times beside measured ones: the whole-model calls the model predicts
(benchmarks/results/gpu-model-h200.json, from python -m lenet_fast.bench --gpu-model) timed on
this GPU with CUDA events, median of the rounds, written as JSON and as a table, so that the
model's constants can be calibrated against the hardware.

    python benchmarks/gpu_model_check.py --json OUT/model-vs-measured.json [--table SUMMARY]
    python benchmarks/gpu_model_check.py --device cpu --small ...     # the GPU check's dry run

Calls: inference (lenet5_forward) at batch 64, 1024 and 65536; the fused training forward and
backward (lenet5_forward_train + lenet5_backward, as LeNet5's autograd runs them) at batch 64.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "benchmarks" / "results" / "gpu-model-h200.json"


def _timer(device):
    if device.type == "cuda":
        def run(fn, iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) * 1e3 / iters  # µs
    else:
        def run(fn, iters):
            t = time.perf_counter()
            for _ in range(iters):
                fn()
            return (time.perf_counter() - t) * 1e6 / iters
    return run


def measure(device: torch.device, small: bool, rounds: int) -> dict:
    import lenet_fast

    ops = torch.ops.lenet_fast
    torch.manual_seed(0)
    params = [p.detach().to(device) for p in lenet_fast.LeNet5().parameters()]
    timer = _timer(device)
    calls = {}
    for batch in (64, 1024, 65536):
        x = torch.randn(2 if small else batch, 1, 28, 28, device=device)
        calls[f"inference_{batch}"] = lambda x=x: ops.lenet5_forward(x, *params, 2)
    x = torch.randn(2 if small else 64, 1, 28, 28, device=device)
    logits, saved = ops.lenet5_forward_train(x, *params, 2)
    g = torch.ones_like(logits)

    def forward_backward():
        _, s = ops.lenet5_forward_train(x, *params, 2)
        ops.lenet5_backward(g, x, *params[0::2], s, 2, [False] + [True] * 10)
    calls["forward_backward_64"] = forward_backward
    out = {}
    for name, fn in calls.items():
        fn()  # warm up
        if device.type == "cuda":
            torch.cuda.synchronize()
        one = timer(fn, 1)
        iters = max(1, min(200, int(20_000 / max(one, 1.0))))  # about 20 ms a round
        out[name] = round(statistics.median(timer(fn, iters) for _ in range(rounds)), 2)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="batch 2 everywhere (a dry run's proof that it runs)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", required=True)
    ap.add_argument("--table", help="append the table to this file too (the GPU check's summary)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    model = json.loads(MODEL.read_text())
    measured = measure(device, args.small, args.rounds)
    rows = []
    for name, us in measured.items():
        predicted = model["workloads"].get(name, {}).get("predicted_us")
        rows.append({"call": name, "predicted_us": predicted, "measured_us": us,
                     "measured_over_predicted": round(us / predicted, 3) if predicted else None})
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (dry run: not comparable)"
    result = {"device": name, "torch": torch.__version__, "small": args.small,
              "model_assumptions": model["assumptions"], "calls": rows}
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"model vs measured ({name}; predicted from the CPU harness's profile, measured here, µs):"]
    lines += [f"  {r['call']:22s} predicted {r['predicted_us']:9.1f}   measured {r['measured_us']:9.1f}   "
              f"ratio {r['measured_over_predicted']}" for r in rows]
    print("\n".join(lines))
    if args.table:
        with open(args.table, "a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
