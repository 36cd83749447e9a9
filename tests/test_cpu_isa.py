"""The CPU kernel variants: every ISA compiled in is either run here or skipped with the reason;
the default is the best this CPU has; LENET_FAST_CPU_ISA forces one, the baseline included.
(Every op test runs once per runnable ISA through the cpu_isa fixture; this file covers what is
ISA-specific: the choice, and the vector tails, which AVX-512 handles with masked loads and stores
and the other ISAs without.)"""
import os
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import CPU_ISAS
from helpers import compare_with_stock
from lenet_fast import _C, ops
from lenet_fast.bench.report import _cpu_flags

ALL_ISAS = ["avx512", "avx2", "baseline"]  # best first, as the dispatcher ranks them
NEEDS = {"avx512": {"avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"}, "avx2": {"avx2", "fma"},
         "baseline": set()}


@pytest.mark.parametrize("isa", ALL_ISAS)
def test_isa_runs_where_the_cpu_has_it(isa):
    flags = _cpu_flags()  # empty where /proc/cpuinfo says nothing
    if isa not in CPU_ISAS:
        missing = sorted(NEEDS[isa] - flags) if flags else "unknown (no flags in /proc/cpuinfo)"
        if flags and not missing:
            pytest.fail(f"{isa}: the CPU has every flag it needs, yet the build does not offer it ({CPU_ISAS})")
        pytest.skip(f"{isa} kernels not run here: this CPU lacks {missing}")
    if flags:
        assert NEEDS[isa] <= flags, f"{isa} offered on a CPU without {sorted(NEEDS[isa] - flags)}"


def test_default_is_the_best_isa_here(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LENET_FAST_CPU_ISA"}
    out = subprocess.run([sys.executable, "-c", "from lenet_fast import _C; print(_C.cpu_isa())"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert out == CPU_ISAS[0], f"default {out!r}, best available {CPU_ISAS[0]!r} of {CPU_ISAS}"


@pytest.mark.parametrize("isa", CPU_ISAS)
def test_environment_forces_an_isa_for_a_training_step(isa, tmp_path):
    """A forced variant (baseline too: what a CPU without AVX2 runs) gives stock's logits and
    gradients, in a fresh process (run from outside the source tree, so the installed package is
    imported) where the choice is made at import, as users make it."""
    code = (
        "import sys, torch\n"
        f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "from helpers import compare_model_with_stock\n"
        "from lenet_fast import LeNet5, _C\n"
        "from lenet_fast.reference import TorchLeNet5\n"
        "torch.manual_seed(0)\n"
        "m = LeNet5(); s = TorchLeNet5(); s.load_state_dict(m.state_dict())\n"
        "compare_model_with_stock(m, s, torch.randn(37, 1, 28, 28), 'forced ISA')\n"
        "print(_C.cpu_isa())\n"
    )
    env = dict(os.environ, LENET_FAST_CPU_ISA=isa)
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == isa


@pytest.mark.slow
def test_a_cpu_without_avx512_never_runs_its_code(tmp_path):
    """Under valgrind, which reports a CPU without AVX-512 (as a Zen 3 machine is) and stops at the
    first AVX-512 instruction, importing lenet_fast and training a step picks avx2 and runs none of
    the AVX-512 build: the dispatcher asks the CPU before it touches that ISA's code (the avx512
    table itself is built by AVX-512 code, an illegal instruction there)."""
    if not shutil.which("valgrind"):
        pytest.skip("valgrind is not installed (scripts/setup.sh installs it)")
    code = ("import torch, torch.nn.functional as F\n"
            "from lenet_fast import LeNet5, _C\n"
            "m = LeNet5(); x = torch.randn(3, 1, 28, 28)\n"
            "F.cross_entropy(m(x), torch.tensor([1, 2, 3])).backward()\n"
            "print(_C.cpu_isas(), _C.cpu_isa(), bool(torch.isfinite(m.conv1.weight.grad).all()))\n")
    env = {k: v for k, v in os.environ.items() if k != "LENET_FAST_CPU_ISA"}
    r = subprocess.run(["valgrind", "--tool=none", "-q", sys.executable, "-c", code], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    isas, active, finite = r.stdout.split()
    assert "avx512" not in isas.split(",") and active != "avx512" and finite == "True", r.stdout


def test_unsupported_isa_is_refused_by_name():
    with pytest.raises(Exception, match="avx1024"):
        _C.set_cpu_isa("avx1024")


# Widths around every vector length (8, 16) and the register tiles: each kernel family's masked or
# scalar tails, at the first and last lanes.
TAILS = [1, 2, 7, 8, 9, 15, 16, 17, 23, 31, 33, 47, 84, 120]


@pytest.mark.parametrize("k", TAILS)
def test_linear_tails(cpu_isa, k):
    """K is the vector dimension of linear's forward and of both gradients (dx rows, dW rows)."""
    x = torch.randn(5, k)
    w = torch.randn(7, k) / k**0.5
    b = torch.randn(7) * 0.1
    compare_with_stock(ops.linear_act, lambda *a: torch.tanh(F.linear(*a)), [x, w, b], f"linear_act K={k} [{cpu_isa}]")


@pytest.mark.parametrize("n", TAILS)
def test_activation_tails(cpu_isa, n):
    """The fc layers' activation runs over rows of n outputs: the last vector of every range is partial."""
    x = torch.randn(3, 4, 1)
    w, b = torch.randn(n, 1), torch.randn(n)
    for act in ("tanh", "relu", "leaky_relu", "sigmoid"):
        ref = {"tanh": torch.tanh, "relu": torch.relu, "leaky_relu": lambda t: F.leaky_relu(t, 0.01),
               "sigmoid": torch.sigmoid}[act]
        compare_with_stock(lambda *a: ops.linear_act(*a, act), lambda *a: ref(F.linear(*a)), [x, w, b],
                           f"linear_act {act} J={n} [{cpu_isa}]")


@pytest.mark.parametrize("width", [5, 6, 9, 12, 16, 17, 20, 24, 33, 36])
@pytest.mark.parametrize("oc", [6, 16])
def test_conv_row_tails(cpu_isa, width, oc):
    """Rows of every width: conv1's pixel lanes end each row in a partial (masked) vector, conv2's
    channel lanes in a short or shifted tile of pooling windows."""
    ic = 1 if oc == 6 else 6
    x = torch.randn(2, ic, 9, width)
    w = torch.randn(oc, ic, 5, 5) / (ic * 25) ** 0.5
    b = torch.randn(oc) * 0.1
    compare_with_stock(lambda *a: ops.conv5x5_act_pool(*a, 2), lambda x, w, b: F.avg_pool2d(torch.tanh(F.conv2d(x, w, b, padding=2)), 2),
                       [x, w, b], f"conv5x5_act_pool OC={oc} W={width} [{cpu_isa}]")


def test_contention_state_is_visible():
    """_C.cpu_contended() says whether the CPU ops run on one thread for now because other work has
    the cores (what the bench's shared-machine case and a slow step can be checked against)."""
    assert _C.cpu_contended() in (True, False)
