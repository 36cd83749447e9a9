#!/usr/bin/env bash
# CI's second end of the supported range: the oldest torch lenet_fast supports (2.11.0, which is
# also the GPU machine's) on Python 3.12, in its own virtual environment, as a CPU-only build
# (LENET_FAST_FORCE_CPU=1), then the test suite. The first end is .ci/run's main build
# (torch 2.14.1, Python 3.11, with the CUDA kernels).
#
#   bash scripts/ci_oldest_torch.sh [VENV]     # default VENV: /tmp/lenet_fast-oldest-torch
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-/tmp/lenet_fast-oldest-torch}"
TORCH=2.11.0 TORCHVISION=0.26.0
export PIP_DISABLE_PIP_VERSION_CHECK=1

PY312="$(command -v python3.12 2>/dev/null || true)"
if [ -z "$PY312" ] || ! "$PY312" -V >/dev/null 2>&1; then
  PY312="$(ls -d "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.12*/bin/python3.12 2>/dev/null | tail -n 1)"
fi
[ -x "$PY312" ] || { echo "ci_oldest_torch: no Python 3.12 found (pyenv install 3.12)"; exit 1; }
[ -x "$VENV/bin/python" ] || "$PY312" -m venv "$VENV"
PY="$VENV/bin/python"
# torch 2.11.0 for Python 3.12 comes from PyPI (the machine's disk holds only 2.13/2.14 for 3.11).
# numpy < 2.4: the Triton 3.6 that torch 2.11 brings cannot interpret a loop with a run-time bound
# under NumPy 2.4+ (int() of a 1-element array), which the CPU tests of the Triton kernels need.
"$PY" -m pip install -q "torch==$TORCH" "torchvision==$TORCHVISION" "numpy<2.4" tqdm matplotlib pytest \
  pytest-benchmark ninja "setuptools>=64" wheel onnx==1.23.2 onnxscript==0.7.2 \
  onnxruntime==1.32.0 2>&1 | grep -v "^WARNING: Location" || true
"$PY" -c "import torch, sys; v = torch.__version__.split('+')[0]; sys.exit(0 if v == '$TORCH' else f'expected torch $TORCH, got {v}')"
LENET_FAST_FORCE_CPU=1 "$PY" -m pip install -v --no-build-isolation --no-deps . > /tmp/lenet_fast_oldest_build.log 2>&1 || {
  tail -n 60 /tmp/lenet_fast_oldest_build.log; exit 1; }
(cd /tmp && "$PY" -m lenet_fast.info)
# Everything but the CUDA-kernel simulations, which test the same kernels as the main run; one of
# them still builds the simulated CUDA ops, i.e. csrc/ops/cuda/*.cpp against torch 2.11's headers
# (the GPU machine's).
"$PY" -P -m pytest tests benchmarks -q --benchmark-disable -p no:cacheprovider -m "not cudasim"
"$PY" -P -m pytest tests/test_cudasim.py -q -p no:cacheprovider -k "kernels_really_ran or whole_network and forward-17"
