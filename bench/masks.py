"""Attention as models run it (issue 23): ours against SDPA with the equivalent dense boolean mask
and against FlexAttention (torch.nn.attention.flex_attention, compiled, with its block mask), all
three in the same interleaved rounds; decode (a few queries against a long K/V cache) against SDPA
and FlexAttention, as throughput.

Each case's mask is written once, as FlexAttention's mask_mod (b, h, q_idx, kv_idx) -> bool; the
block mask is built from it and so is SDPA's dense mask (the mask_mod over every (query, key)
pair); tests/test_benchmarks.py checks every mask_mod against kernels/masks.py's definitions. FLOPs
count only the (query, key) pairs the mask keeps: 4 * B * H * d * pairs.
"""
from bench.timing import interleaved_ms, log
from kernels import masks

WINDOW = 1024  # keys before the query (Mistral's 4096 at its 32k context, scaled to N 4096-16384)
DOCUMENTS = 8  # packed documents of random lengths (masks.document_bounds, seed 0)
GROUP = 4  # query heads per K/V head in the GQA case
DECODE = dict(batch=8, heads=32, kv_heads=8, head_dim=128, q_lens=(1, 4))  # a Llama-3-8B-like decode step
CASES = ("window", "documents", "gqa", "decode")


def mask_mod(case: str, n_q: int, n_k: int, cu=()):
    """FlexAttention's mask_mod of a case, in flash-attn's conventions (decode: queries aligned to
    the end of the keys). Plain tensor arithmetic, so it also runs on index grids (the dense mask)."""
    off = n_k - n_q

    def causal(b, h, q_idx, kv_idx):
        return kv_idx <= q_idx + off

    if case == "window":
        return lambda b, h, q_idx, kv_idx: causal(b, h, q_idx, kv_idx) & (q_idx + off - kv_idx <= WINDOW)
    if case == "documents":
        import torch

        doc = torch.repeat_interleave(torch.arange(len(cu) - 1), torch.tensor(cu).diff())
        state = {}

        def documents(b, h, q_idx, kv_idx):
            d = state.setdefault(q_idx.device, doc.to(q_idx.device))
            return causal(b, h, q_idx, kv_idx) & (d[q_idx] == d[kv_idx])
        return documents
    return causal  # gqa, decode


def ours_masks(case: str, n_q: int, n_k: int, cu=(), group: int = 1) -> masks.Masks:
    """The same mask in kernels/masks.py's terms (what our kernel is given)."""
    return masks.Masks(n_q, n_k, True, (WINDOW, -1) if case == "window" else (-1, -1), tuple(cu), group)


def dense_mask(mod, n_q: int, n_k: int, device):
    """(n_q, n_k) bool: the mask_mod over every (query, key) pair, for SDPA's attn_mask."""
    import torch

    q_idx = torch.arange(n_q, device=device)[:, None]
    kv_idx = torch.arange(n_k, device=device)[None, :]
    return mod(None, None, q_idx, kv_idx)


def pairs(m: masks.Masks) -> int:
    """(query, key) pairs a query head keeps: the sum of every row's interval."""
    import numpy as np

    lo, hi = m.key_bounds(np.arange(m.n_queries))
    return int((hi - lo).sum())


def _impls(case, q, k, v, cu, mod):
    """{name: callable()}: ours, SDPA with the dense mask, FlexAttention compiled with its block mask;
    where SDPA has the mask built in, that too (GQA: is_causal; decode: causal_lower_right, the
    bottom-right alignment), so SDPA runs its fastest backend for it."""
    import torch
    from torch.nn.attention.bias import causal_lower_right
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    from kernels.attention import flash_attention

    sdpa = torch.nn.functional.scaled_dot_product_attention
    n_q, n_k = q.shape[2], k.shape[2]
    gqa = q.shape[1] != k.shape[1]
    cu_t = torch.tensor(cu, dtype=torch.int32, device=q.device) if cu else None
    window = (WINDOW, -1) if case == "window" else (-1, -1)
    dense = dense_mask(mod, n_q, n_k, q.device)
    out = {
        "ours": lambda: flash_attention(q, k, v, causal=True, window_size=window, cu_seqlens=cu_t),
        "sdpa_dense_mask": lambda: sdpa(q, k, v, attn_mask=dense, enable_gqa=gqa),
    }
    try:  # a FlexAttention that cannot build this block mask is a row that says so, not a stopped run
        block = create_block_mask(mod, B=None, H=None, Q_LEN=n_q, KV_LEN=n_k, device=q.device)
        flex = torch.compile(flex_attention, dynamic=False)
        out["flex_attention"] = lambda: flex(q, k, v, block_mask=block, enable_gqa=gqa)
    except Exception as e:  # torch.compile and its backends raise their own kinds
        out["flex_attention"] = _fails(e)
    if case == "gqa":
        out["sdpa_causal"] = lambda: sdpa(q, k, v, is_causal=True, enable_gqa=True)
    if case == "decode":
        bias = causal_lower_right(n_q, n_k)
        out["sdpa_lower_right"] = lambda: sdpa(q, k, v, attn_mask=bias, enable_gqa=gqa)
    return out


