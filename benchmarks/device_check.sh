#!/usr/bin/env bash
# The GPU check of the columns benchmark, prepared for a session that is lent a GPU machine
# (the `device` tool): one command, a few minutes on an H100/H200, results under $OUT.
#
#   device run:  bash benchmarks/device_check.sh        (timeout_s ~ 480)
#
# It needs only torch, numpy and scipy (the GPU image has them; no install, nothing carried):
# the benchmark imports the package from the source tree. It checks first that the per-column
# loop reference computes the same step as the batched model on the GPU, then times one
# settling step fwd+bwd for 256, 1024 and 4096 columns (unshared, shared=True, and the loop at
# 256), then repeats the 256-column row on the machine's CPU in the same run, so that the
# ratios can be compared on one machine.
set -euo pipefail
OUT=${OUT:-results/device_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
"$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device: run this on a lent GPU machine"
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))
PY
"$PY" benchmarks/bench_columns.py --device cuda --sizes 256 1024 4096 --reps 10 \
    --json "$OUT/bench_columns_cuda.json" 2>&1 | tee "$OUT/bench_columns_cuda.txt"
"$PY" benchmarks/bench_columns.py --device cpu --sizes 256 --threads 16 --no-memory \
    --json "$OUT/bench_columns_cpu16.json" 2>&1 | tee "$OUT/bench_columns_cpu16.txt"
