#!/usr/bin/env bash
# Installs everything lenet_fast needs on a fresh machine of this project (Debian, Python 3.11,
# nvcc at /usr/local/cuda, no GPU needed) and builds the extension with its CUDA kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
export PATH="$CUDA_HOME/bin:$PATH"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# clang-16: the CUDA harness's profiling build (tests/cudasim.py, benchmarks/gpu_profile.py).
# valgrind: a CPU without AVX-512 for the dispatch test (tests/test_cpu_isa.py), and callgrind's
# instruction counts (benchmarks/step_breakdown.py).
if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || ! command -v cmake >/dev/null || ! command -v clang++-16 >/dev/null ||
   ! command -v valgrind >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist cmake g++ clang-16 valgrind >/dev/null
fi
python3 -m pip install -q -r requirements-dev.txt
# --no-build-isolation: build against the torch installed above (an isolated build would fetch
# another torch and produce an extension that does not match the one you run).
python3 -m pip install -v --no-build-isolation --no-deps . > /tmp/lenet_fast_build.log 2>&1 || {
  tail -n 80 /tmp/lenet_fast_build.log; exit 1; }
grep -m1 "lenet_fast: CUDA kernels" /tmp/lenet_fast_build.log || true
