#!/usr/bin/env bash
# One device call: record the fa2-order scene (the FA1 scene's config in FA2's order, for the FA1 vs
# FA2 page) into a copy of scenes/ (kernels.record --only merges it into the manifest), and the GPU
# tests of the kernels this change touched (the softmax-backward row kernel, both loop orders).
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
cp -r scenes /tmp/scenes
timeout 120 python3 -m kernels.record /tmp/scenes --only fa2-order 2>&1 | tee "$OUT/record.log" | tail -n 4
cp /tmp/scenes/fa2-order.npz /tmp/scenes/manifest.json "$OUT/"
timeout 200 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py \
  -k "softmax_backward_row_kernel or loop_orders" 2>&1 | tee "$OUT/gpu_tests.log" | tail -n 6
