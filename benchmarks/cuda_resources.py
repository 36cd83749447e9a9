"""The CUDA kernels' resources as the compiler allots them, without a GPU: every kernel instantiation
of csrc/kernels/cuda/*.cu compiled for an architecture with ptxas's verbose output, read per kernel
(registers, stack frame, spill stores and loads, static shared memory, barriers), with the launch
bounds the kernel declares (.maxntid / .minnctapersm in its PTX) and the blocks per SM its
registers allow at that block size.

    python benchmarks/cuda_resources.py                 # sm_90 and sm_80 -> benchmarks/results/cuda-resources-<arch>.json
    python benchmarks/cuda_resources.py --arch sm_90 --out /tmp/r.json

tests/test_cuda_resources.py holds the kernels to their design with it (no spills, no stack in the
whole-network path, the blocks per SM their launch bounds promise).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "csrc" / "kernels" / "cuda"
ARCHS = ("sm_90", "sm_80")
# Registers per SM and per thread, and shared memory per SM (bytes), of the architectures here
# (CUDA C Programming Guide, compute capabilities 8.0 and 9.0).
SM_LIMITS = {"sm_80": {"registers": 65536, "max_registers_per_thread": 255, "shared_bytes": 164 * 1024},
             "sm_90": {"registers": 65536, "max_registers_per_thread": 255, "shared_bytes": 228 * 1024}}
REGISTER_UNIT = 256  # registers are allotted per warp in units of 256 (8 per thread)


def nvcc() -> str | None:
    home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    for cand in (Path(home) / "bin" / "nvcc", shutil.which("nvcc")):
        if cand and Path(cand).exists():
            return str(cand)
    return None


def _demangle(names: list[str]) -> dict[str, str]:
    tool = shutil.which("c++filt")
    if not tool or not names:
        return {n: n for n in names}
    out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return dict(zip(names, out)) if len(out) == len(names) else {n: n for n in names}


def _ptxas_info(text: str) -> dict[str, dict]:
    """Per mangled kernel name, from `ptxas -v` output."""
    kernels: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '(\S+)'", line)
        if m:
            current = kernels.setdefault(m.group(1), {})
            continue
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            current = kernels.setdefault(m.group(1), {})
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            current.update(stack_frame=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            current["registers"] = int(m.group(1))
            b = re.search(r"used (\d+) barriers", line)
            current["barriers"] = int(b.group(1)) if b else 0
            s = re.search(r"(\d+) bytes smem", line)
            current["static_shared_bytes"] = int(s.group(1)) if s else 0
    return kernels


def _launch_bounds(ptx: str) -> dict[str, dict]:
    """.maxntid and .minnctapersm of each .entry in PTX text."""
    bounds = {}
    for m in re.finditer(r"\.entry\s+(\S+?)\s*\((.*?)\)\s*((?:\.\w+[^{]*?)*)\{", ptx, re.S):
        directives = m.group(3)
        t = re.search(r"\.maxntid\s+(\d+)\s*,\s*(\d+)\s*,\s*(\d+)", directives)
        b = re.search(r"\.minnctapersm\s+(\d+)", directives)
        bounds[m.group(1)] = {"max_threads": int(t.group(1)) * int(t.group(2)) * int(t.group(3)) if t else None,
                              "min_blocks_per_sm": int(b.group(1)) if b else None}
    return bounds


def compile_file(cu: Path, arch: str, extra: tuple[str, ...] = ()) -> list[dict]:
    """Every kernel of one .cu file, compiled for `arch`."""
    with tempfile.TemporaryDirectory() as tmp:
        obj = Path(tmp) / f"{cu.stem}.o"
        # -keep leaves the PTX beside the object: the launch bounds are read from it
        cmd = [nvcc(), "-std=c++20", "-O3", f"-arch={arch}", "-Xptxas", "-v", f"-I{ROOT / 'csrc'}", *extra,
               "-keep", "-keep-dir", tmp, "-c", str(cu), "-o", str(obj)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"nvcc failed on {cu.name} for {arch}:\n{r.stderr[-4000:]}")
        ptx = "\n".join(f.read_text() for f in Path(tmp).glob("*.ptx"))
    info, bounds = _ptxas_info(r.stderr + r.stdout), _launch_bounds(ptx)
    names = _demangle(sorted(info))
    limits = SM_LIMITS[arch]
    out = []
    for mangled in sorted(info):
        k = {"kernel": names[mangled], "mangled": mangled, "file": str(cu.relative_to(ROOT)), **info[mangled],
             **bounds.get(mangled, {"max_threads": None, "min_blocks_per_sm": None})}
        threads = k["max_threads"]
        if threads and k.get("registers"):
            per_warp = -(-k["registers"] * 32 // REGISTER_UNIT) * REGISTER_UNIT
            k["blocks_per_sm_by_registers"] = limits["registers"] // (per_warp * -(-threads // 32))
        out.append(k)
    return out


def collect(arch: str, extra: tuple[str, ...] = (), files: list[Path] | None = None) -> dict:
    files = files or sorted(KERNELS.glob("*.cu"))
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        kernels = [k for ks in pool.map(lambda f: compile_file(f, arch, extra), files) for k in ks]
    version = subprocess.run([nvcc(), "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return {"arch": arch, "nvcc": version, "limits": SM_LIMITS[arch],
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"), "kernels": kernels}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", action="append", choices=ARCHS, help="default: every one of " + ", ".join(ARCHS))
    p.add_argument("--out", help="output path (one --arch only); default benchmarks/results/cuda-resources-<arch>.json")
    args = p.parse_args(argv)
    if nvcc() is None:
        raise SystemExit("cuda_resources: nvcc not found (set CUDA_HOME)")
    for arch in args.arch or ARCHS:
        res = collect(arch)
        out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"cuda-resources-{arch}.json"
        out.write_text(json.dumps(res, indent=1) + "\n")
        worst = max(res["kernels"], key=lambda k: k.get("registers", 0))
        print(f"{arch}: {len(res['kernels'])} kernels, most registers {worst['registers']} ({worst['kernel'][:80]}), "
              f"spills {sum(k.get('spill_stores', 0) for k in res['kernels'])} bytes -> {out}")


if __name__ == "__main__":
    main()
