"""Benchmarks of lenet_fast against stock PyTorch, contenders interleaved in one run.

    python -m lenet_fast.bench                 # quick CPU set: inference at 1/64/1024, training step at 64
    python -m lenet_fast.bench --json out.json
    python -m lenet_fast.bench --device cuda  # adds fc1/fc2/fc3 fwd and fwd+bwd: native, Triton, stock

Each case times its contenders in alternating rounds (A B A B ...), each round a block of
iterations sized to about `--round-ms`, and reports the median per-iteration time over rounds,
images/s, achieved GFLOP/s and the ratio to stock eager. Weights are identical across contenders.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

import lenet_fast
from lenet_fast import LeNet5, TorchLeNet5

# FLOPs per image (multiply-adds count 2): conv1 235,200 + conv2 480,000 + fc1 96,000 + fc2 20,160
# + fc3 1,680, plus bias/tanh/pool ~ 0.83 MFLOP forward; backward ~ 2x the multiply-adds.
FWD_FLOPS = 2 * (6 * 28 * 28 * 25 + 16 * 10 * 10 * 150 + 400 * 120 + 120 * 84 + 84 * 10)
TRAIN_FLOPS = 3 * FWD_FLOPS - 2 * 6 * 28 * 28 * 25  # no input gradient for conv1


@dataclass
class Result:
    case: str
    contender: str
    batch: int
    median_s: float
    images_per_s: float
    gflops: float
    ratio_vs_stock: float = float("nan")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_block(fn, iters, device):
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


def interleaved(contenders: dict, device, rounds=15, round_ms=30.0, warmup=3):
    """{name: fn} -> {name: [seconds per iteration, one per round]}, rounds interleaved."""
    iters = {}
    for name, fn in contenders.items():
        for _ in range(warmup):
            fn()
        _sync(device)
        one = max(_time_block(fn, 1, device), 1e-7)
        iters[name] = max(1, int(round_ms / 1e3 / one))
    samples = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            samples[name].append(_time_block(fn, iters[name], device))
    return samples


def models(device, seed=0):
    torch.manual_seed(seed)
    fast = LeNet5().to(device)
    stock = TorchLeNet5().to(device)
    stock.load_state_dict(fast.state_dict())
    return fast, stock


def inference_case(batch, device, **kw):
    fast, stock = models(device)
    x = torch.randn(batch, 1, 28, 28, device=device)

    def run(model):
        def f():
            with torch.no_grad():
                model(x)
        return f

    return {"lenet_fast": run(fast), "stock eager": run(stock)}, FWD_FLOPS


def training_case(batch, device, **kw):
    fast, stock = models(device)
    x = torch.randn(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    def run(model):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def f():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
        return f

    return {"lenet_fast": run(fast), "stock eager": run(stock)}, TRAIN_FLOPS


# (in_features, out_features, tanh) of fc1, fc2, fc3
FC_LAYERS = {"fc1": (400, 120, True), "fc2": (120, 84, True), "fc3": (84, 10, False)}


def fc_case(layer, backward):
    """One fully connected layer, forward (or forward + backward): native kernels, Triton, stock."""
    k, n, act = FC_LAYERS[layer]

    def build(batch, device):
        from lenet_fast import ops, triton_linear

        x = torch.randn(batch, k, device=device, requires_grad=backward)
        w = (torch.randn(n, k, device=device) / k**0.5).requires_grad_(backward)
        b = torch.zeros(n, device=device, requires_grad=backward)
        g = torch.randn(batch, n, device=device)
        fns = {
            "lenet_fast": (ops.linear_tanh if act else ops.linear),
            "triton": lambda *a: triton_linear.triton_linear(*a, act),
            "stock eager": (lambda *a: torch.tanh(F.linear(*a))) if act else F.linear,
        }

        def run(fn):
            def f():
                if backward:
                    torch.autograd.grad(fn(x, w, b), (x, w, b), g)
                else:
                    with torch.no_grad():
                        fn(x, w, b)
            return f

        flops = 2 * k * n * (3 if backward else 1)
        return {name: run(fn) for name, fn in fns.items()}, flops

    return build


def run_cases(cases, device, rounds, round_ms):
    results = []
    for name, builder, batch in cases:
        contenders, flops = builder(batch, device)
        samples = interleaved(contenders, device, rounds=rounds, round_ms=round_ms)
        med = {k: statistics.median(v) for k, v in samples.items()}
        for k, t in med.items():
            results.append(Result(name, k, batch, t, batch / t, batch * flops / t / 1e9, med["stock eager"] / t))
    return results


def environment(device):
    info = lenet_fast.build_info()
    env = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "cpu_cores": __import__("os").cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "lenet_fast": info["version"],
        "cpu_isa": info["cpu_isa"],
        "python": platform.python_version(),
    }
    try:
        model = [l for l in open("/proc/cpuinfo") if l.startswith("model name")][0].split(":")[1].strip()
        env["cpu_model"] = model
    except (OSError, IndexError):
        pass
    return env


def table(results):
    lines = [f"{'case':<22}{'contender':<14}{'batch':>7}{'median':>12}{'images/s':>12}{'GFLOP/s':>9}{'vs stock':>10}"]
    for r in results:
        t = f"{r.median_s * 1e6:.1f} us" if r.median_s < 1e-3 else f"{r.median_s * 1e3:.2f} ms"
        lines.append(f"{r.case:<22}{r.contender:<14}{r.batch:>7}{t:>12}{r.images_per_s:>12,.0f}{r.gflops:>9.1f}{r.ratio_vs_stock:>9.2f}x")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--round-ms", type=float, default=30.0)
    p.add_argument("--json", help="write results and environment to this path")
    p.add_argument("--fc", action="store_true", help="add the per-layer fc cases (always on CUDA)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cases = [
        ("inference", inference_case, 1),
        ("inference", inference_case, 64),
        ("inference", inference_case, 1024),
        ("train step (Adam)", training_case, 64),
    ]
    if device.type == "cuda" or args.fc:
        # Triton runs on the CPU only in its interpreter, which is not worth timing.
        for layer in FC_LAYERS:
            for backward in (False, True):
                for batch in (64, 1024, 65536):
                    cases.append((f"{layer} {'fwd+bwd' if backward else 'fwd'}", fc_case(layer, backward), batch))
    env = environment(device)
    print(" ".join(f"{k}={v}" for k, v in env.items()))
    results = run_cases(cases, device, args.rounds, args.round_ms)
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": [asdict(r) for r in results]}, f, indent=1)


if __name__ == "__main__":
    main()
