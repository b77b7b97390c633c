#!/usr/bin/env bash
# One short GPU check (< 10 min on one GPU): the CUDA-marked tests, then the inference and
# fine-tune benchmarks, all results under $OUT (or benchmarks/gpu_results/<date> without it).
#
# The GPU machine has no network, so the script installs nothing. It runs $PYTHON (default
# .venv/bin/python) with src/ on PYTHONPATH, so an interpreter that has CUDA torch and the
# dependencies is all it needs. The device tool carries at most 64 MiB of ignored paths, so a
# torch .venv cannot travel: point PYTHON at the machine's own environment, from the repo root:
#
#     run(command="PYTHON=$(command -v python3) bash benchmarks/gpu_check.sh", timeout_s=600)
#
# ($OUT is set there, so the results come back as files.) Then copy the figures into
# docs/inference.md. Each step has its own time
# limit, so one slow step cannot eat the others' time; a failed step is recorded and the rest run.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-benchmarks/gpu_results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
status=0

step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s)" | tee -a "$OUT/summary.txt"
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "   rc=$rc in $((SECONDS - start))s" | tee -a "$OUT/summary.txt"
    tail -n 5 "$OUT/$name.log" | sed 's/^/   /' >>"$OUT/summary.txt"
    [ "$rc" -eq 0 ] || status=1
}

{
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
          'gpus', torch.cuda.device_count(), [torch.cuda.get_device_name(i)
          for i in range(torch.cuda.device_count())])"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
} >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

step cuda_tests 240 "$PY" -m pytest -m cuda tests/core/test_cuda.py tests/core/test_inference.py \
    -q -p no:cacheprovider --junitxml="$OUT/cuda_tests.xml"
step bench_inference 150 "$PY" benchmarks/bench_inference.py --device cuda \
    --presets compact paper --json "$OUT/bench_inference.json"
step bench_finetune 150 "$PY" benchmarks/bench_finetune.py --device cuda --models unet-compact \
    --ks 5,20 --recipes new --test-clips 8 --adapt-stacks 0 --threads 4
echo "results in $OUT" | tee -a "$OUT/summary.txt"
exit $status
