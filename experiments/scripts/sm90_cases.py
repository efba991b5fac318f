"""The cases compile_sm90.py compiles, in this tree's API: every forward config the tuner may pick
(head_dim 64 and 128, full and causal, pointer loads at N 1024 and descriptors at 8192), every
backward config, the traced kernels (FA2 ragged causal, split-KV with its merge, FA1's order) and
a float32 forward; then the masks of issue 23 (sliding window, packed documents, GQA, decode with
split-KV), forward and backward, at the configs the tuner may pick for them."""
import math

import torch


def _fwd(cfg, d, causal, n, dtype=torch.float16):
    from kernels import flash_fwd, tuning
    q, k, v = (torch.empty(2, 4, n, d, dtype=dtype) for _ in range(3))
    return lambda: flash_fwd.launch(q, k, v, causal, d ** -0.5, cfg, use_tma=n >= tuning.TMA_MIN_SEQ_LEN)


def _bwd(kind, cfg, d, causal, n):
    from kernels import flash_bwd
    q, k, v, do = (torch.empty(2, 4, n, d, dtype=torch.float16) for _ in range(4))
    lse, delta = torch.empty(2, 4, n), torch.empty(2, 4, n)
    if kind == "dq":
        return lambda: flash_bwd.launch_dq(q, k, v, do, lse, delta, causal, d ** -0.5, cfg)
    acc = torch.empty(2, 4, n, d) if kind == "fused" else None
    return lambda: flash_bwd.launch_dkdv(q, k, v, do, lse, delta, causal, d ** -0.5, cfg, dq_acc=acc)


def _traced(n, d, bm, bn, causal, splits, order):
    from kernels import flash_fa1, flash_fwd, traffic
    from kernels.launch import Config
    from kernels.trace_buffers import TraceBuffers
    q, k, v = (torch.empty(1, 1, n, d, dtype=torch.float16) for _ in range(3))
    keys = traffic.FA1_COUNTERS if order == "fa1" else (traffic.SPLIT_KV_COUNTERS if splits > 1 else traffic.FA2_COUNTERS)
    buf = TraceBuffers(n, d, bm, bn, tuple(range(math.ceil(n / bm))), "cpu", keys)
    if order == "fa1":
        return lambda: flash_fa1.launch(q, k, v, causal, d ** -0.5, Config(bm, bn, num_stages=1), trace=buf)
    return lambda: flash_fwd.launch(q, k, v, causal, d ** -0.5, Config(bm, bn), trace=buf, kv_splits=splits)


def _masked(cfg, d, n, causal, window=(-1, -1), docs=0, heads=4, kv_heads=4, n_q=None):
    from kernels import flash_fwd
    q = torch.empty(2, heads, n_q or n, d, dtype=torch.float16)
    k, v = (torch.empty(2, kv_heads, n, d, dtype=torch.float16) for _ in range(2))
    dk = flash_fwd.Docs(torch.empty(docs + 1, dtype=torch.int32), torch.empty(n, dtype=torch.int32)) if docs else None
    return lambda: flash_fwd.launch(q, k, v, causal, d ** -0.5, cfg, use_tma=n >= 4096 and cfg.kv_splits == 1,
                                    window=window, docs=dk)


def _masked_bwd(kind, cfg, d, n, causal, window=(-1, -1), heads=4, kv_heads=4):
    from kernels import flash_bwd
    q, do = (torch.empty(2, heads, n, d, dtype=torch.float16) for _ in range(2))
    k, v = (torch.empty(2, kv_heads, n, d, dtype=torch.float16) for _ in range(2))
    lse, delta = torch.empty(2, heads, n), torch.empty(2, heads, n)
    if kind == "dq":
        return lambda: flash_bwd.launch_dq(q, k, v, do, lse, delta, causal, d ** -0.5, cfg, window=window)
    return lambda: flash_bwd.launch_dkdv(q, k, v, do, lse, delta, causal, d ** -0.5, cfg, window=window)


def MASK_CASES():
    import dataclasses

    from kernels import tuning
    out = []
    for d in (64, 128):
        for c in tuning.forward_candidates(d, "tf32", True, True, (1,)):
            out.append((f"masks fwd d{d} window 1024 causal n8192 {c.name}", _masked(c, d, 8192, True, (1024, -1))))
            out.append((f"masks fwd d{d} documents causal n8192 {c.name}", _masked(c, d, 8192, True, docs=8)))
            out.append((f"masks fwd d{d} GQA 4:1 causal n8192 {c.name}", _masked(c, d, 8192, True, kv_heads=1)))
        for c in tuning.DECODE_CONFIGS:
            for s in (1, 8):
                c2 = dataclasses.replace(c, kv_splits=s)
                out.append((f"masks fwd d{d} decode 1 x 16384 GQA 8:1 {c2.name}",
                            _masked(c2, d, 16384, True, heads=8, kv_heads=1, n_q=1)))
        for kind in ("dkdv", "dq"):
            c = tuning.candidates(tuning.BACKWARD_CONFIGS[kind], d, "tf32")[-1]
            out.append((f"masks bwd-{kind} d{d} window GQA 4:1 {c.name}",
                        _masked_bwd(kind, c, d, 4096, True, (512, -1), kv_heads=1)))
    return out


def CASES():
    from kernels import tuning
    out = []
    for d in (64, 128):
        for causal in (False, True):
            for n in (1024, 8192):
                for c in tuning.FORWARD_CONFIGS:
                    if c.fits(d) and (n >= tuning.TMA_MIN_SEQ_LEN or not c.warp_spec):
                        out.append((f"fwd d{d} {'causal' if causal else 'full'} n{n} {c.name}", _fwd(c, d, causal, n)))
            for kind in ("dkdv", "dq", "fused"):
                for c in tuning.BACKWARD_CONFIGS[kind]:
                    if c.fits(d):
                        out.append((f"bwd-{kind} d{d} {'causal' if causal else 'full'} {c.name}",
                                    _bwd(kind, c, d, causal, 4096)))
    out.append(("traced fa2 1000 d64 64x32 causal", _traced(1000, 64, 64, 32, True, 1, "fa2")))
    out.append(("traced split4 512 d64 64x64", _traced(512, 64, 64, 64, False, 4, "fa2")))
    out.append(("traced fa1 256 d64 64x64 causal", _traced(256, 64, 64, 64, True, 1, "fa1")))
    out.append(("fwd fp32 1000 d64 64x64", _fwd(tuning.Config(64, 64), 64, False, 1000, torch.float32)))
    return out + MASK_CASES()
