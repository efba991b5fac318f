"""Attention forward: TFLOP/s of flash_attention against SDPA pinned to each of its backends."""
from bench.timing import attention_cases, attention_flops, interleaved_ms, log, sdpa

SDPA_BACKENDS = ("FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION", "MATH")
MATH_MAX_SEQ_LEN = 4096  # MATH materializes B*H*N*N scores: 2 GiB at N=4096, B=4, H=16


def impls() -> dict:
    from kernels.attention import flash_attention

    out = {"ours": lambda q, k, v, causal: flash_attention(q, k, v, causal=causal)}
    for name in SDPA_BACKENDS:
        out[f"sdpa_{name.lower()}"] = sdpa(name)
    return out


def bench_attention(seq_lens, head_dims, batch=4, heads=16, dtype="float16", causals=(False, True),
                    implementations=None, progress=None) -> list[dict]:
    """One row per (impl, head_dim, causal, seq_len): ms, TFLOP/s, max error against SDPA
    EFFICIENT_ATTENTION on the same inputs. Timed on fresh inputs, the same for every implementation,
    in interleaved rounds; ours records the config its tuner picked."""
    implementations = implementations or impls()
    return attention_cases(lambda d, causal, n: _case(implementations, batch, heads, n, d, causal, dtype),
                           "attention", seq_lens, head_dims, causals, progress)


def _case(implementations, batch, heads, n, d, causal, dtype) -> list[dict]:
    import torch

    from kernels import attention

    dt = getattr(torch, dtype)
    q, k, v = (torch.randn(batch, heads, n, d, device="cuda", dtype=dt) for _ in range(3))
    check = sdpa("EFFICIENT_ATTENTION")(q, k, v, causal).float()
    q2, k2, v2 = (torch.randn_like(q) for _ in range(3))  # fresh inputs for the timed runs
    case_rows, timed = {}, {}
    for name, fn in implementations.items():
        row = {"impl": name, "head_dim": d, "causal": causal, "seq_len": n, "batch": batch, "heads": heads,
               "dtype": dtype}
        if name == "sdpa_math" and n > MATH_MAX_SEQ_LEN:
            case_rows[name] = {**row, "ms": None, "tflops": None, "note": f"skipped: N > {MATH_MAX_SEQ_LEN}"}
            continue
        try:
            out = fn(q, k, v, causal)
            case_rows[name] = {**row, "max_err_vs_sdpa_efficient": float((out.float() - check).abs().max())}
            timed[name] = lambda fn=fn: fn(q2, k2, v2, causal)
        except RuntimeError as e:  # a backend that does not support this shape
            case_rows[name] = {**row, "ms": None, "tflops": None, "note": f"failed: {str(e).splitlines()[0][:120]}"}
    times, failed = interleaved_ms(timed)
    for name, err in failed.items():
        case_rows[name].update(ms=None, tflops=None, note=f"failed: {err}")
    for name, ms in times.items():
        case_rows[name].update(ms=ms, tflops=attention_flops(batch, heads, n, d, causal) / ms / 1e9)
        if name == "ours":
            case_rows[name]["config"] = attention.tuned_config_name()
    for name, row in case_rows.items():
        log(f"  {name:24s} d={d:3d} causal={causal!s:5s} N={n:6d}  "
            + (f"{row['tflops']:7.1f} TFLOP/s" if row["tflops"] else row["note"])
            + (f"  ({row['config']})" if row.get("config") else ""))
    return list(case_rows.values())
