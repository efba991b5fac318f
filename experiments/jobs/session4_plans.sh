#!/usr/bin/env bash
# One device call (issue 22): small calls with launch plans (kernels/launch.py) against the same
# route without them, the operators and SDPA FLASH, full and causal, d64 and d128; then the whole
# -m gpu suite, 16 processes at once, with every direct launch checked against triton's own lookup
# (FA_VIZ_CHECK_PLANS=1). The ring's bf16 test (its byte count fixed) is part of the suite.
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-/tmp/out}; mkdir -p /tmp/suite
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('cudnn', torch.backends.cudnn.version(), torch.__version__)" | tee -a "$OUT/gpu.txt"
t=$(date +%s)
timeout 230 python3 experiments/scripts/host_time.py "$OUT/host-time.json" > "$OUT/host-time.log" 2>&1
echo "host time rc=$? $(( $(date +%s) - t )) s"; head -c 2500 "$OUT/host-time.log"
FA_VIZ_CHECK_PLANS=1 timeout ${SUITE_TIMEOUT:-330} python3 experiments/scripts/shard_pytest.py 16 /tmp/suite $(( ${SUITE_TIMEOUT:-330} - 10 )) -- -m gpu tests > "$OUT/gpu-suite.log" 2>&1
echo "gpu suite rc=$?"; grep "^shard \|collected\|^[0-9]* s$" "$OUT/gpu-suite.log"; grep -h -A15 "^FAILED\|^ERROR\|Error:" "$OUT/gpu-suite.log" | head -50
