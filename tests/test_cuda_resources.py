"""The CUDA kernels' resources, from the compiler, without a GPU (benchmarks/cuda_resources.py):
every kernel instantiation compiled for sm_90 (H100/H200) and sm_80 (A100) must keep to its design:
no register spills, no local-memory stack in the whole-network kernels, the block size every
launcher uses declared in __launch_bounds__, and registers that allow the blocks per SM those
bounds promise. Also: the committed tables in benchmarks/results/ are this source's."""
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("cuda_resources", ROOT / "benchmarks" / "cuda_resources.py")
cuda_resources = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cuda_resources)

pytestmark = [pytest.mark.slow,  # ~30 s of nvcc per architecture on 2 cores
              pytest.mark.skipif(cuda_resources.nvcc() is None, reason="nvcc not found (set CUDA_HOME)")]
BLOCK = 256  # every launcher's block: kThreads, or gemm's kTile x kTile


@pytest.fixture(scope="module", params=cuda_resources.ARCHS)
def table(request):
    return cuda_resources.collect(request.param)


def test_every_kernel_was_read(table):
    names = {re.search(r"(\w+_kernel)\b", k["kernel"]).group(1) for k in table["kernels"]}
    assert {"net_forward_kernel", "net_backward_data_kernel", "net_weight_grad_kernel", "net_reduce_kernel",
            "conv5x5_forward_kernel", "gemm_kernel"} <= names
    assert all("registers" in k and "spill_stores" in k for k in table["kernels"])


def test_no_kernel_spills(table):
    spilling = [(k["kernel"][:120], k["spill_stores"], k["spill_loads"]) for k in table["kernels"]
                if k["spill_stores"] or k["spill_loads"]]
    assert not spilling, f"{table['arch']}: kernels spill registers: {spilling}"


def test_whole_network_kernels_keep_no_stack(table):
    stacked = [(k["kernel"][:120], k["stack_frame"]) for k in table["kernels"]
               if k["file"].endswith("lenet5.cu") and k["stack_frame"]]
    assert not stacked, f"{table['arch']}: whole-network kernels with a local-memory stack frame: {stacked}"


def test_every_kernel_declares_the_block_size_it_is_launched_with(table):
    wrong = [(k["kernel"][:120], k["max_threads"]) for k in table["kernels"] if k["max_threads"] != BLOCK]
    assert not wrong, f"{table['arch']}: kernels without __launch_bounds__({BLOCK}): {wrong}"


def test_registers_allow_the_blocks_per_sm_the_launch_bounds_promise(table):
    short = [(k["kernel"][:120], k["registers"], k["blocks_per_sm_by_registers"], k["min_blocks_per_sm"])
             for k in table["kernels"] if k["blocks_per_sm_by_registers"] < (k["min_blocks_per_sm"] or 1)]
    assert not short, f"{table['arch']}: too many registers for the blocks per SM promised: {short}"


def test_committed_table_is_this_source(table):
    path = ROOT / "benchmarks" / "results" / f"cuda-resources-{table['arch']}.json"
    committed = json.loads(path.read_text())
    if committed["nvcc"] != table["nvcc"]:
        pytest.skip(f"committed with {committed['nvcc']}, this is {table['nvcc']}")
    fields = ("registers", "stack_frame", "spill_stores", "spill_loads", "static_shared_bytes", "max_threads",
              "min_blocks_per_sm")
    def key(t):
        return {k["kernel"]: tuple(k.get(f) for f in fields) for k in t["kernels"]}  # (mangled names hash the path)
    assert key(committed) == key(table), (f"{path.name} is not this source's: rerun python "
                                          "benchmarks/cuda_resources.py and commit the result")
