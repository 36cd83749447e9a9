"""End-to-end speed of the main job against the tutorial's pipeline, as whole programs.

    python benchmarks/train_speed.py --json benchmarks/results/train-cpu-<machine>-<date>.json
    python benchmarks/train_speed.py --runs 2 -- --epochs 3      # arguments after -- go to both

Runs `python -m lenet_fast.train` (the default: lenet_fast, fast loader) and the same program with
`--impl torch --loader torchvision` (the tutorial's model and data pipeline) as separate processes,
alternating, and times each from process start to exit (imports, data loading, training and the
test evaluation included). Reports each run's wall time, accuracy and the program's own metrics,
and the ratio of the median wall times.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

PIPELINES = {"lenet_fast": [], "tutorial": ["--impl", "torch", "--loader", "torchvision"]}


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


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    passthrough = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1, help="runs of each pipeline, alternating")
    p.add_argument("--json", help="write the runs and the ratio here")
    args = p.parse_args(own)
    runs = []
    for i in range(args.runs):
        for name, extra in PIPELINES.items():
            r = run_once(extra, passthrough)
            r["pipeline"] = name
            runs.append(r)
            print(f"== {name} run {i + 1}: {r['wall_seconds']:.1f} s wall, test accuracy "
                  f"{100 * r['metrics']['test_accuracy']:.2f}%", flush=True)
    med = {n: statistics.median(r["wall_seconds"] for r in runs if r["pipeline"] == n) for n in PIPELINES}
    ratio = med["tutorial"] / med["lenet_fast"]
    print(f"median wall time: lenet_fast {med['lenet_fast']:.1f} s, tutorial pipeline {med['tutorial']:.1f} s "
          f"-> {ratio:.2f}x faster end to end")
    if args.json:
        import torch
        from lenet_fast.bench import environment

        env = environment([torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else []))
        with open(args.json, "w") as f:
            json.dump({"environment": env, "args": passthrough, "median_wall_seconds": med, "speedup": ratio,
                       "runs": runs}, f, indent=1)
    return ratio


if __name__ == "__main__":
    main()
