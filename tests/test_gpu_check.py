"""benchmarks/gpu_check.sh and its smoke script, proven on a CPU machine: a dry run
(LENET_FAST_CHECK_DRY_RUN=1, the CPU standing in for the GPU) must run every step in the issue's
order, write exactly the files the device tool brings back, and say SKIP where a tool is missing."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lenet_fast
from datasets import write_dataset

ROOT = Path(__file__).resolve().parents[1]
FILES = {"summary.txt", "build.log", "tests.log", "sanitizer.log", "bench.log", "bench-check.json",
         "model-vs-measured.json", "bench-full.json", "train.json"}


def test_gpu_check_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_check.sh")]).returncode == 0


@pytest.mark.slow  # the whole script on tiny sizes: about a minute on a 2-core CPU
def test_gpu_check_dry_run(tmp_path):
    data = write_dataset(tmp_path / "data", 300, 100)
    out = tmp_path / "out"
    env = dict(os.environ, LENET_FAST_CHECK_DRY_RUN="1", LENET_FAST_DATA_DIR=str(data),
               PYTHON=sys.executable, PYTHONPATH=str(Path(lenet_fast.__file__).resolve().parents[1]),
               LENET_FAST_CHECK_BUDGET_S="400", XDG_CACHE_HOME=str(tmp_path / "cache"))
    if shutil.which("compute-sanitizer"):  # keep the 'tool missing' path under test
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                      if not (Path(p) / "compute-sanitizer").exists())
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(out)], env=env,
                       capture_output=True, text=True, timeout=600)
    summary = (out / "summary.txt").read_text()
    assert r.returncode == 0, summary + r.stderr[-2000:]
    assert {p.name for p in out.iterdir()} == FILES  # nothing else: the device tool brings back 9 files
    steps = [line for line in summary.splitlines() if line.split(" ", 1)[0] in ("PASS", "FAIL", "SKIP", "TIME", "LOAD")]
    want = ["PASS  build", "LOAD  lenet_fast " + lenet_fast.build_info()["version"] + " loads", "PASS  smoke",
            "PASS  bench --check", "PASS  model vs measured", "PASS  CUDA tests", "SKIP  compute-sanitizer memcheck",
            "SKIP  compute-sanitizer racecheck", "PASS  training comparison", "PASS  bench --full"]
    assert len(steps) == len(want) and all(s.startswith(w) for s, w in zip(steps, want)), summary
    assert "SKIP  compute-sanitizer memcheck: compute-sanitizer not found" in summary
    assert "smoke: 29 of 29 checks passed" in summary  # the table is in the summary, row by row
    check = json.loads((out / "bench-check.json").read_text())
    assert {(r["case"], r["contender"]) for r in check["results"]} >= {("inference", "lenet_fast"), ("train step", "stock eager")}
    model = json.loads((out / "model-vs-measured.json").read_text())
    assert [c["call"] for c in model["calls"]] == ["inference_64", "inference_1024", "inference_65536", "forward_backward_64"]
    assert all(c["predicted_us"] > 0 and c["measured_us"] > 0 for c in model["calls"])
    assert "model vs measured" in summary
    train = json.loads((out / "train.json").read_text())
    assert set(train["median_wall_seconds"]) == {"lenet_fast", "tutorial", "lenet_fast+tv", "stock+fast", "lenet_fast-eager"}
    assert json.loads((out / "bench-full.json").read_text())["results"]


def test_smoke_reports_a_failing_check(monkeypatch, capsys, tmp_path):
    """A kernel that disagrees with the CPU, or raises, is a FAIL row naming it; the run goes on."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_smoke", ROOT / "benchmarks" / "gpu_smoke.py")
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    import torch

    def broken(device):
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore")

    # on the CPU both sides run on one device: the check itself makes its two calls differ
    table = tmp_path / "t.txt"
    calls = {"n": 0}

    def fake_wrong(device):
        calls["n"] += 1
        return [torch.ones(3) * calls["n"]]

    monkeypatch.setattr(smoke, "checks", lambda triton: [("good", lambda d: [torch.ones(3)]), ("wrong", fake_wrong),
                                                         ("broken", broken)])
    assert smoke.main(["--device", "cpu", "--table", str(table)]) == 1
    rows = table.read_text().splitlines()
    assert any(r.startswith("good") and r.split()[3] == "PASS" for r in rows)
    assert any(r.startswith("wrong") and "FAIL" in r for r in rows)
    assert any(r.startswith("broken") and "FAIL  RuntimeError: CUDA error: an illegal memory access" in r for r in rows)
    assert rows[-1] == "smoke: 1 of 3 checks passed"
