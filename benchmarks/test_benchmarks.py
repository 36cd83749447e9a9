"""The benchmark suite under pytest-benchmark: one group per case, so the table sets the contenders
of each case side by side.

    pytest benchmarks/                              # the quick set, on CPU (and CUDA when present)
    LENET_FAST_BENCH_FULL=1 pytest benchmarks/      # every case
    pytest benchmarks/ --benchmark-disable          # each contender once, untimed (what CI runs)
    pytest benchmarks/ --benchmark-json out.json --benchmark-group-by group

Cases and contenders are lenet_fast.bench's (see its docstring). pytest-benchmark times one
contender after another rather than interleaved, and on CUDA each call ends with a synchronize
(its clock is the host's), so for quoted ratios use `python -m lenet_fast.bench`, which
interleaves the contenders and times GPU work with CUDA events.
"""
import os

import pytest
import torch

import lenet_fast
from lenet_fast import bench

FULL = os.environ.get("LENET_FAST_BENCH_FULL") == "1"
DEVICES = [torch.device("cpu")] + ([torch.device("cuda")] if lenet_fast.cuda_available() else [])


def _params():
    for device in DEVICES:
        modes = bench.compile_modes(device)
        for case in bench.cases(device, FULL):
            for name in bench.contender_names(case, device, modes):
                yield pytest.param(device, case, name, id=f"{device.type}-{case.name}-{case.batch}-{name}".replace(" ", "_"))


_built = {}  # the case being benchmarked: its contenders share inputs and weights


def _contenders(device, case):
    key = (str(device), case.name, case.batch)
    if key not in _built:
        _built.clear()
        torch._dynamo.reset()
        _built[key] = case.build(case.batch, device, bench.compile_modes(device))
    return _built[key]


@pytest.mark.parametrize("device,case,contender", list(_params()))
def test_bench(benchmark, device, case, contender):
    fn = _contenders(device, case)[contender]
    for _ in range(3):  # warm-up; compiles the torch.compile contenders
        fn()
    if device.type == "cuda":
        inner = fn

        def fn():
            inner()
            torch.cuda.synchronize(device)

    benchmark.group = f"{device.type} {case.name} batch {case.batch}"
    benchmark.extra_info.update(batch=case.batch, flops_per_image=case.flops, contender=contender)
    benchmark(fn)
    if benchmark.stats is not None:  # None under --benchmark-disable (each call runs once, untimed)
        median = benchmark.stats.stats.median
        benchmark.extra_info.update(images_per_s=case.batch / median, gflops=case.batch * case.flops / median / 1e9)
