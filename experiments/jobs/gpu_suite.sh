#!/usr/bin/env bash
# One device call (issue 22's "the -m gpu suite passes on the H200"): the whole -m gpu suite with
# LIMIT seconds per shard (2026-12-02: 470, 9 shards cut short; 2026-12-03: 455, every test ran),
# launch plans on and every direct launch checked against triton's own lookup (FA_VIZ_CHECK_PLANS=1),
# 16 processes at once; every shard's full log (pytest -v) comes back in one file.
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-/tmp/out}; mkdir -p /tmp/suite
nvidia-smi --query-gpu=name,driver_version --format=csv | tee "$OUT/gpu.txt"
FA_VIZ_CHECK_PLANS=1 timeout $(( ${LIMIT:-455} + 15 )) python3 experiments/scripts/shard_pytest.py 16 /tmp/suite ${LIMIT:-455} -- -m gpu tests > "$OUT/gpu-suite.log" 2>&1
echo "gpu suite rc=$?"
for f in /tmp/suite/shard-*.log; do echo "==== $f"; cat "$f"; done > "$OUT/gpu-suite-shards.log"
grep "^shard \|collected\|^[0-9]* s$" "$OUT/gpu-suite.log"
grep -h "PASSED\|FAILED\|ERROR\|SKIPPED" "$OUT/gpu-suite-shards.log" | grep -c PASSED
grep -h "FAILED\|ERROR" "$OUT/gpu-suite-shards.log" | head -20
grep -h -B5 -A25 "^E  " "$OUT/gpu-suite-shards.log" | head -80
