"""End-to-end speed of the main job against the tutorial's pipeline, as whole programs, with the
model's and the data loader's shares of the gain measured apart.

    python benchmarks/train_speed.py --json benchmarks/results/train-cpu-<machine>-<date>.json
    python benchmarks/train_speed.py --runs 2 -- --epochs 3      # arguments after -- go to every run
    python benchmarks/train_speed.py --pipelines lenet_fast tutorial

Runs `python -m lenet_fast.train` four ways, as separate processes one after another, and times
each from process start to exit (imports, data loading, training and the test evaluation):

    lenet_fast         lenet_fast.LeNet5, the fast on-device loader      (the default program)
    tutorial           the stock LeNet-5, torchvision's DataLoader       (--impl torch --loader torchvision)
    lenet_fast+tv      lenet_fast.LeNet5, torchvision's DataLoader       (--loader torchvision)
    stock+fast         the stock LeNet-5, the fast loader                (--impl torch)

The ratios: end to end (tutorial over lenet_fast); the model's own share, with either loader
(stock+fast over lenet_fast, tutorial over lenet_fast+tv); the loader's share, with either model.
The JSON is rewritten after every run, so a run stopped part way keeps what it measured.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

FORMAT = 2  # of the JSON written; benchmarks/report.py reads this format
PIPELINES = {
    "lenet_fast": [],
    "tutorial": ["--impl", "torch", "--loader", "torchvision"],
    "lenet_fast+tv": ["--loader", "torchvision"],
    "stock+fast": ["--impl", "torch"],
    "lenet_fast-eager": ["--no-cuda-graph"],
}
DESCRIPTION = {
    "lenet_fast": "lenet_fast model, fast loader (the default program)",
    "tutorial": "stock model, torchvision loader (the tutorial's pipeline)",
    "lenet_fast+tv": "lenet_fast model, torchvision loader",
    "stock+fast": "stock model, fast loader",
    "lenet_fast-eager": "lenet_fast model, fast loader, each step run eagerly (--no-cuda-graph: on a CPU the same program)",
}
DEFAULT_PIPELINES = ["lenet_fast", "tutorial", "lenet_fast+tv", "stock+fast"]
# (name, numerator pipeline, denominator pipeline): how many times faster the denominator is.
RATIOS = (
    ("end to end", "tutorial", "lenet_fast"),
    ("model, fast loader", "stock+fast", "lenet_fast"),
    ("model, torchvision loader", "tutorial", "lenet_fast+tv"),
    ("loader, lenet_fast model", "lenet_fast+tv", "lenet_fast"),
    ("loader, stock model", "tutorial", "stock+fast"),
    ("CUDA graph", "lenet_fast-eager", "lenet_fast"),
)


def run_once(extra, args):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "m.json")
        # -P passed on: run as this process was (-P: the installed package, not the source tree).
        py = [sys.executable] + (["-P"] if sys.flags.safe_path else [])
        cmd = [*py, "-m", "lenet_fast.train", "--no-progress", "--metrics-json", out, *extra, *args]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"train_speed: {' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
        print(proc.stdout, end="", flush=True)
        with open(out) as f:
            metrics = json.load(f)
    return {"command": " ".join(cmd[1:]), "wall_seconds": wall, "metrics": metrics}


def summarize(runs):
    """Median wall time per pipeline, and the ratios whose two pipelines both ran."""
    med = {}
    for name in PIPELINES:
        walls = [r["wall_seconds"] for r in runs if r["pipeline"] == name]
        if walls:
            med[name] = statistics.median(walls)
    ratios = {label: med[num] / med[den] for label, num, den in RATIOS if num in med and den in med}
    return med, ratios


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    passthrough = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1, help="runs of each pipeline, alternating")
    p.add_argument("--pipelines", nargs="+", choices=list(PIPELINES), default=DEFAULT_PIPELINES,
                   help="which pipelines, in this order (default: the first four; lenet_fast-eager "
                        "measures the CUDA graph's share on a GPU)")
    p.add_argument("--json", help="write the runs and the ratios here (rewritten after every run)")
    args = p.parse_args(own)
    env = None
    if args.json:
        import torch
        from lenet_fast.bench import environment

        env = environment([torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else []))
    runs = []
    for i in range(args.runs):
        for name in args.pipelines:
            r = run_once(PIPELINES[name], passthrough)
            r["pipeline"] = name
            runs.append(r)
            m = r["metrics"]
            print(f"== {name} run {i + 1}: {r['wall_seconds']:.1f} s wall, {m['train_seconds']:.1f} s training, "
                  f"test accuracy {100 * m['test_accuracy']:.2f}%", flush=True)
            med, ratios = summarize(runs)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({"format": FORMAT, "environment": env, "args": passthrough, "pipelines": args.pipelines,
                               "description": DESCRIPTION, "median_wall_seconds": med, "ratios": ratios,
                               "runs": runs}, f, indent=1)
    med, ratios = summarize(runs)
    print("median wall time: " + ", ".join(f"{n} {t:.1f} s" for n, t in med.items()))
    for label, r in ratios.items():
        print(f"  {label}: {r:.2f}x")
    return ratios


if __name__ == "__main__":
    main()
