#!/usr/bin/env bash
# One device call (issues 23 and 24): the masks' and the ring's GPU tests, a trace check of the
# house step, the masks benchmark (ours against SDPA with the dense mask and FlexAttention with its
# block mask, interleaved), and the four mask scenes recorded (returned as scenes-masks.tar).
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
t=$(date +%s)
timeout 150 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu_masks.py tests/test_ring.py > "$OUT/gpu-tests-masks-ring.log" 2>&1
echo "masks+ring gpu tests rc=$? $(( $(date +%s) - t )) s"; tail -n 3 "$OUT/gpu-tests-masks-ring.log"
t=$(date +%s)
timeout 80 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py -k "trace or split or fa1 or loop_order" > "$OUT/gpu-tests-traces.log" 2>&1
echo "trace gpu tests rc=$? $(( $(date +%s) - t )) s"; tail -n 3 "$OUT/gpu-tests-traces.log"
cp -r scenes /tmp/scenes
t=$(date +%s)
timeout 80 python3 -m kernels.record /tmp/scenes --only sliding-window documents gqa decode > "$OUT/record-masks.log" 2>&1
echo "record rc=$? $(( $(date +%s) - t )) s"; tail -n 6 "$OUT/record-masks.log"
(cd /tmp/scenes && tar cf "$OUT/scenes-masks.tar" manifest.json sliding-window.npz documents.npz gqa.npz decode.npz 2>/dev/null)
t=$(date +%s)
timeout ${BENCH_TIMEOUT:-230} python3 -m bench --only masks --mask-seq-lens 4096 16384 --decode-lens 4096 65536 \
  --json "$OUT/bench-masks.json" 2> "$OUT/bench-masks.err" > "$OUT/bench-masks.txt"
echo "bench masks rc=$? $(( $(date +%s) - t )) s"; tail -n 25 "$OUT/bench-masks.txt"; tail -n 3 "$OUT/bench-masks.err"
