#!/usr/bin/env bash
# One device call (issue 21, the house step): the -m gpu suite on this tree, then the forward timed
# for the tree before the step (d51e05c, carried as .old_tree/) and this one, each against SDPA FLASH
# and cuDNN in its own interleaved run: the ratios ours / SDPA of the two trees compared.
set -u -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cudnn', torch.backends.cudnn.version())" | tee -a "$OUT/gpu.txt"
start=$(date +%s)
PYTHONPATH=. timeout ${TEST_TIMEOUT:-390} python3 -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py tests/test_softmax.py \
  > "$OUT/gpu-tests.log" 2>&1
echo "gpu tests rc=$? in $(( $(date +%s) - start )) s"; tail -n 4 "$OUT/gpu-tests.log"
for tree in old new; do
  dir=$([ $tree = old ] && echo .old_tree || echo .)
  (cd "$dir" && PYTHONPATH=. timeout ${BENCH_TIMEOUT:-75} python3 -m bench --only attention --seq-lens 4096 16384 \
     --head-dims ${HEAD_DIMS:-128} --json "$OUT/bench-$tree.json" 2> "$OUT/bench-$tree.err" > "$OUT/bench-$tree.txt")
  echo "bench $tree rc=$?"; tail -n 8 "$OUT/bench-$tree.txt"
done
