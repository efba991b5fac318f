"""`python -m kernels.bench_backward`: forward + backward of the app's attention against PyTorch.

Times one forward and one backward (out = attention(q, k, v); torch.autograd.grad(out, (q, k, v), dO))
of flash_attention (the autotuned Triton kernels, TRACE and COUNT off) and of torch SDPA pinned to
its FLASH_ATTENTION and CUDNN_ATTENTION backends, and the forward alone; the backward's time is the
difference. FLOPs follow FlashAttention's benchmarks: forward 4 * B * H * N^2 * D (halved when
causal), backward 2.5x the forward, forward + backward 3.5x the forward.
Method: triton.testing.do_bench (CUDA events, warm-up, median of repeats), fresh random inputs for
the timed runs; then forward + backward once more replayed from a CUDA graph, the GPU's time alone
(at small sizes the eager call waits on the host: launches, autograd). Progress on stderr, a table
on stdout, everything in a JSON file.

Not for: correctness (tests/test_backward.py), or anything without CUDA (it refuses with a message).
"""
import sys

from kernels.bench import _interleaved_ms, _log, _sdpa, attention_flops, vs_ours
from kernels.bench import main as bench_main

BWD_SDPA_BACKENDS = ("FLASH_ATTENTION", "CUDNN_ATTENTION")
FWD_BWD_FLOPS = 3.5  # x the forward's FLOPs: the backward does 2.5x (FlashAttention's convention)
BWD_FLOPS = 2.5


def backward_impls() -> dict:
    from kernels.attention import flash_attention

    impls = {"ours": lambda q, k, v, causal: flash_attention(q, k, v, causal=causal)}
    for name in BWD_SDPA_BACKENDS:
        impls[f"sdpa_{name.lower()}"] = _sdpa(name)
    return impls


def _grads(fn, q, k, v, do, causal):
    """One forward and one backward: dq, dk, dv (nothing accumulates into .grad)."""
    import torch

    return torch.autograd.grad(fn(q, k, v, causal), (q, k, v), do)


def _graph_ms(fn) -> float:
    """Median ms of fn replayed from a CUDA graph (triton.testing.do_bench_cudagraph)."""
    import triton

    return float(triton.testing.do_bench_cudagraph(fn, rep=100, return_mode="median"))


def _forward_only(fn, q, k, v, causal):
    import torch

    with torch.no_grad():
        return fn(q, k, v, causal)


def bench_backward(seq_lens, head_dims, batch=4, heads=16, causals=(False, True), dtype="float16",
                   impls=None, progress=None) -> list[dict]:
    """One row per (impl, head_dim, causal, seq_len): ms and TFLOP/s of forward + backward (3.5x the
    forward's FLOPs), of the forward alone and of the backward (the difference, 2.5x), and the max
    error of dq, dk, dv against SDPA EFFICIENT_ATTENTION on the same inputs."""
    import torch

    impls = impls or backward_impls()
    dt = getattr(torch, dtype)
    rows = []
    cases = [(d, c, n) for d in head_dims for c in causals for n in seq_lens]
    for idx, (d, causal, n) in enumerate(cases):
        if progress:
            progress(idx / len(cases), f"attention fwd+bwd d={d} causal={causal} N={n}")
        q, k, v = (torch.randn(batch, heads, n, d, device="cuda", dtype=dt, requires_grad=True) for _ in range(3))
        do = torch.randn(batch, heads, n, d, device="cuda", dtype=dt)
        check = [g.float() for g in _grads(_sdpa("EFFICIENT_ATTENTION"), q, k, v, do, causal)]
        fwd_flops = attention_flops(batch, heads, n, d, causal)
        # fresh inputs for the timed runs: same shapes, new values, the same for every implementation
        q2, k2, v2 = (torch.randn_like(t).requires_grad_() for t in (q, k, v))
        do2 = torch.randn_like(do)
        case_rows, timed = {}, {}
        for name, fn in impls.items():
            row = {"impl": name, "head_dim": d, "causal": causal, "seq_len": n, "batch": batch, "heads": heads,
                   "dtype": dtype, "flops_convention": "fwd+bwd = 3.5x forward, bwd = 2.5x forward"}
            try:
                got = _grads(fn, q, k, v, do, causal)
                err = max(float((g.float() - c).abs().max()) for g, c in zip(got, check))
                case_rows[name] = {**row, "max_grad_err_vs_sdpa_efficient": err}
                timed[("both", name)] = lambda fn=fn: _grads(fn, q2, k2, v2, do2, causal)
                timed[("fwd", name)] = lambda fn=fn: _forward_only(fn, q2, k2, v2, causal)
            except RuntimeError as e:  # a backend that does not support this shape
                case_rows[name] = {**row, "ms": None, "tflops": None,
                                   "note": f"failed: {str(e).splitlines()[0][:120]}"}
        # forward + backward and the forward alone in the same interleaved rounds: their difference
        # (the backward) is taken between timings of one thermal phase
        times, failed = _interleaved_ms(timed)
        for (_, name), err in failed.items():
            case_rows[name].update(ms=None, tflops=None, note=f"failed: {err}")
        for name, row in case_rows.items():
            if ("both", name) in times and ("fwd", name) in times and "note" not in row:
                ms, fwd_ms = times[("both", name)], times[("fwd", name)]
                bwd_ms = ms - fwd_ms
                row.update(ms=ms, tflops=FWD_BWD_FLOPS * fwd_flops / ms / 1e9, fwd_ms=fwd_ms, bwd_ms=bwd_ms,
                           bwd_tflops=BWD_FLOPS * fwd_flops / bwd_ms / 1e9 if bwd_ms > 0 else None)
        # the same calls replayed from a CUDA graph: GPU time alone, without the host's launches and
        # autograd's bookkeeping, which bound the eager call at small sizes
        for name, row in case_rows.items():
            if row.get("tflops"):
                try:
                    g = _graph_ms(timed[("both", name)])
                    row.update(graph_ms=g, graph_tflops=FWD_BWD_FLOPS * fwd_flops / g / 1e9)
                except RuntimeError as e:  # a call that cannot be captured: the eager figures stand
                    row["graph_note"] = f"not captured: {str(e).splitlines()[0][:120]}"
        for name, row in case_rows.items():
            rows.append(row)
            _log(f"  {name:24s} d={d:3d} causal={causal!s:5s} N={n:6d}  "
                 + (f"{row['tflops']:7.1f} TFLOP/s fwd+bwd, {row['bwd_tflops'] or 0:7.1f} bwd"
                    if row["tflops"] else row["note"]))
        del q, k, v, do, q2, k2, v2, do2, check
        torch.cuda.empty_cache()
    if progress:
        progress(1.0, "attention fwd+bwd done")
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    """ours / each SDPA backend in fwd+bwd TFLOP/s, per (head_dim, causal, seq_len)."""
    return vs_ours(rows, "backward")


def main(argv=None) -> int:
    """`python -m kernels.bench_backward ARGS` is `python -m kernels.bench --only backward ARGS`."""
    return bench_main(["--only", "backward", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
