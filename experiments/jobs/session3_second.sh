#!/usr/bin/env bash
# One device call (issues 20, 22, 23, 24): standard attention's kernels compiled again (the fixed
# constexpr globals), where the host's time goes in a small eager call through the new eager
# route and through the operators (issue 22), then the whole -m gpu suite in 8 processes at once.
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT/gpu-suite"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
t=$(date +%s)
timeout 60 python3 experiments/scripts/issue20_gpu_check.py > "$OUT/issue20-gpu-check.log" 2>&1
echo "issue20 check rc=$? $(( $(date +%s) - t )) s"; tail -n 4 "$OUT/issue20-gpu-check.log"
t=$(date +%s)
timeout 130 python3 experiments/scripts/host_time.py "$OUT/host-time.json" > "$OUT/host-time.log" 2>&1
echo "host time rc=$? $(( $(date +%s) - t )) s"; head -c 3500 "$OUT/host-time.log"
timeout ${SUITE_TIMEOUT:-390} python3 experiments/scripts/shard_pytest.py 8 "$OUT/gpu-suite" ${SUITE_TIMEOUT:-380} -- -m gpu tests
echo "gpu suite rc=$?"; grep -h -A12 "^FAILED\|^ERROR\|Error" "$OUT"/gpu-suite/shard-*.log | head -60
