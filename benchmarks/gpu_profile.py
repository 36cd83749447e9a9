"""The memory-efficiency profile of lenet_fast's CUDA kernels, without a GPU: the whole-model calls a
user makes (inference at batch 64, 1024 and 65536; the fused training forward + backward at batch
64), and the same training step through the per-layer ops (the kernels other geometries run), run
in the profiling build of the CPU harness (tests/cudasim.py, load(profile=True); the
counting is csrc/cudasim/profile.cpp), and per kernel launch this writes what Nsight Compute's
memory workload analysis would show:

  global memory   load and store requests (warp instructions), 32-byte sectors per request (4 is
                  ideal for 32 lanes of 4 bytes), efficiency = bytes the lanes asked for / bytes of
                  the sectors moved, distinct DRAM bytes (every sector's first touch)
  shared memory   requests and wavefronts per request (1 is conflict-free)
  work            barriers per block, fp32 instructions and FMAs (counted per basic block from the
                  build's disassembly: the scalar float instructions clang emits for the kernel
                  code, FMA-contracted as nvcc does), active lanes per warp instruction, the busiest
                  warp's instructions and memory requests per block
  sites           the instructions (file:line) with the most excess sectors or wavefronts
  resources       registers and launch bounds from ptxas (benchmarks/results/cuda-resources-sm_90.json)

Large grids run a sample of their first blocks (every block of net_forward_kernel does the same
work); the counters are scaled to the grid, DRAM bytes that more than one sampled block touched
(the weights) are counted once. lenet_fast.bench --gpu-model turns this into predicted H200 times.

    python benchmarks/gpu_profile.py                      # -> benchmarks/results/cudasim-profile.json
    python benchmarks/gpu_profile.py --out /tmp/p.json --workload inference_64
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_OUT = RESULTS / "cudasim-profile.json"

# name -> (batch, blocks sampled per launch (0: all), training forward + backward?)
WORKLOADS = {
    "inference_64": (64, 0, False),
    "inference_1024": (1024, 64, False),
    "inference_65536": (65536, 16, False),
    "forward_backward_64": (64, 0, True),
}
# The per-layer kernels (what other geometries, and the per-layer ops, run): LeNet-5's training
# step at batch 64 composed of the per-layer ops, forward and backward, one launch per op (or two).
LAYER_WORKLOADS = {"layers_forward_backward_64": (64, 0, True)}

# Scalar float instructions clang emits for kernel code (the GPU's FP32 pipe: FFMA, FADD, FMUL,
# FMNMX), FMAs among them, and everything else a basic block holds minus the instrumentation: its
# calls, the argument each loads, and the moves to and from the stack around them (registers the
# calls make the compiler save; a GPU thread keeps them in registers).
_FMA = re.compile(r"^vf(n?m(add|sub))(132|213|231)ss$")
_FP32 = re.compile(r"^v?(add|sub|mul|min|max|div|sqrt)ss$")
_SPILL = re.compile(r"^v?mov(ss|sd|aps|ups|d|q)?$")
# x86 does in one instruction what a GPU does in many: integer division by a run-time divisor (no
# divide unit: about 20 instructions around a reciprocal) and IEEE float division (MUFU.RCP and a
# Newton step with a slow-path check, about 8). Counted at their GPU cost.
GPU_EXTRA = {"div": 19, "idiv": 19, "divl": 19, "idivl": 19, "divq": 19, "idivq": 19, "vdivss": 7, "divss": 7}


def kernel_key(name: str) -> str:
    """A demangled kernel name less its return type and parameter list (nvcc and clang spell those
    alike but not always identically)."""
    name = name.removeprefix("void ")
    depth = 0
    for i, c in enumerate(name):
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif c == "(" and depth == 0 and not name.startswith("(anonymous namespace)", i):
            return name[:i]
    return name


def _symbols(so: Path) -> dict[int, str]:
    out = subprocess.run(["nm", "-C", "--defined-only", str(so)], capture_output=True, text=True, check=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            syms[int(parts[0], 16)] = parts[2]
    return syms


def _lines(so: Path, pcs: list[int]) -> dict[int, str]:
    """pc -> file:line of the innermost source location (the call's return address minus one)."""
    if not pcs:
        return {}
    r = subprocess.run(["addr2line", "-e", str(so), "-i", "-a", *[hex(pc - 1) for pc in pcs]],
                       capture_output=True, text=True, check=True).stdout.splitlines()
    out, current = {}, None
    for line in r:
        if line.startswith("0x"):
            current = int(line, 16) + 1
        elif current is not None and current not in out:
            path = line.split(" (discriminator")[0]
            try:
                path = str(Path(path.rsplit(":", 1)[0]).resolve().relative_to(ROOT)) + ":" + path.rsplit(":", 1)[1]
            except ValueError:
                pass
            out[current] = path
    return out


def _blocks(so: Path) -> dict[int, dict]:
    """Per guard pc (the instruction after the call to __sanitizer_cov_trace_pc_guard): the basic
    block's fp32 instructions, FMAs and other instructions, read from the disassembly up to the
    next guard call or branch."""
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(so)], capture_output=True, text=True,
                          check=True).stdout
    insns = []
    for line in text.splitlines():
        m = re.match(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$", line)
        if m:
            insns.append((int(m.group(1), 16), m.group(2), m.group(3)))
    out = {}
    for i, (_, mnem, ops) in enumerate(insns):
        if not (mnem == "call" and "__sanitizer_cov_trace_pc_guard" in ops) or i + 1 >= len(insns):
            continue
        fp = fma = other = 0
        for _, m2, o2 in insns[i + 1:]:
            if m2 == "call" and "__sanitizer_cov_trace_pc_guard" in o2:
                break
            if m2 == "call" and "__sanitizer_cov" in o2:
                other -= 1  # the instrumentation: its call and the argument it loaded
                continue
            if _SPILL.match(m2) and ("(%rsp)" in o2 or "(%rbp)" in o2):
                continue  # a register saved around an instrumentation call (or a local): not the GPU's work
            if _FMA.match(m2):
                fp += 1
                fma += 1
            elif _FP32.match(m2):
                fp += 1
                other += GPU_EXTRA.get(m2, 0)
            else:
                other += 1 + GPU_EXTRA.get(m2, 0)
            if m2.startswith("j") or m2 == "ret":
                break
        out[insns[i + 1][0]] = {"fp32": fp, "fma": fma, "instructions": max(fp + other, 1)}
    return out


def _resources() -> dict[str, dict]:
    path = RESULTS / "cuda-resources-sm_90.json"
    if not path.exists():
        return {}
    return {kernel_key(k["kernel"]): k for k in json.loads(path.read_text())["kernels"]}


def run_layers(prof, batch: int) -> dict:
    """LeNet-5's forward and backward through the per-layer ops, each launch labelled with its op."""
    import lenet_fast

    torch.manual_seed(0)
    w1, b1, w2, b2, f1w, f1b, f2w, f2b, f3w, f3b = [p.detach() for p in lenet_fast.LeNet5().parameters()]
    x = torch.randn(batch, 1, 28, 28)
    g3 = torch.randn(batch, f3w.shape[0]) / batch
    prof._profile_start(0)

    def op(name, *args):
        prof._profile_label(name)
        return getattr(prof, name)(*args)

    p1, a1 = op("conv5x5_act_pool", x, w1, b1, 2, True)
    p2, a2 = op("conv5x5_act_pool", p1, w2, b2, 0, True)
    f = p2.flatten(1)
    h1 = op("linear_act", f, f1w, f1b)
    h2 = op("linear_act", h1, f2w, f2b)
    op("linear", h2, f3w, f3b)
    op("linear_backward_weight", g3, h2)
    g2 = op("act_backward", op("linear_backward_input", g3, f3w), h2)
    op("linear_backward_weight", g2, h1)
    g1 = op("act_backward", op("linear_backward_input", g2, f2w), h1)
    op("linear_backward_weight", g1, f)
    gp2 = op("linear_backward_input", g1, f1w).view_as(p2)
    op("conv5x5_act_pool_backward_weight", gp2, a2, p1, 0)
    gp1 = op("conv5x5_backward_input", op("act_pool_backward", gp2, a2), w2, 0)
    op("conv5x5_act_pool_backward_weight", gp1, a1, x, 2)
    return json.loads(prof._profile_stop())


def run_workload(prof, name: str) -> dict:
    import lenet_fast

    if name in LAYER_WORKLOADS:
        return run_layers(prof, LAYER_WORKLOADS[name][0])
    batch, sample, training = WORKLOADS[name]
    torch.manual_seed(0)
    model = lenet_fast.LeNet5()
    params = [p.detach() for p in model.parameters()]
    x = torch.randn(batch, 1, 28, 28)
    if training:
        logits, saved = prof.lenet5_forward_train(x, *params, 2)  # warm: nothing recorded yet
        g = torch.randn_like(logits) / batch
        prof._profile_start(sample)
        prof._profile_label("forward")
        prof.lenet5_forward_train(x, *params, 2)
        prof._profile_label("backward")
        prof.lenet5_backward(g, x, *params[0::2], saved, 2, [False] + [True] * 10)
    else:
        prof._profile_start(sample)
        prof._profile_label("forward")
        prof.lenet5_forward(x, *params, 2)
    return json.loads(prof._profile_stop())


def summarize(raw: dict, workload: str) -> list[dict]:
    so = Path(raw["object"])
    syms = _symbols(so)
    blocks = _blocks(so)
    resources = _resources()
    guard_pc = dict(raw["guard_pcs"])
    launches = []
    site_pcs = sorted({s["pc"] for L in raw["launches"] for s in L["sites"]})
    where = _lines(so, site_pcs)
    for L in raw["launches"]:
        name = syms.get(L["kernel"], hex(L["kernel"]))
        scale = L["grid_blocks"] / max(L["blocks"], 1)
        g = defaultdict(int)
        for site in L["sites"]:
            kind = f"{site['space']}_{site['op']}"
            g[kind + "_requests"] += site["requests"]
            g[kind + "_lanes"] += site["lanes"]
            if site["space"] == "global":
                g[kind + "_sectors"] += site["sectors"]
                g[kind + "_bytes"] += site["bytes"]
            else:
                g[kind + "_wavefronts"] += site["wavefronts"]
        fp32 = fma = lane_insns = warp_insns = fp32_warp = 0
        for guard, lane_runs, warp_runs in L["guards"]:
            b = blocks.get(guard_pc.get(guard, -1), {"fp32": 0, "fma": 0, "instructions": 1})
            fp32 += lane_runs * b["fp32"]
            fma += lane_runs * b["fma"]
            fp32_warp += warp_runs * b["fp32"]
            lane_insns += lane_runs * b["instructions"]
            warp_insns += warp_runs * b["instructions"]
        per_warp = defaultdict(int)
        for w, guard, runs in L["warp_guards"]:
            per_warp[w] += runs * blocks.get(guard_pc.get(guard, -1), {"instructions": 1})["instructions"]
        busiest = max(range(len(L["warps"])), key=lambda w: per_warp[w], default=0)
        nb = max(L["blocks"], 1)
        warps = L["warps"][busiest] if L["warps"] else {"global_requests": 0, "shared_requests": 0}

        def dram(total, shared):
            return shared + (total - shared) * scale

        # Sites by source line (an unrolled loop is many instructions of one line).
        by_line: dict = {}
        for site in L["sites"]:
            key = (where.get(site["pc"], hex(site["pc"])), site["space"], site["op"], site["size"])
            acc = by_line.setdefault(key, defaultdict(int))
            for f in ("requests", "lanes", "sectors", "bytes", "wavefronts"):
                acc[f] += site.get(f, 0)
            acc["divergent"] |= site.get("divergent", 0) > 0
        sites = []
        for (line, space, op, size), acc in by_line.items():
            if space == "global":
                excess = max(0, acc["sectors"] - -(-acc["bytes"] // 32))  # over the sectors the bytes fill
                per = ("sectors_per_request", round(acc["sectors"] / acc["requests"], 2))
            else:
                excess = acc["wavefronts"] - acc["requests"]
                per = ("wavefronts_per_request", round(acc["wavefronts"] / acc["requests"], 2))
            site = {"where": line, "space": space, "op": op, "size": size,
                    "requests": round(acc["requests"] * scale), per[0]: per[1],
                    "lanes_per_request": round(acc["lanes"] / acc["requests"], 1),
                    "excess": round(excess * scale), "divergent": bool(acc["divergent"])}
            if space == "global":
                site["efficiency"] = round(acc["bytes"] / (32 * acc["sectors"]), 3)
                # Sectors over the fewest that requests of this size need (one lane's float needs a
                # whole sector: 1.0 there, though its efficiency is 12.5%).
                ideal = acc["requests"] * -(-acc["bytes"] // (32 * acc["requests"]))
                site["sectors_over_ideal"] = round(acc["sectors"] / ideal, 2)
            sites.append(site)
        # The worst of the hot sites (1% or more of the kernel's requests in their space), over every
        # site, not only the eight kept below.
        hot = {}
        for space, key, pick in (("shared", "wavefronts_per_request", max), ("global", "sectors_over_ideal", max)):
            total = sum(x["requests"] for x in sites if x["space"] == space)
            cands = [x for x in sites if x["space"] == space and x["requests"] >= 0.01 * total]
            if cands:
                worst = pick(cands, key=lambda x: x[key])
                hot[space] = {key: worst[key], "where": worst["where"], "op": worst["op"]}
        sites.sort(key=lambda s: -s["excess"])
        res = resources.get(kernel_key(name), {})
        gl_req = g["global_load_requests"] + g["global_store_requests"]
        gl_sec = g["global_load_sectors"] + g["global_store_sectors"]
        gl_bytes = g["global_load_bytes"] + g["global_store_bytes"]
        sh_req = g["shared_load_requests"] + g["shared_store_requests"]
        sh_wav = g["shared_load_wavefronts"] + g["shared_store_wavefronts"]
        launches.append({
            "kernel": kernel_key(name).replace("lenet_fast::cuda::(anonymous namespace)::", ""),
            "label": L["label"],
            "grid": L["grid"], "block": L["block"], "threads_per_block": L["block"][0] * L["block"][1] * L["block"][2],
            "dynamic_shared_bytes": L["dynamic_shared_bytes"], "blocks": L["grid_blocks"], "blocks_profiled": L["blocks"],
            "registers": res.get("registers"), "static_shared_bytes": res.get("static_shared_bytes", 0),
            "min_blocks_per_sm": res.get("min_blocks_per_sm"),
            "global": {
                "load_requests": round(g["global_load_requests"] * scale),
                "store_requests": round(g["global_store_requests"] * scale),
                "sectors": round(gl_sec * scale),
                "sectors_per_request": round(gl_sec / gl_req, 2) if gl_req else None,
                "efficiency": round(gl_bytes / (32 * gl_sec), 3) if gl_sec else None,
                "dram_read_bytes": round(dram(L["dram_read_bytes"], L["dram_read_shared_bytes"])),
                "dram_write_bytes": round(dram(L["dram_write_bytes"], L["dram_write_shared_bytes"])),
            },
            "shared": {
                "requests": round(sh_req * scale),
                "wavefronts": round(sh_wav * scale),
                "wavefronts_per_request": round(sh_wav / sh_req, 2) if sh_req else None,
            },
            "barriers_per_block": round(L["barriers"] / nb, 1),
            "fp32_instructions": round(fp32 * scale), "fmas": round(fma * scale),
            "fp32_warp_instructions": round(fp32_warp * scale),
            "warp_instructions": round(warp_insns * scale),
            "active_lanes": round(lane_insns / (32 * warp_insns), 3) if warp_insns else None,
            "busiest_warp": {"instructions": round(per_warp[busiest] / nb), "global_requests": round(warps["global_requests"] / nb),
                             "shared_requests": round(warps["shared_requests"] / nb)},
            "local_accesses_per_thread": round(L["local_accesses"] / max(L["threads"], 1), 1),
            "worst_hot_site": hot,
            "sites": sites[:8],
        })
    return launches


def launch_shapes(prof) -> list[dict]:
    """Every whole-network kernel's block and dynamic shared memory as the launchers choose them, at
    a small batch and at a large one (one block each: only the configurations are wanted)."""
    import lenet_fast

    params = [p.detach() for p in lenet_fast.LeNet5().parameters()]
    shapes = {}
    for batch in (64, 4096):
        x = torch.randn(batch, 1, 28, 28)
        prof._profile_start(1)
        logits, saved = prof.lenet5_forward_train(x, *params, 2)
        prof.lenet5_backward(torch.ones_like(logits), x, *params[0::2], saved, 2, [False] + [True] * 10)
        prof.lenet5_forward(x, *params, 2)
        raw = json.loads(prof._profile_stop())
        syms = _symbols(Path(raw["object"]))
        for L in raw["launches"]:
            name = kernel_key(syms.get(L["kernel"], hex(L["kernel"])))
            shapes[name] = {"kernel": name.replace("lenet_fast::cuda::(anonymous namespace)::", ""),
                            "threads_per_block": L["block"][0] * L["block"][1] * L["block"][2],
                            "dynamic_shared_bytes": L["dynamic_shared_bytes"]}
    return sorted(shapes.values(), key=lambda s: s["kernel"])


def clang_version() -> str:
    import cudasim

    return subprocess.run([cudasim.CLANG, "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def profile(workloads=None) -> dict:
    import cudasim

    prof = cudasim.load(profile=True)
    out = {"date": datetime.date.today().isoformat(), "harness": "cudasim profiling build (clang, sanitizer coverage)",
           "compiler": clang_version(), "variant": "tanh, avg pooling (the defaults)", "workloads": {}}
    for name in workloads or {**WORKLOADS, **LAYER_WORKLOADS}:
        batch, sample, training = {**WORKLOADS, **LAYER_WORKLOADS}[name]
        out["workloads"][name] = {"batch": batch, "training": training, "sampled_blocks": sample,
                                  "launches": summarize(run_workload(prof, name), name)}
    out["launch_shapes"] = launch_shapes(prof)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--workload", action="append", choices=sorted({**WORKLOADS, **LAYER_WORKLOADS}))
    args = ap.parse_args(argv)
    result = profile(args.workload)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for name, w in result["workloads"].items():
        for L in w["launches"]:
            print(f"{name:20s} {L['kernel'][:60]:60s} gld/st eff {L['global']['efficiency']} "
                  f"sect/req {L['global']['sectors_per_request']} smem wav/req {L['shared']['wavefronts_per_request']} "
                  f"fma {L['fmas']:.3g}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
