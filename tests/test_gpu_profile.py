"""GPU performance seen without a GPU: the CPU harness's memory profiler (csrc/cudasim/profile.cpp)
on kernels whose counts are known, the whole-network kernels held to the memory efficiency their
design claims, the shared memory each launch asks for held to the blocks per SM its launch bounds
promise, and the predicted-time model (lenet_fast.bench.gpu_model) on its committed inputs."""
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cudasim

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
_spec = importlib.util.spec_from_file_location("gpu_profile", ROOT / "benchmarks" / "gpu_profile.py")
gpu_profile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_profile)

from lenet_fast.bench import gpu_model  # noqa: E402

needs_clang = pytest.mark.skipif(shutil.which(cudasim.CLANG) is None,
                                 reason=f"{cudasim.CLANG} not found (apt-get install clang-16; LENET_FAST_CLANG names another)")
pytestmark = [pytest.mark.cudasim]

# The whole-network kernels' design (csrc/kernels/cuda/lenet5.cu): blocks per SM each launch must
# be able to hold, by registers and shared memory together, per architecture. The 8-image forward
# block takes 97 KB of shared memory: two fit in an H100/H200 SM (228 KB), one in an A100's (164 KB).
DESIGN_BLOCKS_PER_SM = {
    "sm_90": {"net_forward_kernel<8": 2, "net_forward_kernel<1": 2, "net_backward_data_kernel": 2,
              "net_weight_grad_kernel": 2, "net_reduce_kernel": 2},
    "sm_80": {"net_forward_kernel<8": 1, "net_forward_kernel<1": 2, "net_backward_data_kernel": 2,
              "net_weight_grad_kernel": 2, "net_reduce_kernel": 2},
}
# What the design claims for its memory traffic (the targets): sectors the lanes need over
# sectors moved, per kernel; and wavefronts per request of any shared access a kernel repeats.
MIN_GLOBAL_EFFICIENCY = 0.80
MAX_WAVEFRONTS_PER_REQUEST = 2.0  # over every site with 1% or more of its kernel's shared requests
MAX_SECTORS_OVER_IDEAL = 2.0  # every site with 1% or more of its kernel's global requests


# ---- the profiler on kernels with known answers ------------------------------------------------

