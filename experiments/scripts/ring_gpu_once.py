"""Issue 24: the ring's GPU test case once (4 local ranks sharing the GPU over gloo, fp16, zig-zag,
causal, N 4096), printing the whole failure if a rank fails."""
import sys
import traceback

from kernels import ring_local
from kernels.ring_plan import RingConfig

cfg = RingConfig(seq_len=4096, head_dim=64, world_size=4, causal=True, layout="zigzag", block_m=64, block_n=64,
                 dtype=sys.argv[1] if len(sys.argv) > 1 else "float16")
try:
    _, trace = ring_local.run_config(cfg, timeout=100)
    print("ok", trace.transport, trace.device, f"max err {trace.max_abs_err:.2e}")
except Exception as e:
    print("FAILED", type(e).__name__, str(e)[-3000:])
    traceback.print_exc()
