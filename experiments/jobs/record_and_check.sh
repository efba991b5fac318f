#!/usr/bin/env bash
# One device call: record the shipped scenes (checked against float64), the GPU tests of the new and
# changed kernels, the split-row softmax probe, and the DRAM bytes each kernel moves (ncu).
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
timeout 150 python3 -m kernels.record "$OUT/scenes" 2>&1 | tee "$OUT/record.log" | tail -n 14
(cd "$OUT" && tar czf scenes.tgz scenes && rm -rf scenes)
timeout 230 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py -x \
  -k "loop_orders or torch_compile or (every_backward_config and 128-causal)" \
  2>&1 | tee "$OUT/gpu_tests.log" | tail -n 12
timeout 80 python3 experiments/jobs/softmax_split_probe.py "$OUT/softmax_split_probe.json" 2>&1 | tail -n 12
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
timeout 120 "$NCU" --clock-control none --profile-from-start off --csv --print-units base \
  --metrics dram__bytes_read.sum,dram__bytes_write.sum python3 experiments/jobs/dram_bytes.py > "$OUT/ncu.csv" 2> "$OUT/ncu.err"
tail -n 3 "$OUT/ncu.err"; grep -c "dram__bytes" "$OUT/ncu.csv"
python3 experiments/jobs/dram_bytes.py parse "$OUT/ncu.csv" "$OUT/dram_bytes.json" && head -c 600 "$OUT/dram_bytes.json"
