#!/usr/bin/env bash
# One device call: is the reorganized tree right on the GPU (traces and fixed configs compiled), how
# does the cooperative split-row softmax do, where do forward + backward stand on this GPU.
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
timeout 240 python3 -m pytest -m gpu -q -x -p no:cacheprovider tests/test_gpu.py \
  -k "forward_trace or backward_trace or pointer_path or backend" 2>&1 | tee "$OUT/smoke_tests.log" | tail -n 15
timeout 150 python3 experiments/jobs/softmax_split_probe.py "$OUT/softmax_split_probe.json" 2>&1 | tail -n 20
timeout 200 python3 experiments/jobs/attention_baseline_probe.py "$OUT/attention_baseline.json" 2>&1 | tail -n 8