@pytest.fixture(scope="module")
def selftest(tmp_path_factory):
    where = tmp_path_factory.mktemp("profile_selftest")
    allow = where / "instrument.txt"
    allow.write_text("src:*profile_selftest.cpp\nfun:*\n")
    exe = where / "profile_selftest"
    cmd = [cudasim.CLANG, "-std=c++20", "-O2", "-g", "-DLENET_FAST_CUDASIM", *cudasim.PROFILE_CFLAGS,
           f"-fsanitize-coverage-allowlist={allow}", f"-I{ROOT / 'csrc'}",
           str(ROOT / "tests" / "cudasim" / "profile_selftest.cpp"), str(ROOT / "csrc" / "cudasim" / "profile.cpp"),
           "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    env = dict(os.environ, LENET_FAST_CUDASIM_MODE="fibers", LENET_FAST_CUDASIM_ORDER="forward")
    r = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return {L["label"]: L for line in r.stdout.splitlines() for L in json.loads(line)["launches"]}


def _only(launch, space, op):
    sites = [s for s in launch["sites"] if s["space"] == space and s["op"] == op]
    assert len(sites) == 1, f"{launch['label']}: {space} {op} sites: {sites}"
    return sites[0]


@needs_clang
def test_coalesced_copy_moves_4_sectors_per_request(selftest):
    L = selftest["coalesced_copy"]
    for op in ("load", "store"):
        s = _only(L, "global", op)
        assert s["requests"] == 32 and s["lanes"] == 1024 and s["sectors"] == 4 * 32 and s["bytes"] == 4096
    assert L["dram_read_bytes"] == 4096 and L["dram_write_bytes"] == 4096
    assert not [s for s in L["sites"] if s["space"] == "shared"]


@needs_clang
def test_stride_32_read_moves_a_sector_per_lane(selftest):
    s = _only(selftest["strided_read"], "global", "load")
    assert s["requests"] == 32 and s["sectors"] == 32 * 32 and s["bytes"] == 4096
    assert selftest["strided_read"]["dram_read_bytes"] == 1024 * 32


@needs_clang
def test_column_read_of_a_32x32_tile_is_32_way_without_padding_and_1_way_with(selftest):
    unpadded = selftest["transpose_unpadded"]
    assert _only(unpadded, "shared", "store")["wavefronts"] == 32  # rows: conflict-free
    assert _only(unpadded, "shared", "load")["wavefronts"] == 32 * 32  # a column: every lane in bank x
    padded = selftest["transpose_padded"]  # dynamic shared memory, rows of 33
    assert _only(padded, "shared", "store")["wavefronts"] == 32
    assert _only(padded, "shared", "load")["wavefronts"] == 32
    assert unpadded["barriers"] == 1 and padded["barriers"] == 1


@needs_clang
def test_broadcast_is_one_sector_and_one_wavefront(selftest):
    L = selftest["broadcast"]
    shared_load = _only(L, "shared", "load")
    assert shared_load["requests"] == 2 and shared_load["wavefronts"] == 2 and shared_load["lanes"] == 64
    global_loads = sorted((s for s in L["sites"] if s["space"] == "global" and s["op"] == "load"),
                          key=lambda s: s["lanes"])
    assert [(s["requests"], s["sectors"]) for s in global_loads] == [(1, 1), (2, 2)]  # thread 0's, everyone's


@needs_clang
def test_8_byte_shared_accesses_go_in_half_warp_phases(selftest):
    loads = sorted((s for s in selftest["wide_shared"]["sites"] if s["space"] == "shared" and s["op"] == "load"),
                   key=lambda s: s["wavefronts"])
    assert [(s["size"], s["requests"], s["wavefronts"]) for s in loads] == [(8, 1, 2), (8, 1, 4)]


@needs_clang
def test_a_sector_written_then_read_costs_dram_its_write_only(selftest):
    L = selftest["write_then_read"]
    assert L["dram_write_bytes"] == 4096 and L["dram_read_bytes"] == 0
    assert _only(L, "global", "load")["sectors"] == 4 * 32  # the requests still reach memory (L2)


@needs_clang
def test_a_sampled_grid_counts_what_every_block_reads_once(selftest):
    L = selftest["weights_and_slices"]
    assert (L["blocks"], L["grid_blocks"]) == (4, 32)
    # 64 weights (8 sectors) read by every block; the 4 blocks' inputs, floats 0..243 (31 sectors),
    # of which the 3 sectors two neighbours share do not count as grid-wide.
    assert L["dram_read_bytes"] == 32 * (8 + 31) and L["dram_read_shared_bytes"] == 32 * 8
    assert L["dram_write_bytes"] == 4 * 256 and L["dram_write_shared_bytes"] == 0


@needs_clang
def test_harness_work_and_locals_are_not_counted(selftest):
    L = selftest["no_memory"]  # indices, a barrier, a shuffle, a local array: no memory traffic
    assert L["sites"] == [] and L["local_accesses"] > 0 and L["dram_read_bytes"] == 0


@needs_clang
def test_basic_blocks_are_counted_per_lane_and_per_warp(selftest):
    L = selftest["broadcast"]  # 64 threads: the `if (threadIdx.x == 0)` block runs once, in one warp
    runs = sorted((lane, warp) for _, lane, warp in L["guards"])
    assert (1, 1) in runs and (64, 2) in runs


# ---- the whole-network kernels -----------------------------------------------------------------

@pytest.fixture(scope="module")
def fresh_profile():
    if shutil.which(cudasim.CLANG) is None:
        pytest.skip(f"{cudasim.CLANG} not found")
    return gpu_profile.profile()


def _kernels(profile, whole_network_only=False):
    for name, w in profile["workloads"].items():
        if whole_network_only and name not in gpu_profile.WORKLOADS:
            continue
        for k in w["launches"]:
            yield name, k


@pytest.mark.slow
def test_whole_network_global_memory_is_coalesced(fresh_profile):
    low = [(w, k["kernel"][:60], k["global"]["efficiency"]) for w, k in _kernels(fresh_profile, True)
           if k["global"]["efficiency"] is not None and k["global"]["efficiency"] < MIN_GLOBAL_EFFICIENCY]
    assert not low, f"global memory efficiency under {MIN_GLOBAL_EFFICIENCY:.0%}: {low}"


def _worst_hot_sites_over(profile, space, figure, bound):
    """The whole-network launches whose worst hot site in `space` has `figure` over `bound`."""
    return [(w, k["kernel"][:40], k["worst_hot_site"][space]) for w, k in _kernels(profile, True)
            if space in k["worst_hot_site"] and k["worst_hot_site"][space][figure] > bound]


@pytest.mark.slow
def test_whole_network_hot_global_sites_move_at_most_twice_the_sectors_they_need(fresh_profile):
    """Per site, not only per kernel: one scattered access must not hide behind the rest's traffic
    (a lane a sector is 8 times what 32 floats need; a window's pixel pairs, 1.2)."""
    bad = _worst_hot_sites_over(fresh_profile, "global", "sectors_over_ideal", MAX_SECTORS_OVER_IDEAL)
    assert not bad, f"hot global sites moving over {MAX_SECTORS_OVER_IDEAL:g}x the sectors they need: {bad}"


@pytest.mark.slow
def test_whole_network_hot_shared_accesses_are_at_most_2_way(fresh_profile):
    bad = _worst_hot_sites_over(fresh_profile, "shared", "wavefronts_per_request", MAX_WAVEFRONTS_PER_REQUEST)
    assert not bad, f"shared-memory accesses over {MAX_WAVEFRONTS_PER_REQUEST:g}-way in a hot loop: {bad}"


@pytest.mark.slow
def test_every_sm_has_work_at_batch_64(fresh_profile):
    """At batch 64 each whole-network kernel's grid gives at least one block per image (the H200 has
    132 SMs; 16 blocks of 4 images left 116 of them idle)."""
    for w, k in _kernels(fresh_profile, True):
        if fresh_profile["workloads"][w]["batch"] == 64:
            assert k["blocks"] >= 64, (w, k["kernel"][:60], k["blocks"])


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(DESIGN_BLOCKS_PER_SM))
def test_launches_fit_the_blocks_per_sm_their_design_assumes(fresh_profile, arch):
    res = {gpu_profile.kernel_key(k["kernel"]).replace("lenet_fast::cuda::(anonymous namespace)::", ""): k
           for k in json.loads((RESULTS / f"cuda-resources-{arch}.json").read_text())["kernels"]}
    limits = dict(gpu_model.ASSUMPTIONS, shared_bytes_per_sm=json.loads(
        (RESULTS / f"cuda-resources-{arch}.json").read_text())["limits"]["shared_bytes"])
    short = []
    for shape in fresh_profile["launch_shapes"]:
        design = next(v for k, v in DESIGN_BLOCKS_PER_SM[arch].items() if shape["kernel"].startswith(k))
        r = res[shape["kernel"]]
        held, by = gpu_model.blocks_per_sm(dict(shape, registers=r["registers"],
                                                static_shared_bytes=r["static_shared_bytes"]), limits)
        if held < design:
            short.append((shape["kernel"][:60], shape["dynamic_shared_bytes"], r["registers"], held, by, design))
    assert not short, f"{arch}: launches that cannot hold the blocks per SM of their design: {short}"


