#!/usr/bin/env bash
# The GPU check: everything GPU-related as one command on a GPU machine with its own torch, nvcc,
# Triton, pytest and compute-sanitizer and no network, in the order that makes a run cut short
# still bring back what matters most:
#
#   bash benchmarks/gpu_check.sh OUTDIR                                  # e.g. the device tool's $OUT
#   LENET_FAST_DATA_DIR=DIR bash benchmarks/gpu_check.sh OUTDIR          # DIR: Fashion-MNIST's IDX files
#   LENET_FAST_CHECK_DRY_RUN=1 bash benchmarks/gpu_check.sh OUTDIR       # on a CPU machine, see below
#
#   1. build for this GPU's own architecture; one line: do the CUDA kernels load?
#   2. smoke: every CUDA op against the CPU kernels, forward and backward, odd sizes
#      (benchmarks/gpu_smoke.py): a table of check, max abs/rel error, PASS/FAIL
#   3. a short benchmark (python -m lenet_fast.bench --check: inference at 64, 1024, 1, 65536 and
#      the training step at 64, 1024; lenet_fast, stock eager, stock torch.compile), the whole-model
#      calls timed beside the model's predicted H200 times (benchmarks/gpu_model_check.py), then the
#      CUDA tests (pytest -m cuda), each failure by name
#   4. compute-sanitizer memcheck and racecheck on lenet_fast's own kernels
#      (benchmarks/sanitize_run.py); SKIP with the sanitizer's message where it refuses the device
#   5. the training comparison (benchmarks/train_speed.py) when LENET_FAST_DATA_DIR holds the
#      Fashion-MNIST files, else SKIP; then python -m lenet_fast.bench --full with the time left
#
# The steps share LENET_FAST_CHECK_BUDGET_S seconds (default 540), each under its own cap; keep the
# budget ~30 s under the device tool's timeout so that the summary is complete. A step that fails
# does not stop the later ones; every step appends to its log as it runs (and the benchmarks
# rewrite their JSON after every case), so a step stopped at its limit keeps what it did.
# It writes 9 files in OUTDIR (what the device tool brings back): summary.txt, build.log,
# tests.log (smoke + CUDA tests), sanitizer.log, bench.log (benchmark and training output),
# bench-check.json, model-vs-measured.json, bench-full.json, train.json. Plots: python -m lenet_fast.bench --replot JSON.
#
# LENET_FAST_CHECK_DRY_RUN=1 proves the script on a machine without a GPU: the installed build
# stands in for the build, the CPU for the GPU (smoke, benchmarks and training on tiny sizes), the
# CUDA tests are collected and skip, and the sanitizer steps SKIP where compute-sanitizer is missing.
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
DRY=${LENET_FAST_CHECK_DRY_RUN:-0}
START=$(date +%s)
SUMMARY="$OUT/summary.txt"
FAILED=0
if [ "$DRY" = 1 ]; then DEV=cpu; else DEV=cuda; fi

