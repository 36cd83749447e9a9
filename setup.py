"""Build lenet_fast's C++ (always) and CUDA (wherever nvcc and a CUDA build of torch exist) kernels.

    pip install --no-build-isolation .

Environment:
    LENET_FAST_FORCE_CPU=1   build the C++ kernels only, even where CUDA could be built
    TORCH_CUDA_ARCH_LIST     CUDA targets (default "8.0;9.0+PTX": A100, H100/H200, PTX for newer)
    MAX_JOBS                 parallel compile jobs (default: cores, capped by memory)
    LENET_FAST_DEBUG=1       -O0 -g, for debugging the kernels
"""
import os
import re
from pathlib import Path

from setuptools import setup

import torch
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = Path(__file__).parent
VERSION = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
DEFAULT_ARCHS = "8.0;9.0+PTX"


def want_cuda():
    if os.environ.get("LENET_FAST_FORCE_CPU", "0") == "1":
        return False, "LENET_FAST_FORCE_CPU=1"
    if torch.version.cuda is None:
        return False, "this torch is a CPU-only build"
    if CUDA_HOME is None or not (Path(CUDA_HOME) / "bin" / "nvcc").exists():
        return False, "nvcc not found (set CUDA_HOME)"
    return True, f"nvcc in {CUDA_HOME}, torch built with CUDA {torch.version.cuda}"


def default_jobs():
    cores = os.cpu_count() or 1
    try:  # nvcc on these kernels peaks near 1.5 GB per job
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        return max(1, min(cores, int(mem_gb / 1.5)))
    except (ValueError, OSError, AttributeError):
        return cores


def extensions():
    with_cuda, why = want_cuda()
    print(f"lenet_fast: CUDA kernels {'ON' if with_cuda else 'OFF'} ({why})")
    debug = os.environ.get("LENET_FAST_DEBUG", "0") == "1"
    opt = ["-O0", "-g"] if debug else ["-O3"]
    # -ffp-contract=fast lets the vector kernels use FMA (ISO C++ mode turns contraction off);
    # OpenMP because at::parallel_for's OpenMP backend is header code compiled into this library.
    cxx = opt + ["-std=c++20", "-ffp-contract=fast", "-fopenmp", "-Wall", "-Wno-psabi"]
    csrc = ROOT / "csrc"
    # csrc/kernels: torch-free kernels; csrc/ops: the torch ops around them (README, "Layout").
    sources = [*sorted(s for s in (csrc / "ops").glob("*.cpp") if s.name != "no_cuda.cpp"),
               *sorted((csrc / "ops" / "cpu").glob("*.cpp")), *sorted((csrc / "kernels" / "cpu").glob("*.cpp"))]
    macros = [
        ("LENET_FAST_VERSION", f'"{VERSION}"'),
        ("LENET_FAST_BUILD_TORCH", f'"{torch.__version__}"'),
    ]
    kwargs = dict(extra_link_args=["-fopenmp"], include_dirs=[str(csrc)])
    if with_cuda:
        archs = os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS)
        # the kernels and their launchers (.cu, torch-free), and the torch side of the CUDA ops
        sources += [*sorted((csrc / "kernels" / "cuda").glob("*.cu")), *sorted((csrc / "ops" / "cuda").glob("*.cpp"))]
        macros += [
            ("LENET_FAST_WITH_CUDA", None),
            ("LENET_FAST_BUILD_CUDA", f'"{torch.version.cuda}"'),
            ("LENET_FAST_CUDA_ARCHS", f'"{archs}"'),
        ]
        nvcc = opt + ["-std=c++20", "-lineinfo"] if not debug else ["-O0", "-g", "-G", "-std=c++20"]
        ext = CUDAExtension(
            "lenet_fast._C",
            [str(s.relative_to(ROOT)) for s in sources],
            define_macros=macros,
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            **kwargs,
        )
    else:
        sources.append(csrc / "ops" / "no_cuda.cpp")
        ext = CppExtension(
            "lenet_fast._C",
            [str(s.relative_to(ROOT)) for s in sources],
            define_macros=macros,
            extra_compile_args={"cxx": cxx},
            **kwargs,
        )
    return [ext]


os.environ.setdefault("MAX_JOBS", str(default_jobs()))

setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
