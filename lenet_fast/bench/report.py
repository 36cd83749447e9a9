"""What a benchmark run reports: its results as a table, a JSON file and a plot, and the machine
it ran on (versions, hardware, the float32 peak that "peak" is a share of)."""
from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import torch

import lenet_fast

FORMAT = 2  # of the JSON this writes; benchmarks/report.py reads this format only


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


# ------------------------------------------------------------------------- environment

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


def _cpu_id() -> tuple[str, int, int]:
    """(vendor_id, cpu family, model) from /proc/cpuinfo; ("", 0, 0) where it says nothing."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    try:
        return fields.get("vendor_id", ""), int(fields.get("cpu family", 0)), int(fields.get("model", 0))
    except ValueError:
        return fields.get("vendor_id", ""), 0, 0


def cpu_kind(vendor: str, family: int, model: int, flags: set) -> tuple[str, int]:
    """The machine kind and its float32 FMA peak per core per cycle (FMA units x lanes x 2).

    AVX-512 does not say how wide the FMA units are: Zen 4 runs it on 256-bit units (2 x 8 lanes
    x 2 = 32, as Zen 3's AVX2), Zen 5 server parts and Xeons with two FMA units on 512-bit ones
    (2 x 16 x 2 = 64; a Xeon with one 512-bit FMA unit would be 32, which cpuinfo cannot tell)."""
    avx512, avx2 = "avx512f" in flags, {"avx2", "fma"} <= flags
    if vendor == "AuthenticAMD" and family == 26:
        return "AMD Zen 5 (AVX-512, 512-bit FMA units)", 64 if avx512 else 32
    if vendor == "AuthenticAMD" and family == 25:
        return ("AMD Zen 4 (AVX-512 on 256-bit FMA units)", 32) if avx512 else ("AMD Zen 3 (AVX2)", 32)
    if vendor == "AuthenticAMD" and family == 23:
        return "AMD Zen 1/2 (AVX2)", 32 if avx2 else 8
    if vendor == "GenuineIntel" and avx512:
        return "Intel Xeon (AVX-512, two 512-bit FMA units assumed)" + (", AMX" if "amx_tile" in flags else ""), 64
    if vendor == "GenuineIntel" and avx2:
        return "Intel (AVX2)", 32
    if avx512:
        return "unknown x86 (AVX-512, 512-bit FMA units assumed)", 64
    return ("unknown (AVX2 + FMA)", 32) if avx2 else ("unknown (no AVX2)", 8)


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
    kind, per_cycle = cpu_kind(*_cpu_id(), _cpu_flags())
    mhz = _cpu_mhz()
    threads = torch.get_num_threads()
    nominal = f"{threads} threads x {per_cycle} FLOP/cycle x {mhz:.0f} MHz ({kind})" if mhz else None
    measured = measured_cpu_peak(threads)
    if measured:
        # The clock the cores really run at (turbo; a VM's host) is not /proc/cpuinfo's nominal MHz:
        # what an FMA loop on every thread gets is the limit the kernels are held to.
        how = (f"measured: {threads} threads x an FMA loop on the widest vectors, {measured / threads / per_cycle * 1e3:.0f} MHz "
               f"effective at {per_cycle} FLOP/cycle ({kind})")
        if nominal:
            how += f"; cpuinfo's clock would say {threads * per_cycle * mhz / 1e3:.0f} GFLOP/s"
        return measured, how
    if not mhz:
        return float("nan"), f"unknown (no clock in /proc/cpuinfo; {kind})"
    return threads * per_cycle * mhz / 1e3, nominal


@functools.lru_cache(maxsize=None)
def measured_cpu_peak(threads: int) -> float | None:
    """GFLOP/s of float32 FMAs `threads` threads get at once on this machine (lenet_fast._C's FMA
    loop on the widest ISA it runs), best of three 0.1 s runs; None where the build lacks it.
    Measured once per process: on a quiet machine, before any case runs."""
    fn = getattr(lenet_fast._C, "cpu_fma_peak", None)
    if fn is None or os.environ.get("LENET_FAST_PEAK_NOMINAL"):
        return None
    return max(fn(threads, 0.1) for _ in range(3))


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
        "cpu_kind": cpu_kind(*_cpu_id(), _cpu_flags())[0],
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


def write_json(path: str, env: dict, args: dict, results: list[Result]) -> None:
    with open(path, "w") as f:
        json.dump({"format": FORMAT, "environment": env, "args": args,
                   "results": [asdict(r) for r in results]}, f, indent=1)


def read_json(path: str) -> tuple[list[Result], dict]:
    """(results, environment) of a file write_json wrote."""
    with open(path) as f:
        data = json.load(f)
    return [Result(**r) for r in data["results"]], data["environment"]
