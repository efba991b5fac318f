#!/usr/bin/env bash
# One device call (issues 24 and 22): the ring's GPU tests with the np.bool_ fix (4 gloo ranks
# sharing the H200, fp16 and bf16), the two fixed -m gpu tests beside them, then the host-time
# figures of a small call again on the code as committed (after launch.meta's NumPy-to-Python step).
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
t=$(date +%s)
(timeout 300 python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_ring.py > "$OUT/ring-gpu-tests.log" 2>&1; echo "ring rc=$?" >> "$OUT/ring-gpu-tests.log") &
timeout 300 python3 -m pytest -m gpu -q -p no:cacheprovider "tests/test_softmax.py::test_gpu_fast_path_has_no_counting_code" \
  "tests/test_gpu.py::test_backward_benchmark_runs" > "$OUT/fixed-gpu-tests.log" 2>&1
echo "fixed tests rc=$? $(( $(date +%s) - t )) s"; tail -n 5 "$OUT/fixed-gpu-tests.log"
wait
echo "ring done $(( $(date +%s) - t )) s"; tail -n 8 "$OUT/ring-gpu-tests.log"
t=$(date +%s)
timeout 200 python3 experiments/scripts/host_time.py "$OUT/host-time.json" > "$OUT/host-time.log" 2>&1
echo "host time rc=$? $(( $(date +%s) - t )) s"; head -c 1500 "$OUT/host-time.log"
