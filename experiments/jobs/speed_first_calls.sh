#!/usr/bin/env bash
# One device call (issues 22 and 23): first calls at new lengths with the shape-bucketed, on-disk
# tuning cache (a cold process, then a second one on the same caches), and the masks benchmark again
# (its results of the earlier run were lost before they were committed).
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export FA_VIZ_TUNING_CACHE=/tmp/fa-tuning.json TRITON_CACHE_DIR=/tmp/triton-cache
rm -rf "$FA_VIZ_TUNING_CACHE" "$TRITON_CACHE_DIR"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
t=$(date +%s)
timeout ${FIRST_TIMEOUT:-170} python3 experiments/scripts/first_calls.py "$OUT/first-calls-cold.json" 1024 1000 1500 > "$OUT/first-calls-cold.log" 2>&1
echo "cold rc=$? $(( $(date +%s) - t )) s"; cat "$OUT/first-calls-cold.log" | tail -n 5
t=$(date +%s)
timeout 60 python3 experiments/scripts/first_calls.py "$OUT/first-calls-second.json" 1024 1000 1500 977 > "$OUT/first-calls-second.log" 2>&1
echo "second rc=$? $(( $(date +%s) - t )) s"; tail -n 5 "$OUT/first-calls-second.log"
cp "$FA_VIZ_TUNING_CACHE" "$OUT/tuning-cache.json" 2>/dev/null
t=$(date +%s)
timeout ${BENCH_TIMEOUT:-220} python3 -m bench --only masks --mask-seq-lens 4096 16384 --decode-lens 4096 65536 \
  --json "$OUT/bench-masks.json" 2> "$OUT/bench-masks.err" > "$OUT/bench-masks.txt"
echo "bench masks rc=$? $(( $(date +%s) - t )) s"; tail -n 25 "$OUT/bench-masks.txt"; tail -n 3 "$OUT/bench-masks.err"
