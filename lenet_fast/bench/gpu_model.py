"""Predicted H200 times of lenet_fast's CUDA kernels, from counts made without a GPU.

The counts come from the CPU harness's profiling build (benchmarks/gpu_profile.py writes them to
benchmarks/results/cudasim-profile.json): per kernel launch, the DRAM bytes, the fp32 and all
warp instructions, the shared-memory wavefronts, the busiest warp's instructions and memory
requests, and the registers ptxas gives the kernel. Per launch the model takes the largest of

    dram      distinct DRAM bytes / HBM bandwidth
    fp32      fp32 warp instructions / (4 per clock per SM x the SMs the grid occupies)
    issue     all warp instructions / (4 per clock per SM x those SMs)
    shared    shared-memory wavefronts / (1 per clock per SM x those SMs)
    latency   waves x the busiest warp's serial time: its instructions at WARP_CPI cycles each,
              its shared and global requests at their latencies over the requests in flight

plus LAUNCH_US per kernel launch, where a wave is as many blocks as the SMs hold at once (blocks
per SM by threads, registers and shared memory). Every figure it assumes is in ASSUMPTIONS and in
its JSON. It is a model, not a measurement: benchmarks/gpu_check.sh puts the times a GPU measures
beside it, and those decide. The instruction counts are the x86 instructions clang emits for the
same source (instrumentation removed), a stand-in for the SASS count, which ptxas alone knows.

    python -m lenet_fast.bench --gpu-model [--profile PATH] [--json PATH]
"""
from __future__ import annotations

import json
import math
from pathlib import Path

ASSUMPTIONS = {
    "device": "NVIDIA H200 SXM (sm_90)",
    "sms": 132,
    "clock_hz": 1.98e9,                  # boost clock, seen on the lent machines (KINDS.md)
    "hbm_bytes_per_s": 4.3e12,           # device-to-device copy measured there (datasheet: 4.8e12)
    "warp_instructions_per_clock_per_sm": 4,   # 4 schedulers, one warp instruction each per clock
    "fp32_warp_instructions_per_clock_per_sm": 4,  # 128 FP32 lanes
    "shared_wavefronts_per_clock_per_sm": 1,   # 32 banks x 4 bytes
    "max_threads_per_sm": 2048,
    "max_blocks_per_sm": 32,
    "registers_per_sm": 65536,
    "register_unit": 256,                # registers are allotted per warp in units of 256
    "shared_bytes_per_sm": 228 * 1024,
    "shared_reserved_per_block": 1024,
    "warp_cpi": 2.0,                     # cycles per instruction of one warp on its own (dependent chains)
    "shared_latency_cycles": 30,
    "global_latency_cycles": 600,        # an L2 miss; an L2 hit is about half
    "requests_in_flight": 4,             # independent memory requests a warp has outstanding
    "launch_us": 2.5,                    # per kernel launch from PyTorch eager (host + queue)
}

WORKLOAD_TITLES = {
    "inference_64": "inference, batch 64",
    "inference_1024": "inference, batch 1024",
    "inference_65536": "inference, batch 65536",
    "forward_backward_64": "fused forward + backward, batch 64",
    "layers_forward_backward_64": "per-layer ops, forward + backward, batch 64",
}


def default_profile_path() -> Path | None:
    """benchmarks/results/cudasim-profile.json of the checkout this runs in or was built from."""
    here = Path(__file__).resolve()
    for root in (Path.cwd(), here.parents[2]):
        path = root / "benchmarks" / "results" / "cudasim-profile.json"
        if path.exists():
            return path
    return None


