#!/usr/bin/env bash
# One device call: the softmax page's scenes, and forward + backward at head_dim 64.
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
timeout 90 python3 -m kernels.record "$OUT/scenes" --only softmax-rescales softmax-overflow 2>&1 | tail -n 6
timeout 330 python3 -m bench --only backward --seq-lens 1024 4096 16384 --head-dims 64 --json "$OUT/bench-d64.json" \
  2> "$OUT/bench-d64.err" | tee "$OUT/bench-d64.txt"
tail -n 2 "$OUT/bench-d64.err"