note() { echo "$*" | tee -a "$SUMMARY"; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# run CAP_S LOG COMMAND...: run under min(CAP_S, budget left), append to LOG; sets RC and TOOK
# (RC 124: stopped at the limit; 125: not started, the budget was spent).
run() {
  local cap=$1 log=$2; shift 2
  local l; l=$(left); local limit=$(( cap < l ? cap : l ))
  TOOK=0 LIMIT=$limit
  if (( limit < 10 )); then RC=125; return; fi
  local t0; t0=$(date +%s)
  timeout -k 10 "$limit" "$@" >> "$log" 2>&1; RC=$?
  (( RC == 137 )) && RC=124
  TOOK=$(( $(date +%s) - t0 ))
}
# record NAME LOG [optional]: one summary line for the step just run (with the log's last lines on
# failure); an optional step (the full benchmark) that runs out of time does not fail the check.
record() {
  local name=$1 log=$2 optional=${3:-0}
  if (( RC == 0 )); then note "PASS  $name (${TOOK} s)";
  elif (( RC == 125 )); then note "SKIP  $name: the budget is spent"; (( optional )) || FAILED=1;
  elif (( RC == 124 )); then note "TIME  $name: stopped at its ${LIMIT} s limit (what it wrote is kept)"; (( optional )) || FAILED=1;
  else note "FAIL  $name: exit $RC after ${TOOK} s; last lines of $(basename "$log"):"
       tail -n 12 "$log" | sed 's/^/      /' | tee -a "$SUMMARY"; FAILED=1; fi
}
step() { local name=$1 cap=$2 log=$3; shift 3; echo "== $name" >> "$log"; run "$cap" "$log" "$@"; record "$name" "$log"; }

: > "$SUMMARY"
for f in build tests sanitizer bench; do : > "$OUT/$f.log"; done
rm -f "$OUT"/bench-check.json "$OUT"/model-vs-measured.json "$OUT"/bench-full.json "$OUT"/train.json
note "lenet_fast GPU check, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), budget ${BUDGET} s$([ "$DRY" = 1 ] && echo ', DRY RUN (CPU stands in for the GPU)')"
note "GPU: $( (command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "none (nvidia-smi not found or failed)") 2>&1 | head -n 1)"
note "$("$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available() and torch.cuda.get_device_name(0))' 2>&1 | tail -n 1)"
note "nvcc: $(nvcc --version 2>&1 | tail -n 2 | head -n 1)"
if [ "$DRY" != 1 ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  note "FAIL  no CUDA GPU visible to torch: this script is for a GPU machine (LENET_FAST_CHECK_DRY_RUN=1 to try it on a CPU)"; exit 1
fi

# 1. Build for this GPU only (its compute capability: the fastest build that runs here).
if [ "$DRY" = 1 ]; then
  step "build (dry run: the installed lenet_fast stands in)" 60 "$OUT/build.log" "$PY" -P -c 'import lenet_fast; print(lenet_fast.__file__)'
else
  CAP=$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability(0))')
  export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$CAP}" MAX_JOBS="${MAX_JOBS:-$(nproc)}"
  BUILD='"$0" -m pip install -v --no-build-isolation --no-deps . && exit 0
echo "== pip install failed; building in place instead"
"$0" setup.py build_ext --inplace && echo INPLACE'
  step "build (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST)" 240 "$OUT/build.log" bash -c "$BUILD" "$PY"
  if grep -q '^INPLACE$' "$OUT/build.log"; then export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"; fi
fi
# -P everywhere: never import the source tree by accident (it has no _C unless built in place).
LOADS=$(cd /tmp && "$PY" -P - "$DEV" 2>&1 <<'PYEOF' | tail -n 1
import sys, torch, lenet_fast
b = lenet_fast.build_info()
usable = lenet_fast.cuda_available()
kernels = "compiled for " + b["cuda_archs"] if b["with_cuda"] else "not compiled"
where = "usable on " + torch.cuda.get_device_name(0) if usable else "not usable here"
print("lenet_fast", b["version"], "loads; CUDA kernels", kernels + ",", where)
sys.exit(0 if usable or sys.argv[1] == "cpu" else 1)
PYEOF
); LOAD_RC=$?
echo "$LOADS" >> "$OUT/build.log"
if (( LOAD_RC != 0 )); then note "FAIL  load: $LOADS"; note "nothing else can run"; exit 1; fi
note "LOAD  $LOADS"

# 2. Smoke: each op against the CPU kernels; the table goes into the summary row by row.
echo "== smoke" >> "$OUT/tests.log"
run 90 "$OUT/tests.log" env CUDA_LAUNCH_BLOCKING=1 "$PY" -P benchmarks/gpu_smoke.py --device "$DEV" --table "$SUMMARY"
record "smoke (every op against the CPU kernels; the table above)" "$OUT/tests.log"

# 3. A short benchmark, then the CUDA tests.
if [ "$DRY" = 1 ]; then SMALL=(--batch 2 --rounds 2 --round-ms 1 --no-compile --max-case-s 2); else SMALL=(--compile-mode default); fi
step "bench --check (inference 64/1024/1/65536, train step 64/1024)" 150 "$OUT/bench.log" \
  "$PY" -P -m lenet_fast.bench --check --device "$DEV" "${SMALL[@]}" --json "$OUT/bench-check.json" --no-plot
