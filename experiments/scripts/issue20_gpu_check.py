"""Issue 20's new kernel paths compiled on a GPU (triton 3.6): a typed softmax row at chunks from 1
(the CHUNK constexpr), your own Q, K, V at blocks and head dims from 1 (the KEY_TILE constexpr, zero
padded head_dim), and standard attention's three kernels; each against float64. Prints one line
per case and exits 1 if any misses."""
import sys

import numpy as np
from kernels import standard
from kernels.softmax_trace import SoftmaxConfig, capture_softmax
from kernels.trace import TraceConfig, capture_trace

bad = []
row = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0]
ref = np.exp(np.array(row) - 9.0) / np.exp(np.array(row) - 9.0).sum()
for block in (1, 2, 3, 5):
    t = capture_softmax(SoftmaxConfig(length=len(row), block=block, scenario="typed"), row=row)
    err = float(np.max(np.abs(np.asarray(t.y, dtype=np.float64) - ref)))
    print(f"softmax typed block {block}: device {t.device}, max err {err:.2e}", flush=True)
    bad += [f"softmax block {block}"] if err > 1e-6 else []
rng = np.random.default_rng(0)
for n, d, bm, bn in ((4, 2, 2, 2), (5, 3, 2, 3), (7, 1, 3, 2), (1, 1, 1, 1)):
    q, k, v = (rng.standard_normal((n, d)).astype(np.float32) for _ in range(3))
    t = capture_trace(TraceConfig(seq_len=n, head_dim=d, block_m=bm, block_n=bn, dtype="float32"), inputs=(q, k, v))
    s = q.astype(np.float64) @ k.T.astype(np.float64) / np.sqrt(d)
    p = np.exp(s - s.max(1, keepdims=True))
    o = (p / p.sum(1, keepdims=True)) @ v.astype(np.float64)
    err = float(np.max(np.abs(np.asarray(t.out, dtype=np.float64) - o)))
    print(f"hand attention n{n} d{d} {bm}x{bn}: device {t.device}, max err {err:.2e}", flush=True)
    bad += [f"hand n{n} d{d}"] if err > 1e-5 else []
for n, causal in ((113, False), (200, True)):
    q, k, v = (rng.standard_normal((n, 64)).astype(np.float32) for _ in range(3))
    out = standard.run(q, k, v, causal, 32, 64).out
    s = q.astype(np.float64) @ k.T.astype(np.float64) / 8.0
    if causal:
        s[np.triu(np.ones((n, n), dtype=bool), 1)] = -np.inf
    p = np.exp(s - s.max(1, keepdims=True))
    err = float(np.max(np.abs((p / p.sum(1, keepdims=True)) @ v.astype(np.float64) - out)))
    print(f"standard n{n} causal {causal}: max err {err:.2e}", flush=True)
    bad += [f"standard n{n}"] if err > 1e-4 else []
print("FAILED: " + ", ".join(bad) if bad else "all held", flush=True)
sys.exit(1 if bad else 0)
