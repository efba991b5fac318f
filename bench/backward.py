"""Forward + backward: flash_attention through torch.autograd against SDPA FLASH and cuDNN.

Times one forward and one backward (torch.autograd.grad(out, (q, k, v), dO)) and the forward
alone in the same interleaved rounds; the backward is their difference. FLOPs follow
FlashAttention's benchmarks: backward 2.5x the forward, forward + backward 3.5x. Then each
forward + backward is replayed from a CUDA graph: the GPU's time alone, without Python, the
launches and autograd, which bound the eager call at small sizes.
"""
from bench.timing import attention_cases, attention_flops, graph_ms, interleaved_ms, log, sdpa

BWD_SDPA_BACKENDS = ("FLASH_ATTENTION", "CUDNN_ATTENTION")
FWD_BWD_FLOPS = 3.5  # x the forward's FLOPs
BWD_FLOPS = 2.5


def impls() -> dict:
    from kernels.attention import flash_attention

    out = {"ours": lambda q, k, v, causal: flash_attention(q, k, v, causal=causal)}
    for name in BWD_SDPA_BACKENDS:
        out[f"sdpa_{name.lower()}"] = sdpa(name)
    return out


def grads(fn, q, k, v, do, causal):
    """One forward and one backward: dq, dk, dv (nothing accumulates into .grad)."""
    import torch

    return torch.autograd.grad(fn(q, k, v, causal), (q, k, v), do)


def forward_only(fn, q, k, v, causal):
    import torch

    with torch.no_grad():
        return fn(q, k, v, causal)


def bench_backward(seq_lens, head_dims, batch=4, heads=16, causals=(False, True), dtype="float16",
                   implementations=None, progress=None) -> list[dict]:
    """One row per (impl, head_dim, causal, seq_len): ms and TFLOP/s of forward + backward, of the
    forward alone and of the backward (the difference), the CUDA-graph replay's ms, and the max
    error of dq, dk, dv against SDPA EFFICIENT_ATTENTION on the same inputs."""
    implementations = implementations or impls()
    return attention_cases(lambda d, causal, n: _case(implementations, batch, heads, n, d, causal, dtype),
                           "attention fwd+bwd", seq_lens, head_dims, causals, progress)


def _case(implementations, batch, heads, n, d, causal, dtype) -> list[dict]:
    import torch

    dt = getattr(torch, dtype)
    q, k, v = (torch.randn(batch, heads, n, d, device="cuda", dtype=dt, requires_grad=True) for _ in range(3))
    do = torch.randn(batch, heads, n, d, device="cuda", dtype=dt)
    check = [g.float() for g in grads(sdpa("EFFICIENT_ATTENTION"), q, k, v, do, causal)]
    fwd_flops = attention_flops(batch, heads, n, d, causal)
    q2, k2, v2 = (torch.randn_like(t).requires_grad_() for t in (q, k, v))  # fresh inputs for the timed runs
    do2 = torch.randn_like(do)
    case_rows, timed = {}, {}
    for name, fn in implementations.items():
        row = {"impl": name, "head_dim": d, "causal": causal, "seq_len": n, "batch": batch, "heads": heads,
               "dtype": dtype, "flops_convention": "fwd+bwd = 3.5x forward, bwd = 2.5x forward"}
        try:
            got = grads(fn, q, k, v, do, causal)
            err = max(float((g.float() - c).abs().max()) for g, c in zip(got, check, strict=True))
            case_rows[name] = {**row, "max_grad_err_vs_sdpa_efficient": err}
            timed[("both", name)] = lambda fn=fn: grads(fn, q2, k2, v2, do2, causal)
            timed[("fwd", name)] = lambda fn=fn: forward_only(fn, q2, k2, v2, causal)
        except RuntimeError as e:  # a backend that does not support this shape
            case_rows[name] = {**row, "ms": None, "tflops": None, "note": f"failed: {str(e).splitlines()[0][:120]}"}
    # forward + backward and the forward alone in the same rounds: their difference, the backward,
    # is taken between timings of one thermal phase
    times, failed = interleaved_ms(timed)
    for (_, name), err in failed.items():
        case_rows[name].update(ms=None, tflops=None, note=f"failed: {err}")
    for name, row in case_rows.items():
        if ("both", name) in times and ("fwd", name) in times and "note" not in row:
            ms, fwd_ms = times[("both", name)], times[("fwd", name)]
            bwd_ms = ms - fwd_ms
            row.update(ms=ms, tflops=FWD_BWD_FLOPS * fwd_flops / ms / 1e9, fwd_ms=fwd_ms, bwd_ms=bwd_ms,
                       bwd_tflops=BWD_FLOPS * fwd_flops / bwd_ms / 1e9 if bwd_ms > 0 else None)
    for name, row in case_rows.items():
        if row.get("tflops"):
            try:
                g = graph_ms(timed[("both", name)])
                row.update(graph_ms=g, graph_tflops=FWD_BWD_FLOPS * fwd_flops / g / 1e9)
            except RuntimeError as e:  # a call that cannot be captured: the eager figures stand
                row["graph_note"] = f"not captured: {str(e).splitlines()[0][:120]}"
        if name == "ours" and row.get("tflops"):  # what the tuners picked for this case
            from kernels import attention

            row["config"] = f"forward {attention.tuned_config_name()}; backward {attention.tuned_backward_name()}"
        log(f"  {name:24s} d={d:3d} causal={causal!s:5s} N={n:6d}  "
            + (f"{row['tflops']:7.1f} TFLOP/s fwd+bwd, {row['bwd_tflops'] or 0:7.1f} bwd" if row.get("tflops")
               else row["note"]))
    return list(case_rows.values())


def forward_rows(rows: list[dict]) -> list[dict]:
    """The forward alone of each implementation, timed in the backward's interleaved rounds, as
    rows of the forward benchmark (bench/attention.py) for runs that time only the backward."""
    out = []
    for r in rows:
        if r.get("fwd_ms"):
            fwd = attention_flops(r["batch"], r["heads"], r["seq_len"], r["head_dim"], r["causal"])
            # its output was checked through the same call's gradients (they are computed from out and lse)
            check = {k: r[k] for k in ("max_grad_err_vs_sdpa_efficient",) if k in r}
            out.append({k: r[k] for k in ("impl", "head_dim", "causal", "seq_len", "batch", "heads", "dtype")}
                       | {"ms": r["fwd_ms"], "tflops": fwd / r["fwd_ms"] / 1e9, "note": "timed with the backward"}
                       | check)
    return out