if [ "$DRY" = 1 ]; then MODEL_ARGS=(--device cpu --small --rounds 2); else MODEL_ARGS=(); fi
step "model vs measured (the predicted H200 times of python -m lenet_fast.bench --gpu-model, timed here)" 60 "$OUT/bench.log" \
  "$PY" -P benchmarks/gpu_model_check.py "${MODEL_ARGS[@]}" --json "$OUT/model-vs-measured.json" --table "$SUMMARY"
XDIST=$("$PY" -c 'import xdist' 2>/dev/null && echo "-n 8" || true)
step "CUDA tests (pytest -m cuda)" 200 "$OUT/tests.log" \
  "$PY" -P -m pytest tests -m cuda -q -rfE --tb=short -p no:cacheprovider $XDIST
grep -E '^(FAILED|ERROR) ' "$OUT/tests.log" | head -n 40 | sed 's/^/      /' | tee -a "$SUMMARY"
tail -n 1 "$OUT/tests.log" | grep -E 'passed|failed|skipped|error' | sed 's/^/      /' | tee -a "$SUMMARY"

# 4. compute-sanitizer on lenet_fast's kernels only (the filter keeps torch's own kernels out).
export PYTORCH_NO_CUDA_MEMORY_CACHING=1
for tool in memcheck racecheck; do
  name="compute-sanitizer $tool"
  if ! command -v compute-sanitizer >/dev/null; then note "SKIP  $name: compute-sanitizer not found"; continue; fi
  if [ "$DRY" = 1 ]; then note "SKIP  $name: dry run"; continue; fi
  part="$OUT/.sanitizer-$tool.part"; : > "$part"
  echo "== $name" >> "$OUT/sanitizer.log"
  run 100 "$part" compute-sanitizer --tool "$tool" --kernel-name kns=lenet_fast --error-exitcode 9 \
    "$PY" -P benchmarks/sanitize_run.py
  if (( RC != 0 )) && grep -qiE "unrecognized option|unknown option|invalid option" "$part"; then
    echo "== $name (again without --kernel-name, which this sanitizer does not take)" >> "$part"
    run 100 "$part" compute-sanitizer --tool "$tool" --error-exitcode 9 "$PY" -P benchmarks/sanitize_run.py
  fi
  cat "$part" >> "$OUT/sanitizer.log"; rm -f "$part"
  refused=$(grep -m1 -iE "device not supported|not supported on this (device|platform)" "$OUT/sanitizer.log" || true)
  if [ -n "$refused" ]; then note "SKIP  $name: the sanitizer refuses this device: $refused"; continue; fi
  record "$name" "$OUT/sanitizer.log"
done
unset PYTORCH_NO_CUDA_MEMORY_CACHING

# 5. The training comparison (with the data), then the full benchmark with whatever time is left.
if "$PY" -P -c 'from lenet_fast import data; data.find("fashion-mnist", "train"); data.find("fashion-mnist", "test")' >/dev/null 2>&1; then
  if [ "$DRY" = 1 ]; then TRAIN=(-- --device cpu --epochs 1 --train-limit 256 --test-limit 256); else TRAIN=(); fi
  step "training comparison (train_speed.py: 5 pipelines, 10 epochs each)" 240 "$OUT/bench.log" \
    "$PY" -P benchmarks/train_speed.py --json "$OUT/train.json" \
    --pipelines lenet_fast tutorial lenet_fast+tv stock+fast lenet_fast-eager "${TRAIN[@]}"
else
  note "SKIP  training comparison: no Fashion-MNIST files (set LENET_FAST_DATA_DIR to a folder holding them)"
fi
if [ "$DRY" = 1 ]; then FULL=(--batch 2 --rounds 2 --round-ms 1 --no-compile --max-case-s 2); else FULL=(); fi
echo "== bench --full" >> "$OUT/bench.log"
run $(( $(left) - 5 )) "$OUT/bench.log" \
  "$PY" -P -m lenet_fast.bench --full --device "$DEV" "${FULL[@]}" --json "$OUT/bench-full.json" --no-plot
record "bench --full (with the time left)" "$OUT/bench.log" 1

note "total $(( $(date +%s) - START )) s of a ${BUDGET} s budget; $([ $FAILED = 0 ] && echo 'every step passed' || echo 'NOT every step passed')"
exit $FAILED
