#!/usr/bin/env bash
# One device call: the -m gpu tests that the 2026-12-02 suite run (16 shards, 470 s) left unfinished,
# one per process, with every direct launch checked against triton's lookup (FA_VIZ_CHECK_PLANS=1).
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-/tmp/out}; mkdir -p /tmp/rest
nvidia-smi --query-gpu=name,driver_version --format=csv | tee "$OUT/gpu.txt"
FA_VIZ_CHECK_PLANS=1 timeout 575 python3 experiments/scripts/shard_pytest.py 11 /tmp/rest 565 -- -m gpu tests/test_gpu.py tests/test_gpu_masks.py -k "autograd_with_masks and (window or decode) or torch_compile_takes_every_option or live_benchmark_of_the_page or backward_benchmark_runs" > "$OUT/rest.log" 2>&1
echo "rest rc=$?"; grep "PASSED\|FAILED\|ERROR\|SKIPPED\|^shard" "$OUT/rest.log" | head -30
grep -h -B3 -A30 "^E  " "$OUT/rest.log" | head -60
