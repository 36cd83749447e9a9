"""The benchmark suite's machinery: FLOP counts, cases, contenders computing the same thing, the
JSON and plot, the README tables generated from the committed results, and the GPU check's
pieces that can run on a CPU. (Timings themselves are never asserted.)"""
import dataclasses
import importlib.util
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lenet_fast

from lenet_fast import bench

ROOT = Path(__file__).resolve().parents[1]


def _load(path):
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_flop_counts():
    # The issue's figures: ~0.83 MFLOP forward, ~2.26 MFLOP forward + backward per image.
    assert round(bench.FWD_FLOPS / 1e6, 2) == 0.83
    assert round(bench.TRAIN_FLOPS / 1e6, 2) == 2.26
    # The fused ops partition the model: their forwards add up to the model's.
    assert sum(bench.op_flops(op, False) for op in bench.OPS) == bench.FWD_FLOPS
    assert bench.op_flops("conv1+tanh+pool", True) == 2 * bench.op_flops("conv1+tanh+pool", False)  # no input grad
    assert bench.op_flops("fc1 linear+tanh", True) == 3 * bench.op_flops("fc1 linear+tanh", False)


def test_cases_cover_the_issue():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    full = {(c.name, c.batch) for c in bench.cases(cpu, True)}
    assert {b for n, b in full if n == "inference"} == {1, 64, 1024, 16384}
    assert {b for n, b in full if n == "train step"} == {64, 1024}
    for op in bench.OPS:
        assert (f"{op} fwd", 1024) in full and (f"{op} fwd+bwd", 1024) in full
    assert (("inference", 65536) in {(c.name, c.batch) for c in bench.cases(cuda, True)})
    assert {(c.name, c.batch) for c in bench.cases(cpu, False)} < full
    assert [n for n, _ in bench.compile_modes(cpu)] == [bench.COMPILE]
    assert [n for n, _ in bench.compile_modes(cuda)] == [bench.COMPILE, bench.COMPILE_RO]


def _outputs(out):
    return [t.detach() for t in (out if isinstance(out, tuple) else (out,))]


@pytest.mark.parametrize("case", [c for c in bench.cases(torch.device("cpu"), True) if c.kind == "op"], ids=lambda c: c.name)
def test_op_contenders_agree(case):
    """Every contender of a per-op case computes what stock eager computes (outputs or gradients)."""
    fns = case.build(5, torch.device("cpu"), ())
    assert list(fns) == bench.contender_names(case, torch.device("cpu"), ())
    want = _outputs(fns[bench.EAGER]())
    for name, fn in fns.items():
        got = _outputs(fn())
        assert len(got) == len(want)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4, msg=lambda m: f"{case.name} {name}: {m}")


@pytest.mark.slow  # torch.compile of the stock model: 20-70 s on a 2-core CPU with a cold cache
def test_model_contenders_agree_and_compile():
    """Inference contenders, torch.compile included, give the same logits."""
    device = torch.device("cpu")
    case = next(c for c in bench.cases(device, False) if c.name == "inference")
    fns = case.build(3, device, bench.compile_modes(device))
    assert list(fns) == bench.contender_names(case, device, bench.compile_modes(device))
    want = fns[bench.EAGER]()
    assert want.shape == (3, 10) and want.isfinite().all()
    for name, fn in fns.items():
        torch.testing.assert_close(fn(), want, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")


_TRAIN_CASES = {c.name: c for c in bench.cases(torch.device("cpu"), True) + bench.variant_cases(bench.VARIANTS)
                if c.kind == "train"}


@pytest.mark.parametrize("case", list(_TRAIN_CASES.values()), ids=lambda c: c.name)
def test_training_contenders_agree(case):
    """From the same weights on the same batch, every contender's training step gives stock eager's
    loss, step after step: the same forward and loss, and updates that move the weights alike."""
    device = torch.device("cpu")
    fns = case.build(3, device, ())
    assert list(fns) == bench.contender_names(case, device, ())
    losses = {name: torch.stack([fn().detach() for _ in range(3)]) for name, fn in fns.items()}
    want = losses[bench.EAGER]
    assert want.isfinite().all() and want[-1] < want[0], want  # the steps did train
    for name, got in losses.items():
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=lambda m: f"{case.name} {name}: {m}")


