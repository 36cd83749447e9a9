"""The benchmark suite under pytest-benchmark: one group per case, so the table sets the contenders
of each case side by side.

    pytest benchmarks/                              # the quick set, on CPU (and CUDA when present)
    LENET_FAST_BENCH_FULL=1 pytest benchmarks/      # every case
    pytest benchmarks/ --benchmark-disable          # each contender untimed, its results checked (CI)
    pytest benchmarks/ --benchmark-json out.json --benchmark-group-by group

Cases and contenders are lenet_fast.bench's (see its docstring). pytest-benchmark times one
contender after another rather than interleaved, and on CUDA each call ends with a synchronize
(its clock is the host's), so for quoted ratios use `python -m lenet_fast.bench`, which
interleaves the contenders and times GPU work with CUDA events. Timed or not, each contender's
first results are checked (finite, shaped as the case says, stock eager's from the same inputs and
weights), so that a contender that computes something else fails instead of being timed.
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
CHECKED_CALLS = 2  # a training step's second loss tells whether its first step updated the weights alike


def _outputs(out):
    return [t.detach().clone() for t in (out if isinstance(out, tuple) else (out,))]


def _contenders(device, case):
    """(the case's contenders, stock eager's outputs of its first CHECKED_CALLS calls)."""
    key = (str(device), case.name, case.batch)
    if key not in _built:
        _built.clear()
        torch._dynamo.reset()
        fns = case.build(case.batch, device, bench.compile_modes(device))
        _built[key] = fns, [_outputs(fns[bench.EAGER]()) for _ in range(CHECKED_CALLS)]
    return _built[key]


def _shapes(case):
    """What one call of a contender returns: logits, a loss, an op's output or its gradients."""
    if case.kind == "model":
        return [(case.batch, 10)]
    if case.kind == "train":
        return [()]
    op, _, mode = case.name.rpartition(" ")
    in_shape, w_shape, padding, _, input_grad = bench.OPS[op]
    if mode == "fwd+bwd":  # the gradients of the inputs that need one: x (but conv1's), w, b
        return [(case.batch, *in_shape)] * input_grad + [w_shape, w_shape[:1]]
    if padding is None:
        return [(case.batch, w_shape[0])]
    side = (in_shape[-1] + 2 * padding - 4) // 2
    return [(case.batch, w_shape[0], side, side)]


def _check(case, contender, got, want=None):
    """The contender's result: finite, shaped as the case says, and (want: stock eager's from the
    same inputs and weights) stock eager's to the tolerances of tests/test_bench.py."""
    assert [tuple(t.shape) for t in got] == _shapes(case), contender
    assert all(g.isfinite().all() for g in got), contender
    for g, w in zip(got, want or ()):
        atol = 1e-4 if case.kind == "op" else 1e-5
        if case.name.endswith("fwd+bwd"):
            # Weight gradients are sums over the batch, each contender's in its own order: their
            # float32 rounding differs by about sqrt(batch) x 1e-6 of the largest of them.
            atol = max(atol, 4e-6 * case.batch**0.5 * w.abs().max().item())
        torch.testing.assert_close(g, w, rtol=1e-4, atol=atol,
                                   msg=lambda m: f"{case.name} {case.batch} {contender}: {m}")


@pytest.mark.parametrize("device,case,contender", list(_params()))
def test_bench(benchmark, device, case, contender):
    fns, want = _contenders(device, case)
    fn = fns[contender]
    for i in range(3):  # warm-up; compiles the torch.compile contenders
        out = fn()
        # The first calls, checked against stock eager's first (stock eager's own calls here come
        # after those). The CUDA graph of the training step returns nothing and has taken steps
        # while it was captured; tests/test_graphs.py checks its steps against eager ones.
        if contender == bench.EAGER:
            _check(case, contender, _outputs(out))
        elif i < CHECKED_CALLS and contender != bench.GRAPH:
            _check(case, contender, _outputs(out), want[i])
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
