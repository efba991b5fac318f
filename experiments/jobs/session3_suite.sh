#!/usr/bin/env bash
# One device call (issue 22's "the -m gpu suite passes on the H200"): the rest of the GPU suite.
# session3_second.sh ran it in an 8-way split and its time ran out with the first 20 tests of
# shards 0-3 seen passing (shards 4-7's logs did not come back): here everything else, 12 at once.
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-/tmp/out}; mkdir -p /tmp/suite
nvidia-smi --query-gpu=name,driver_version --format=csv
PASSED=8:0,1,2,3:20 timeout 520 python3 experiments/scripts/shard_pytest.py 12 /tmp/suite 500 -- -m gpu tests 2>&1 | tee "$OUT/gpu-suite-rest.log" | tail -c 11000