def blocks_per_sm(k: dict, a: dict = ASSUMPTIONS) -> tuple[int, str]:
    """Blocks one SM holds at once, and what limits it."""
    threads = k["threads_per_block"]
    warps = math.ceil(threads / 32)
    limits = {"threads": a["max_threads_per_sm"] // threads, "blocks": a["max_blocks_per_sm"]}
    if k.get("registers"):
        per_warp = math.ceil(k["registers"] * 32 / a["register_unit"]) * a["register_unit"]
        limits["registers"] = a["registers_per_sm"] // (per_warp * warps)
    smem = k["dynamic_shared_bytes"] + (k.get("static_shared_bytes") or 0)
    if smem:
        limits["shared memory"] = a["shared_bytes_per_sm"] // (smem + a["shared_reserved_per_block"])
    name = min(limits, key=limits.get)
    return max(limits[name], 0), name


def predict_kernel(k: dict, a: dict = ASSUMPTIONS) -> dict:
    clock = a["clock_hz"]
    per_sm, by = blocks_per_sm(k, a)
    if per_sm == 0:
        raise ValueError(f"{k['kernel']}: a block does not fit on an SM ({by})")
    blocks = k["blocks"]
    sms = min(a["sms"], blocks)
    waves = math.ceil(blocks / (a["sms"] * per_sm))
    g = k["global"]
    bw = k["busiest_warp"]
    warp_s = (bw["instructions"] * a["warp_cpi"]
              + (bw["shared_requests"] * a["shared_latency_cycles"]
                 + bw["global_requests"] * a["global_latency_cycles"]) / a["requests_in_flight"]) / clock
    times = {
        "dram": (g["dram_read_bytes"] + g["dram_write_bytes"]) / a["hbm_bytes_per_s"],
        "fp32": k["fp32_warp_instructions"] / (a["fp32_warp_instructions_per_clock_per_sm"] * sms * clock),
        "issue": k["warp_instructions"] / (a["warp_instructions_per_clock_per_sm"] * sms * clock),
        "shared": k["shared"]["wavefronts"] / (a["shared_wavefronts_per_clock_per_sm"] * sms * clock),
        "latency": waves * warp_s,
    }
    limiter = max(times, key=times.get)
    return {"kernel": k["kernel"], "blocks": blocks, "blocks_per_sm": per_sm, "blocks_per_sm_limited_by": by,
            "sms_used": sms, "waves": waves, "limiter": limiter,
            "times_us": {n: round(t * 1e6, 3) for n, t in times.items()},
            "predicted_us": round(times[limiter] * 1e6 + a["launch_us"], 3)}


def predict(profile: dict, a: dict = ASSUMPTIONS) -> dict:
    out = {"assumptions": a, "profile_date": profile.get("date"), "workloads": {}, "predicted": {}}
    for name, w in profile["workloads"].items():
        kernels = [predict_kernel(k, a) for k in w["launches"]]
        total = sum(k["predicted_us"] for k in kernels)
        out["workloads"][name] = {"batch": w["batch"], "training": w["training"], "kernels": kernels,
                                  "predicted_us": round(total, 3),
                                  "images_per_s": round(w["batch"] / (total * 1e-6))}
    ws = out["workloads"]
    if "inference_65536" in ws:
        out["predicted"]["inference_65536_images_per_s"] = ws["inference_65536"]["images_per_s"]
    if "forward_backward_64" in ws:
        out["predicted"]["forward_backward_64_us"] = ws["forward_backward_64"]["predicted_us"]
    if "layers_forward_backward_64" in ws:
        out["predicted"]["layers_forward_backward_64_us"] = ws["layers_forward_backward_64"]["predicted_us"]
    return out


def table(profile: dict, prediction: dict) -> str:
    """Per workload and kernel: the profile's counters, the limiter and the predicted time."""
    rows = ["| call | kernel | blocks (per SM) | DRAM MB | fp32 M lane-instr. | smem wavefronts/req | gmem sectors/req (eff.) | limiter | predicted µs |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for name, w in prediction["workloads"].items():
        for k, p in zip(profile["workloads"][name]["launches"], w["kernels"]):
            g, s = k["global"], k["shared"]
            gmem = "-" if g["efficiency"] is None else f"{g['sectors_per_request']} ({g['efficiency']:.0%})"
            op = f" ({k['label']})" if k.get("label") not in (None, "", "forward", "backward") else ""
            rows.append(f"| {WORKLOAD_TITLES.get(name, name)} | `{k['kernel'].split('<')[0]}`{op} | {p['blocks']} ({p['blocks_per_sm']}) | "
                        f"{(g['dram_read_bytes'] + g['dram_write_bytes']) / 1e6:.2f} | {k['fp32_instructions'] / 1e6:.1f} | "
                        f"{s['wavefronts_per_request']} | {gmem} | "
                        f"{p['limiter']} | {p['predicted_us']:.1f} |")
        extra = f", {w['images_per_s'] / 1e6:.1f}M images/s" if not w["training"] else ""
        rows.append(f"| **{WORKLOAD_TITLES.get(name, name)}** | **the call** | | | | | | | **{w['predicted_us']:.1f}**{extra} |")
    return "\n".join(rows)


def main(profile_path: str | None, json_path: str | None) -> dict:
    path = Path(profile_path) if profile_path else default_profile_path()
    if path is None or not path.exists():
        raise SystemExit("--gpu-model: no profile found; pass --profile PATH (benchmarks/results/cudasim-profile.json "
                         "of a lenet_fast checkout, written by python benchmarks/gpu_profile.py)")
    profile = json.loads(path.read_text())
    prediction = predict(profile)
    print(f"Predicted H200 times (a model, not a measurement) from {path}:")
    print(table(profile, prediction))
    p = prediction["predicted"]
    if p:
        print(f"predicted: inference at batch 65536 {p.get('inference_65536_images_per_s', 0) / 1e6:.1f}M images/s; "
              f"fused forward + backward at batch 64 {p.get('forward_backward_64_us', float('nan')):.1f} µs")
    if json_path:
        Path(json_path).write_text(json.dumps(prediction, indent=1) + "\n")
        print(f"wrote {json_path}")
    return prediction
