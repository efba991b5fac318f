# The job behind kernels/results/probes/h100-2026-11-23-sweep-2048-*.json: configs on and off the
# tuner's list at seq_len 2048, pointer loads (what the tuner uses below 4096)
export PYTHONPATH=.
C=64x32w4s3,64x32w4s4,128x32w4s3,64x64w4s2,64x64w4s3,64x64w4s4,128x64w4s2,128x64w4s3,128x64w8s2,128x64w8s3,64x128w4s2,64x128w4s3,128x128w8s2,128x128w8s3,128x128w4s2p2,128x128w4s2p2L,256x64w8s3p2
SHAPES=${SHAPES:-2048x128x1} CONFIGS=$C MODES=ptr NAME=${NAME:-sweep-2048-d128-causal} python scripts/attn_variants.py 2>&1 | grep -v Warn | tail -22
