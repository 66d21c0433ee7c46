#!/usr/bin/env bash
# The GPU check: the Triton backend's tests and benchmark on a CUDA GPU, in one command, in under 8 minutes
# (each step has its own time limit: 180 + 180 + 90 + 20 seconds at most; most of the first is compiling).
#
#   bash benchmarks/gpu_check.sh [OUTPUT_FOLDER]   # default: a new benchmarks/results/local/<time>-gpu-check
#
# Runs from the repository root with the Python on PATH (its torch and triton, nothing installed, no network):
#   1. python -m benchmarks.gpu --check     the kernels against the float64 reference (needs no pytest);
#   2. pytest -m gpu tests/test_triton.py   the GPU half of the Triton tests (skipped, and said so, without pytest);
#   3. python -m benchmarks.gpu             forward, backward and full times at the benchmark shapes;
#   4. python -m benchmarks.gpu --decide    the TRITON_FASTER entries (redundancy/_triton/__init__.py) they support.
# Writes environment.txt, check.log, tests.log, benchmark.log, gpu.json and auto.txt to the output folder,
# and exits non-zero if any step fails (each step still runs, so the folder holds everything there is).
set -u -o pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results/local/$(date -u +%Y%m%dT%H%M%S)-gpu-check}"  # git ignores benchmarks/results/local/
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TRITON_DEFAULT_FP_FUSION=1
unset TRITON_INTERPRET
python=${PYTHON:-python}
status=0

step() {  # step NAME LOG TIMEOUT COMMAND...: run, log, and remember a failure
    local name=$1 log=$2 limit=$3
    shift 3
    echo "== $name ($(date -u +%H:%M:%S))"
    if ! timeout "$limit" "$@" 2>&1 | tee "$out/$log"; then
        echo "== $name FAILED (see $out/$log)"
        status=1
    fi
}

{
    date -u
    "$python" -c 'import platform, torch, triton; print("python", platform.python_version()); print("torch", torch.__version__, "cuda", torch.version.cuda); print("triton", triton.__version__); print("gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")'
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null
} 2>&1 | tee "$out/environment.txt"
"$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU: torch.cuda.is_available() is False")' || exit 2

step "kernels against the float64 reference" check.log 180 "$python" -m benchmarks.gpu --check
if "$python" -c 'import pytest, hypothesis' 2>/dev/null; then
    step "GPU tests" tests.log 180 "$python" -m pytest tests/test_triton.py -m gpu -q -p no:cacheprovider
else
    echo "pytest or hypothesis is not installed: the GPU tests were skipped (step 1 checked the kernels)" | tee "$out/tests.log"
fi
step "benchmark" benchmark.log 90 "$python" -m benchmarks.gpu --shapes 256x8192 2048x1024 1024x16384 4096x2048 \
    --dtypes bfloat16 float32 --cases reference torch triton --output "$out"
if [ -f "$out/gpu.json" ]; then
    step "auto from the results" auto.txt 20 "$python" -m benchmarks.gpu --decide "$out/gpu.json"
fi
echo "== done: status $status, results in $out"
exit $status