def test_main_writes_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "b.json"
    results = bench.main(["--device", "cpu", "--case", "inference", "--batch", "2", "--rounds", "2",
                          "--round-ms", "1", "--no-compile", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data["format"] == bench.FORMAT
    env = data["environment"]
    for key in ("date", "cpu_model", "cpu_cores", "torch", "torch_cuda", "lenet_fast", "python", "lenet_fast_build"):
        assert key in env
    rows = {r["contender"]: r for r in data["results"]}
    assert set(rows) == {"lenet_fast", bench.EAGER} and len(results) == 2
    eager, ours = rows[bench.EAGER], rows["lenet_fast"]
    assert eager["vs_eager"] == 1.0
    assert ours["vs_eager"] == pytest.approx(eager["median_s"] / ours["median_s"])
    assert ours["images_per_s"] == pytest.approx(2 / ours["median_s"])
    assert ours["gflops"] == pytest.approx(2 * bench.FWD_FLOPS / ours["median_s"] / 1e9)
    assert len(ours["samples_s"]) >= 2 and ours["median_s"] > 0
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "lenet_fast" in capsys.readouterr().out


def test_bench_rejects_cuda_without_kernels():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit):
        bench.main(["--device", "cuda"])


def test_readme_tables_match_results():
    """README's benchmark sections are exactly what benchmarks/report.py makes of the results."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    report = _load("benchmarks/report.py")
    if report.latest("gpu") is None:
        assert "GPU figures have not been measured yet" in (ROOT / "README.md").read_text()


def test_variant_cases(tmp_path, capsys):
    """--variant: the whole-model cases of each named variant, its stock twin as the contender."""
    out = tmp_path / "v.json"
    results = bench.main(["--device", "cpu", "--variant", "relu-max", "--variant", "sigmoid-avg", "--rounds", "2",
                          "--round-ms", "1", "--no-compile", "--no-plot", "--json", str(out)])
    assert [(r.case, r.contender) for r in results] == [
        (f"{case} [{v}]", who) for v in ("relu-max", "sigmoid-avg") for case in ("inference", "train step")
        for who in ("lenet_fast", bench.EAGER)]
    _check_reported(results, capsys.readouterr().out)
    saved = json.loads(out.read_text())["results"]
    assert json.dumps(saved) == json.dumps([dataclasses.asdict(r) for r in results])  # (NaN != NaN)
    assert len(bench.cases(torch.device("cpu"), variants=list(bench.VARIANTS))) == 16
    fns = bench.inference_case(3, torch.device("cpu"), (), variant="leaky_relu-max")
    torch.testing.assert_close(fns["lenet_fast"](), fns[bench.EAGER](), rtol=1e-4, atol=1e-5)
    with pytest.raises(SystemExit):
        bench.main(["--variant", "gelu-avg"])


def _check_reported(results, printed):
    """Each result's figures follow from its samples as the docstring of lenet_fast.bench says, and
    the printed table has a row for it (once as the case finishes, once in the summary)."""
    peak, _ = bench.peak_gflops(torch.device("cpu"))
    flops = {"inference": bench.FWD_FLOPS, "train step": bench.TRAIN_FLOPS}
    eager = {r.case: r for r in results if r.contender == bench.EAGER}
    for r in results:
        assert r.device == "cpu" and r.batch == 64 and r.iters_per_round >= 1 and len(r.samples_s) >= 2
        assert r.median_s > 0 and r.median_s == statistics.median(r.samples_s)
        assert r.images_per_s == pytest.approx(r.batch / r.median_s)
        assert r.gflops == pytest.approx(r.batch * flops[r.case.split(" [")[0]] / r.median_s / 1e9)
        assert r.peak_share == pytest.approx(r.gflops / peak, nan_ok=True)
        assert r.vs_eager == pytest.approx(eager[r.case].median_s / r.median_s)
        assert math.isnan(r.vs_compile)  # --no-compile: no compiled contender to compare with
        assert r.launches is None and r.kernels is None  # counted on CUDA only
        row = f"cpu    {r.case:<26}{r.batch:>6}  {r.contender:<32}"
        assert printed.count(row) == 2, row


def test_report_renders_a_result(tmp_path, monkeypatch):
    report = _load("benchmarks/report.py")
    res = lambda contender, t, ve: {"device": "cuda", "case": "inference", "batch": 64, "contender": contender,
                                    "median_s": t, "images_per_s": 64 / t, "vs_eager": ve, "vs_compile": ve / 2}
    data = {"format": 2, "args": {"full": True, "device": "cuda"},
            "environment": {"date": "2026-01-01 00:00:00 UTC", "gpu": "Test GPU", "gpu_capability": "sm_90",
                            "nvidia_driver": "1.0", "cuda_runtime": "13.0", "torch": "t", "triton": "x",
                            "lenet_fast": "v", "python": "3"},
            "results": [res("lenet_fast", 1e-4, 4.0), res(bench.EAGER, 4e-4, 1.0)]}
    (tmp_path / "gpu-test.json").write_text(json.dumps(data))
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setattr(report, "ROOT", tmp_path)
    text = report.render("gpu")
    assert "Test GPU" in text and "| inference | 64 | 100.0 µs (640,000/s) | 400.0 µs (160,000/s) | **4.00×** | 2.00× |" in text



def test_sanitize_workload_on_cpu():
    """The compute-sanitizer workload runs and checks its results (here on the CPU kernels)."""
    _load("benchmarks/sanitize_run.py").run(torch.device("cpu"), triton=False)


def test_train_speed_ratios_and_report(tmp_path, monkeypatch):
    """train_speed's ratios (each pipeline's median over another's) and the README table made of them."""
    ts = _load("benchmarks/train_speed.py")
    walls = {"lenet_fast": [10.0, 12.0], "tutorial": [100.0], "lenet_fast+tv": [40.0], "stock+fast": [30.0]}
    metrics = {"train_seconds": 5.0, "images_per_second": 12000.0, "test_accuracy": 0.8912}
    runs = [{"pipeline": n, "wall_seconds": w, "metrics": metrics} for n, ws in walls.items() for w in ws]
    med, ratios = ts.summarize(runs)
    assert med["lenet_fast"] == 11.0
    assert ratios == pytest.approx({"end to end": 100 / 11, "model, fast loader": 30 / 11, "model, torchvision loader": 2.5,
                                    "loader, lenet_fast model": 40 / 11, "loader, stock model": 100 / 30})
    assert set(ts.summarize(runs[:2])[1]) == set()  # a ratio needs both of its pipelines
    report = _load("benchmarks/report.py")
    env = {"date": "2026-01-01 00:00:00 UTC", "cpu_model": "Test CPU", "cpu_cores": 2, "torch_threads": 2,
           "torch": "t", "lenet_fast": "v", "python": "3"}
    data = {"format": ts.FORMAT, "environment": env, "args": ["--epochs", "10"], "pipelines": list(ts.PIPELINES),
            "description": ts.DESCRIPTION, "median_wall_seconds": med, "ratios": ratios, "runs": runs}
    (tmp_path / "train-cpu-test.json").write_text(json.dumps(data))
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setattr(report, "ROOT", tmp_path)
    text = report.render("train-cpu")
    assert "| lenet_fast model, fast loader (the default program) | 11.0 s | 5.0 s | 12,000 | 89.12% |" in text
    assert "end to end **9.09×**" in text and "Test CPU" in text
    assert "has not run on a GPU yet" in report.render("train-gpu")


def test_shared_machine_case_starts_and_stops_its_competitors():
    """The CPU's "machine shared" training case times the step beside a busy process per core."""
    import os

    shared = [c for c in bench.cases(torch.device("cpu"), full=True) if c.name == bench.SHARED_TRAIN]
    assert [c.batch for c in shared] == [64, 1024] and all(c.contend == (os.cpu_count() or 1) for c in shared)
    assert not [c for c in bench.cases(torch.device("cuda"), full=True) if c.name == bench.SHARED_TRAIN]
    with bench.busy_processes(2) as busy:
        assert len(busy.procs) == 2 and all(p.is_alive() for p in busy.procs)
    assert not any(p.is_alive() for p in busy.procs)


# The machines behind "2 cores": each kind's float32 FMA width (FLOP per cycle per core: FMA units x
# lanes x 2). Zen 4 runs AVX-512 on 256-bit units, so its AVX-512 peak is Zen 3's, not Zen 5's.
CPU_KINDS = [
    # (vendor, family, model, flags, kind named, FLOP/cycle)
    ("AuthenticAMD", 25, 1, {"avx2", "fma"}, "AMD Zen 3", 32),
    ("AuthenticAMD", 25, 17, {"avx2", "fma", "avx512f"}, "AMD Zen 4", 32),
    ("AuthenticAMD", 26, 2, {"avx2", "fma", "avx512f"}, "AMD Zen 5", 64),
    ("GenuineIntel", 6, 143, {"avx2", "fma", "avx512f", "amx_tile"}, "Intel Xeon", 64),
    ("GenuineIntel", 6, 85, {"avx2", "fma"}, "Intel", 32),
    ("SomeVendor", 1, 1, {"sse2"}, "unknown", 8),
]


@pytest.mark.parametrize("vendor, family, model, flags, kind, per_cycle", CPU_KINDS)
def test_cpu_peak_uses_the_machine_kinds_real_fma_width(monkeypatch, vendor, family, model, flags, kind, per_cycle):
    from lenet_fast.bench import report

    monkeypatch.delenv("LENET_FAST_PEAK_GFLOPS", raising=False)
    monkeypatch.setattr(report, "_cpu_flags", lambda: set(flags))
    monkeypatch.setattr(report, "_cpu_mhz", lambda: 1000.0)
    monkeypatch.setattr(report, "_cpu_id", lambda: (vendor, family, model), raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(report, "measured_cpu_peak", lambda threads: None)  # the nominal formula
    peak, how = report.peak_gflops(torch.device("cpu"))
    assert peak == pytest.approx(2 * per_cycle * 1000.0 / 1e3), how
    assert f"{per_cycle} FLOP/cycle" in how and kind in how, how


def test_cpu_peak_is_measured_where_the_build_can(monkeypatch):
    """The CPU's peak is what an FMA loop on every thread gets (the real clock, not cpuinfo's
    nominal MHz), named as measured; the kind's FLOP/cycle turns it into an effective clock."""
    from lenet_fast.bench import report

    monkeypatch.delenv("LENET_FAST_PEAK_GFLOPS", raising=False)
    one = lenet_fast._C.cpu_fma_peak(1, 0.05)
    assert one > 1.0  # GFLOP/s: any FMA-capable x86-64 core does far more
    peak, how = report.peak_gflops(torch.device("cpu"))
    assert peak == report.measured_cpu_peak(torch.get_num_threads()) and how.startswith("measured"), how
    with pytest.raises(ValueError, match="cpu_fma_peak: expected 1 <= threads"):
        lenet_fast._C.cpu_fma_peak(0, 0.1)


def test_step_breakdown_phases_ops_and_kernel_table(tmp_path):
    """benchmarks/step_breakdown.py times every phase of the bench's training step, reads the two
    whole-network ops from the profiler, and turns a kernel split into a table (here a made-up one:
    perf and valgrind are outside tools)."""
    sb = _load("benchmarks/step_breakdown.py")
    out = tmp_path / "b.json"
    assert sb.main(["--steps", "20", "--batch", "8", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["phases_us"]) == set(sb.PHASES) and all(v > 0 for v in res["phases_us"].values())
    assert {"lenet_fast::lenet5_forward_train", "lenet_fast::lenet5_backward"} <= set(res["ops_us"])
    assert res["optimizer"] == "torch.optim.Adam(fused=True)" and res["cpu_isa"] == lenet_fast._C.cpu_isa()
    res["kernels_perf"] = {"tool": "made up", "percent": {"conv_input_grad": 30.0, "linear_forward": 10.0},
                           "percent_elsewhere": 60.0}
    md = sb.markdown(res)
    assert "| `conv_input_grad` | 75% |" in md and "| `linear_forward` | 25% |" in md
    assert sb._family("void lenet_fast::cpu::(anonymous namespace)::conv_fused_image<16, 1, 5>(...)") == "conv_fused_image"
    assert sb._family("at::native::fused_adam_kernel") is None