@pytest.mark.slow
def test_committed_profile_is_this_source(fresh_profile):
    committed = json.loads((RESULTS / "cudasim-profile.json").read_text())
    if committed["compiler"] != fresh_profile["compiler"]:
        pytest.skip(f"committed with {committed['compiler']}, this is {fresh_profile['compiler']}")

    def figures(p):
        return {(w, k["kernel"]): (k["blocks"], k["dynamic_shared_bytes"], k["global"], k["shared"], k["fmas"],
                                   k["fp32_instructions"], k["warp_instructions"], k["busiest_warp"])
                for w, k in _kernels(p)}
    assert figures(committed) == figures(fresh_profile), (
        "benchmarks/results/cudasim-profile.json is not this source's: rerun python benchmarks/gpu_profile.py, "
        "then python -m lenet_fast.bench --gpu-model --json benchmarks/results/gpu-model-h200.json, and commit both")


# ---- the model -----------------------------------------------------------------------------------

def _kernel(**over):
    k = {"kernel": "k", "blocks": 132 * 4, "threads_per_block": 256, "dynamic_shared_bytes": 0, "registers": 32,
         "static_shared_bytes": 0, "global": {"dram_read_bytes": 0, "dram_write_bytes": 0},
         "shared": {"wavefronts": 0}, "fp32_warp_instructions": 0, "warp_instructions": 0,
         "busiest_warp": {"instructions": 0, "global_requests": 0, "shared_requests": 0}}
    k.update(over)
    return k


