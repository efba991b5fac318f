#!/usr/bin/env bash
# One device call for the probes: scripts/attn_probe.py (PROBES env picks the variants) and,
# unless SKIP_SOFTMAX=1, scripts/softmax_probe.py, everything under $OUT.
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
timeout -s INT 240 python3 scripts/attn_probe.py 2>&1 | tee "$OUT/attn_probe.log" | tail -n 30
if [ "${SKIP_SOFTMAX:-0}" != 1 ]; then
  timeout -s INT 150 python3 scripts/softmax_probe.py 2>&1 | tee "$OUT/softmax_probe.log" | tail -n 32
fi
