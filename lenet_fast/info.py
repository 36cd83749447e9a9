"""What this lenet_fast build is: the first thing to paste into a bug report.

    python -m lenet_fast.info
"""
import os
import platform

import torch

import lenet_fast


def report() -> str:
    b = lenet_fast.build_info()
    gpu = "none visible"
    if torch.cuda.is_available():
        gpu = ", ".join(
            f"{torch.cuda.get_device_name(i)} (sm_{''.join(map(str, torch.cuda.get_device_capability(i)))})"
            for i in range(torch.cuda.device_count())
        )
    rows = [
        ("lenet_fast", f"{lenet_fast.__version__} (compiled as {b['version']})"),
        ("torch", f"{torch.__version__} (built against {b['torch']})"),
        ("torch CUDA", torch.version.cuda or "none (CPU-only torch)"),
        ("CUDA kernels", "compiled" if b["with_cuda"] else "not compiled (CPU-only build)"),
        ("CUDA archs", b["cuda_archs"] or "-"),
        ("built with CUDA", b["cuda"] or "-"),
        ("GPU", gpu),
        ("CUDA kernels usable", "yes" if lenet_fast.cuda_available() else "no"),
        ("CPU kernels", f"{b['cpu_isa']} (available: {b['cpu_isas_available']}; LENET_FAST_CPU_ISA={os.environ.get('LENET_FAST_CPU_ISA', '')!r})"),
        ("CPU", f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"),
        ("python", platform.python_version()),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


if __name__ == "__main__":
    print(report())