def test_model_of_a_copy_is_bandwidth_bound():
    a = gpu_model.ASSUMPTIONS
    p = gpu_model.predict_kernel(_kernel(**{"global": {"dram_read_bytes": 4e9, "dram_write_bytes": 4e9}}))
    assert p["limiter"] == "dram"
    assert math.isclose(p["predicted_us"], 8e9 / a["hbm_bytes_per_s"] * 1e6 + a["launch_us"], rel_tol=1e-6)


def test_model_occupancy_and_waves():
    # 100 KB of shared memory: 2 blocks per SM on sm_90; 132 * 2 blocks a wave.
    p = gpu_model.predict_kernel(_kernel(dynamic_shared_bytes=100 * 1024, blocks=132 * 2 * 3 + 1,
                                         fp32_warp_instructions=4 * 132 * 1.98e9 * 1e-3))
    assert (p["blocks_per_sm"], p["blocks_per_sm_limited_by"], p["waves"]) == (2, "shared memory", 4)
    assert p["limiter"] == "fp32" and math.isclose(p["times_us"]["fp32"], 1000, rel_tol=1e-3)
    # 128 registers a thread: 65536 / (128 * 256) = 2 blocks.
    assert gpu_model.blocks_per_sm(_kernel(registers=128)) == (2, "registers")
    with pytest.raises(ValueError, match="does not fit"):
        gpu_model.predict_kernel(_kernel(dynamic_shared_bytes=300 * 1024))


def test_model_reads_the_committed_profile_and_gives_the_committed_prediction(tmp_path):
    out = tmp_path / "model.json"
    from lenet_fast.bench import main

    main(["--gpu-model", "--profile", str(RESULTS / "cudasim-profile.json"), "--json", str(out)])
    got = json.loads(out.read_text())
    assert set(got["predicted"]) == {"inference_65536_images_per_s", "forward_backward_64_us",
                                     "layers_forward_backward_64_us"}
    assert got == json.loads((RESULTS / "gpu-model-h200.json").read_text()), (
        "benchmarks/results/gpu-model-h200.json is not the model of the committed profile: rerun "
        "python -m lenet_fast.bench --gpu-model --json benchmarks/results/gpu-model-h200.json")


def test_readme_predicted_table_is_the_committed_one():
    profile = json.loads((RESULTS / "cudasim-profile.json").read_text())
    prediction = gpu_model.predict(profile)
    assert gpu_model.table(profile, prediction) in (ROOT / "README.md").read_text(), (
        "README's predicted-time table is not the committed model's: paste python -m lenet_fast.bench --gpu-model's table")
