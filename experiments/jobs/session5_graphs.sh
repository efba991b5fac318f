#!/usr/bin/env bash
# One device call (issue 22, small calls): the CUDA-graph route (kernels/graphs.py) checked first
# (its GPU tests, the launch-plan check, a caller's own CUDA graph) and the ring on the one GPU, 6 processes at once with every
# direct launch checked against triton's lookup; then host_time.py alone on the GPU: the eager
# route with graphs, without them, without launch plans, through the operators, against SDPA FLASH.
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-/tmp/out}; mkdir -p /tmp/quick
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('cudnn', torch.backends.cudnn.version(), torch.__version__)" | tee -a "$OUT/gpu.txt"
t=$(date +%s); START=${START:-$t}
FA_VIZ_CHECK_PLANS=1 timeout 230 python3 experiments/scripts/shard_pytest.py 6 /tmp/quick 220 -- -m gpu tests/test_gpu.py tests/test_ring.py -k "graphs or launch_plans or torch_compile_and_cuda_graph or ranks_sharing" > "$OUT/graph-tests.log" 2>&1
echo "graph tests rc=$? $(( $(date +%s) - t )) s"; grep "PASSED\|FAILED\|ERROR\|SKIPPED\|^shard" "$OUT/graph-tests.log" | head -20
grep -h -B3 -A30 "^E  " "$OUT/graph-tests.log" | head -60
t=$(date +%s); START=${START:-$t}
timeout $(( 560 - t + START )) python3 experiments/scripts/host_time.py "$OUT/host-time.json" > "$OUT/host-time.log" 2>&1
echo "host time rc=$? $(( $(date +%s) - t )) s"; grep "^N" "$OUT/host-time.log"
