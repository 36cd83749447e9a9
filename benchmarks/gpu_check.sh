#!/usr/bin/env bash
# Everything GPU-related, as one command on a GPU machine with its own torch, nvcc, Triton, pytest
# and compute-sanitizer and no network:
#
#   bash benchmarks/gpu_check.sh OUTDIR        # e.g. the device tool's $OUT
#
#   1. builds lenet_fast against that machine's torch (pip --no-build-isolation --no-deps; an
#      in-place build if that fails), for the GPU's own architecture;
#   2. runs the whole test suite, CUDA tests included;
#   3. runs compute-sanitizer memcheck, then racecheck (the conv kernels use shared memory), on
#      benchmarks/sanitize_run.py: every op forward + backward at odd sizes, caching allocator off;
#   4. times the main job against the tutorial's pipeline on the GPU (benchmarks/train_speed.py);
#   5. runs python -m lenet_fast.bench --full --device cuda.
#
# Steps share a budget of LENET_FAST_CHECK_BUDGET_S seconds (default 540); each gets a cap and
# what is left, a step that fails does not stop the later ones, and summary.txt says how each
# ended. It writes 8 files (what the device tool brings back), all in OUTDIR: summary.txt,
# build.log, tests.log, sanitizer.log (memcheck, then racecheck), bench.log (training and
# benchmark output), train.json, bench.json, bench.png.
set -uo pipefail
OUT="${1:?usage: bash benchmarks/gpu_check.sh OUTDIR}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export CUDA_HOME="${CUDA_HOME:-$(dirname "$(dirname "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")")}"
export PATH="$CUDA_HOME/bin:$PATH"
PY="${PYTHON:-python3}"
BUDGET=${LENET_FAST_CHECK_BUDGET_S:-540}
START=$(date +%s)
SUMMARY="$OUT/summary.txt"
FAILED=0

note() { echo "$*" | tee -a "$SUMMARY"; }
# step NAME CAP_S LOG COMMAND...: run under min(CAP_S, budget left), log to LOG, record the outcome.
step() {
  local name=$1 cap=$2 log=$3; shift 3
  local left=$(( BUDGET - ($(date +%s) - START) ))
  local limit=$(( cap < left ? cap : left ))
  if (( limit < 15 )); then note "SKIP  $name (budget spent)"; FAILED=1; return; fi
  local t0=$(date +%s) rc
  echo "== $name" >> "$log"
  timeout -k 10 "$limit" "$@" >> "$log" 2>&1; rc=$?
  local took=$(( $(date +%s) - t0 ))
  if (( rc == 0 )); then note "PASS  $name (${took} s)";
  elif (( rc == 124 || rc == 137 )); then note "TIME  $name: stopped at its ${limit} s limit"; FAILED=1;
  else note "FAIL  $name: exit $rc after ${took} s (last lines of $(basename "$log"):)"; tail -n 15 "$log" | sed 's/^/      /' | tee -a "$SUMMARY"; FAILED=1; fi
}

: > "$SUMMARY"
for f in build tests sanitizer bench; do : > "$OUT/$f.log"; done
note "lenet_fast GPU check, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
note "GPU: $( (nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi failed") 2>&1 | head -n 1)"
note "$("$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available() and torch.cuda.get_device_name(0))' 2>&1 | tail -n 1)"
note "nvcc: $(nvcc --version 2>&1 | tail -n 2 | head -n 1)"
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  note "FAIL  no CUDA GPU visible to torch: this script is for a GPU machine"; exit 1
fi

# 1. Build for this GPU only (faster than the default list; PTX as well, as a fallback).
CAP=$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability(0))')
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$CAP+PTX}" MAX_JOBS="${MAX_JOBS:-$(nproc)}"
BUILD='"$0" -m pip install -v --no-build-isolation --no-deps . && exit 0
echo "== pip install failed; building in place instead"
"$0" setup.py build_ext --inplace && echo INPLACE'
step "build (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST)" 240 "$OUT/build.log" bash -c "$BUILD" "$PY"
if grep -q '^INPLACE$' "$OUT/build.log"; then export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"; fi
# -P: never import the source tree by accident (it has no compiled _C unless built in place).
if ! (cd /tmp && "$PY" -c 'import torch, lenet_fast, sys; print(lenet_fast.build_info()); sys.exit(0 if lenet_fast.cuda_available() else 1)') >> "$OUT/build.log" 2>&1; then
  note "FAIL  lenet_fast does not import with usable CUDA kernels (see build.log); nothing else can run"; exit 1
fi

# 2. The whole suite, CUDA tests included (in parallel where pytest-xdist is installed).
XDIST=$("$PY" -c 'import xdist' 2>/dev/null && echo "-n 8" || true)
step "tests" 200 "$OUT/tests.log" "$PY" -P -m pytest tests -q -rs -p no:cacheprovider $XDIST

# 3. compute-sanitizer on a short forward + backward of every op.
export PYTORCH_NO_CUDA_MEMORY_CACHING=1
for tool in memcheck racecheck; do
  step "compute-sanitizer $tool" 100 "$OUT/sanitizer.log" \
    compute-sanitizer --tool "$tool" --error-exitcode 9 "$PY" -P benchmarks/sanitize_run.py
done
unset PYTORCH_NO_CUDA_MEMORY_CACHING

# 4. The main job against the tutorial's pipeline, 10 epochs each, as whole processes.
step "train_speed (lenet_fast.train vs --impl torch --loader torchvision)" 150 "$OUT/bench.log" \
  "$PY" -P benchmarks/train_speed.py --json "$OUT/train.json"

# 5. The benchmark (writes bench.json after every case, so a run cut short keeps what it measured).
step "bench --full --device cuda" 300 "$OUT/bench.log" \
  "$PY" -P -m lenet_fast.bench --full --device cuda --json "$OUT/bench.json"

note "total $(( $(date +%s) - START )) s of a ${BUDGET} s budget; $([ $FAILED = 0 ] && echo 'every step passed' || echo 'NOT every step passed')"
exit $FAILED
