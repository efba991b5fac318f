#!/usr/bin/env bash
# One device call (issues 20, 22, 23, 24): issue 20's new kernel paths compiled on triton 3.6, the
# masks' and the ring's GPU tests, where the host's time goes in a small eager call (issue 22), and
# the packed-documents benchmark with cu_seqlens checked once per tensor.
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
t=$(date +%s)
timeout 90 python3 experiments/scripts/issue20_gpu_check.py > "$OUT/issue20-gpu-check.log" 2>&1
echo "issue20 check rc=$? $(( $(date +%s) - t )) s"; tail -n 20 "$OUT/issue20-gpu-check.log"
t=$(date +%s)
timeout 180 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu_masks.py tests/test_ring.py > "$OUT/gpu-tests-masks-ring.log" 2>&1
echo "masks+ring gpu tests rc=$? $(( $(date +%s) - t )) s"; tail -n 8 "$OUT/gpu-tests-masks-ring.log"
t=$(date +%s)
timeout 130 python3 experiments/scripts/host_time.py "$OUT/host-time.json" > "$OUT/host-time.log" 2>&1
echo "host time rc=$? $(( $(date +%s) - t )) s"; head -c 9000 "$OUT/host-time.log"
t=$(date +%s)
timeout 110 python3 -m bench --only masks --mask-cases documents window --mask-seq-lens 4096 16384 \
  --json "$OUT/bench-documents.json" 2> "$OUT/bench-documents.err" > "$OUT/bench-documents.txt"
echo "bench documents rc=$? $(( $(date +%s) - t )) s"; tail -n 8 "$OUT/bench-documents.txt"; tail -n 3 "$OUT/bench-documents.err"
