#!/usr/bin/env bash
# One device call: record the shipped scenes; the split-row probe; the softmax benchmark; the forward +
# backward benchmark (and its forwards) at head_dim ${HEAD_DIMS:-128}. Scenes come back as tar parts.
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
if [ "${SKIP_SCENES:-0}" != 1 ]; then
  timeout 150 python3 -m kernels.record /tmp/scenes 2>&1 | tee "$OUT/record.log" | tail -n 14
  (cd /tmp && tar cf - scenes | split -b 15m - "$OUT/scenes.tar.part-")
  timeout 60 python3 experiments/jobs/softmax_split_probe.py "$OUT/softmax_split_probe.json" 2>&1 | tail -n 4
fi
timeout ${BENCH_TIMEOUT:-330} python3 -m bench --only softmax backward --seq-lens ${SEQ_LENS:-1024 4096 16384} \
  --head-dims ${HEAD_DIMS:-128} --json "$OUT/bench.json" 2> "$OUT/bench.err" | tee "$OUT/bench.txt"
tail -n 3 "$OUT/bench.err"
