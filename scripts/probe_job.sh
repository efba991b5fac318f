#!/usr/bin/env bash
# One device call for the probes: float32 GPU autograd tests, then scripts/attn_probe.py and
# scripts/softmax_probe.py, everything under $OUT.
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
timeout -s INT 130 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_backward.py tests/test_gpu.py \
  -k "float32 and (autograd or tuned or forward)" 2>&1 | tee "$OUT/fp32_tests.log" | tail -n 8
timeout -s INT 240 python3 scripts/attn_probe.py 2>&1 | tee "$OUT/attn_probe.log" | tail -n 30
timeout -s INT 150 python3 scripts/softmax_probe.py 2>&1 | tee "$OUT/softmax_probe.log" | tail -n 32