def _fails(error: Exception):
    def run():
        raise RuntimeError(f"{type(error).__name__}: {error}")
    return run


def _row(case, impl, batch, heads, kv_heads, n_q, n_k, d, dtype, **extra) -> dict:
    return {"impl": impl, "case": case, "seq_len": n_k, "q_len": n_q, "head_dim": d, "batch": batch, "heads": heads,
            "kv_heads": kv_heads, "dtype": dtype, "window": WINDOW if case == "window" else None,
            "documents": DOCUMENTS if case == "documents" else None, **extra}


def _time_case(case, q, k, v, cu, dtype, progress_note) -> list[dict]:
    """Every implementation of one case: its error against SDPA's dense-mask result on the same
    inputs, then ms in interleaved rounds (each compiled and warmed first), effective TFLOP/s."""
    from kernels import attention

    batch, heads, n_q, d = q.shape
    kv_heads, n_k = k.shape[1], k.shape[2]
    mod = mask_mod(case, n_q, n_k, cu)
    fns = _impls(case, q, k, v, cu, mod)
    rows, timed, outs = {}, {}, {}
    for name, fn in fns.items():  # each run once (compiled, tuned), its output kept for the error column
        try:
            outs[name] = fn().float()
            timed[name] = fn
        except Exception as e:  # a backend that does not take this case (or runs out of memory)
            rows[name] = _row(case, name, batch, heads, kv_heads, n_q, n_k, d, dtype, ms=None,
                              note=f"failed: {str(e).splitlines()[0][:120] if str(e) else type(e).__name__}")
    ref = next((n for n in ("sdpa_dense_mask", "flex_attention", "sdpa_causal", "sdpa_lower_right") if n in outs), None)
    for name, out in outs.items():  # against SDPA's dense-mask result (FlexAttention's where SDPA could not run)
        err = float((out - outs[ref]).abs().max()) if ref else None
        rows[name] = _row(case, name, batch, heads, kv_heads, n_q, n_k, d, dtype, max_err=err, err_against=ref)
    del outs
    times, failed = interleaved_ms(timed)
    kept = pairs(ours_masks(case, n_q, n_k, cu, heads // kv_heads))
    kv_bytes = 2 * batch * kv_heads * n_k * d * k.element_size()
    for name, err in failed.items():
        rows[name].update(ms=None, note=f"failed: {err}")
    for name, ms in times.items():
        rows[name].update(ms=ms, tflops=4.0 * batch * heads * d * kept / ms / 1e9, pairs=kept,
                          kv_GBps=kv_bytes / ms / 1e6, tokens_per_s=batch * n_q / ms * 1e3)
        if name == "ours":
            rows[name]["config"] = attention.tuned_config_name()
    for r in rows.values():
        log(f"  {progress_note} {r['impl']:16s} " + (f"{r['ms']:.3f} ms, {r['tflops']:.0f} TFLOP/s, KV {r['kv_GBps']:.0f} GB/s"
                                                      if r.get("ms") else r.get("note", "")))
    return list(rows.values())


def bench_masks(seq_lens=(4096, 8192, 16384), decode_lens=(4096, 16384, 65536), head_dim=128, batch=4, heads=16,
                dtype="float16", cases=CASES, progress=None) -> list[dict]:
    """One row per (case, length, implementation). window / documents / gqa: causal self-attention
    at each of seq_lens (gqa: GROUP query heads per K/V head); decode: DECODE's shape, q_lens
    queries against each of decode_lens keys."""
    import torch

    dt = getattr(torch, dtype)
    todo = [(c, n, 0) for c in cases if c != "decode" for n in seq_lens]
    todo += [(c, n, ql) for c in cases if c == "decode" for n in decode_lens for ql in DECODE["q_lens"]]
    out = []
    for idx, (case, n, q_len) in enumerate(todo):
        if progress:
            progress(idx / len(todo), f"masks {case} N={n}" + (f" q_len={q_len}" if q_len else ""))
        if case == "decode":
            b, h, hkv, d = DECODE["batch"], DECODE["heads"], DECODE["kv_heads"], DECODE["head_dim"]
        else:
            b, h, hkv, d = batch, heads, heads // GROUP if case == "gqa" else heads, head_dim
        g = torch.Generator(device="cuda").manual_seed(n + q_len)
        q = torch.randn(b, h, q_len or n, d, device="cuda", dtype=dt, generator=g)
        k, v = (torch.randn(b, hkv, n, d, device="cuda", dtype=dt, generator=g) for _ in range(2))
        cu = masks.document_bounds(n, DOCUMENTS, 0) if case == "documents" else ()
        out += _time_case(case, q, k, v, cu, dtype, f"{case} N={n}" + (f" q={q_len}" if q_len else ""))
        del q, k, v
        torch.cuda.empty_cache()
    if progress:
        progress(1.0, "masks done")
    return out


def note() -> str:
    """What the masks cases are, for the result file and the table."""
    return (f"causal; window {WINDOW} keys; {DOCUMENTS} packed documents; GQA {GROUP}:1; decode batch "
            f"{DECODE['batch']}, {DECODE['heads']} query / {DECODE['kv_heads']} K/V heads, head_dim "
            f"{DECODE['head_dim']}; TFLOP/s over the kept pairs only")

