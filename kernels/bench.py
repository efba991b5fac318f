"""`python -m kernels.bench`: the app's own kernels (TRACE off) against PyTorch on the same GPU.

Attention forward: TFLOP/s (4 * B * H * N^2 * D, halved when causal) of flash_attention against
torch SDPA pinned to its FLASH_ATTENTION, CUDNN_ATTENTION, EFFICIENT_ATTENTION and MATH backends.
Softmax: GB/s (bytes read once + written once) of every variant against torch.softmax. Ceilings
measured in the same run: device-to-device copy bandwidth and fp16 matmul throughput.
Method: triton.testing.do_bench (CUDA events, warm-up, median of repeats), fresh random inputs
for every measurement. Progress on stderr, a table on stdout, everything in a JSON file.

Not for: correctness (tests/), or anything without CUDA (it refuses with a message).
"""
import argparse
import datetime
import json
import platform
import sys
import time

from kernels import backend

SDPA_BACKENDS = ("FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION", "MATH")
MATH_MAX_SEQ_LEN = 4096  # MATH materializes B*H*N*N scores: 2 GiB at N=4096, B=4, H=16


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _median_ms(fn, warmup=25, rep=100) -> float:
    import triton

    return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


TIME_ROUNDS = 3


def _interleaved_ms(fns: dict, rounds: int = TIME_ROUNDS) -> tuple[dict, dict]:
    """({name: ms}, {name: error}): each implementation's do_bench median, timed in interleaved
    rounds (kernels.attention.interleaved_medians, the forward tuner's method)."""
    from kernels.attention import interleaved_medians

    return interleaved_medians(fns, rounds, lambda fn: _median_ms(fn))


def environment() -> dict:
    import torch
    import triton

    return {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "timing_rounds": TIME_ROUNDS,  # the implementations of a case, timed in this many interleaved rounds
    }


def ceilings() -> dict:
    """Copy bandwidth (bytes read + written) and fp16 matmul throughput, measured now."""
    import torch

    n = 1 << 28  # 1 GiB of fp32
    src = torch.randn(n, device="cuda")
    dst = torch.empty_like(src)
    ms = _median_ms(lambda: dst.copy_(src))
    copy_tbs = 2 * src.numel() * 4 / ms / 1e9
    del src, dst
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.float16) for _ in range(2))
    ms = _median_ms(lambda: a @ b)
    mm_tflops = 2 * 8192**3 / ms / 1e9
    return {"copy_TBps": copy_tbs, "matmul_fp16_TFLOPs": mm_tflops}


# ------------------------------------------------------------------------------- attention
def attention_flops(batch, heads, seq_len, head_dim, causal) -> float:
    f = 4.0 * batch * heads * seq_len * seq_len * head_dim
    return f / 2 if causal else f


def _sdpa(name):
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    be = getattr(SDPBackend, name)

    def run(q, k, v, causal):
        with sdpa_kernel([be]):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return run


def attention_impls() -> dict:
    from kernels.attention import flash_attention

    impls = {"ours": lambda q, k, v, causal: flash_attention(q, k, v, causal=causal)}
    for name in SDPA_BACKENDS:
        impls[f"sdpa_{name.lower()}"] = _sdpa(name)
    return impls


def bench_attention(seq_lens, head_dims, batch=4, heads=16, dtype="float16", causals=(False, True),
                    impls=None, progress=None) -> list[dict]:
    """One row per (impl, head_dim, causal, seq_len): ms, TFLOP/s, max error against SDPA
    EFFICIENT_ATTENTION on the same inputs. The timings use fresh inputs, the same for every
    implementation, timed in interleaved rounds (_interleaved_ms)."""
    import torch

    impls = impls or attention_impls()
    dt = getattr(torch, dtype)
    rows = []
    cases = [(d, c, n) for d in head_dims for c in causals for n in seq_lens]
    for idx, (d, causal, n) in enumerate(cases):
        if progress:
            progress(idx / len(cases), f"attention d={d} causal={causal} N={n}")
        q, k, v = (torch.randn(batch, heads, n, d, device="cuda", dtype=dt) for _ in range(3))
        check = _sdpa("EFFICIENT_ATTENTION")(q, k, v, causal).float()
        q2, k2, v2 = (torch.randn_like(q) for _ in range(3))  # fresh inputs for the timed runs
        case_rows, timed = {}, {}
        for name, fn in impls.items():
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
                case_rows[name] = {**row, "ms": None, "tflops": None,
                                   "note": f"failed: {str(e).splitlines()[0][:120]}"}
        times, failed = _interleaved_ms(timed)
        for name, err in failed.items():
            case_rows[name].update(ms=None, tflops=None, note=f"failed: {err}")
        for name, ms in times.items():
            case_rows[name].update(ms=ms, tflops=attention_flops(batch, heads, n, d, causal) / ms / 1e9)
            if name == "ours":  # the config the forward's tuner picked for this case
                from kernels import attention

                case_rows[name]["config"] = attention.tuned_config_name()
        for name, row in case_rows.items():
            rows.append(row)
            _log(f"  {name:24s} d={d:3d} causal={causal!s:5s} N={n:6d}  "
                 + (f"{row['tflops']:7.1f} TFLOP/s" if row["tflops"] else row["note"])
                 + (f"  ({row['config']})" if row.get("config") else ""))
        del q, k, v, q2, k2, v2, check
        torch.cuda.empty_cache()
    if progress:
        progress(1.0, "attention done")
    return rows


# --------------------------------------------------------------------------------- softmax
SOFTMAX_SHAPES_ON_CHIP = [(4096, 4096), (8192, 8192), (8192, 16384)]
SOFTMAX_SHAPES_LONG = [(1024, 262144), (256, 1048576)]


def bench_softmax(shapes, dtypes=("float32", "float16"), progress=None) -> list[dict]:
    import torch

    from kernels import softmax

    rows = []
    cases = [(s, d) for s in shapes for d in dtypes]
    for idx, ((r, c), dtype) in enumerate(cases):
        if progress:
            progress(idx / len(cases), f"softmax {r}x{c} {dtype}")
        dt = getattr(torch, dtype)
        x = torch.randn(r, c, device="cuda", dtype=dt)
        nbytes = 2 * r * c * x.element_size()  # read once + write once: the minimum
        ref = torch.softmax(x.float(), dim=-1)
        y = torch.empty_like(x)
        # a device copy of the same bytes: the ceiling at this size (small inputs never reach the
        # 1 GiB copy's bandwidth: H100, 2026-11-23, 4096 x 4096 fp16 copied at 2.37 of 3.00 TB/s)
        impls = {"copy": lambda x: y.copy_(x), "torch": lambda x: torch.softmax(x, dim=-1)}
        for variant in softmax.VARIANTS:
            if variant == "single_pass" and c > softmax.SINGLE_PASS_MAX_COLS:
                continue
            impls[variant] = lambda x, variant=variant: softmax.softmax(x, variant=variant)
        for name, fn in impls.items():
            err = float((fn(x).float() - (x.float() if name == "copy" else ref)).abs().max())
            x2 = torch.randn_like(x)
            ms = _median_ms(lambda: fn(x2))
            rows.append({"impl": name, "rows": r, "cols": c, "dtype": dtype, "ms": ms,
                         "GBps": nbytes / ms / 1e6, "max_err": err})
            _log(f"  softmax {name:12s} {r}x{c} {dtype:8s} {rows[-1]['GBps']:8.0f} GB/s")
        del x, y, ref
        torch.cuda.empty_cache()
    if progress:
        progress(1.0, "softmax done")
    return rows


# ------------------------------------------------------------------------------- small run
def small_run(progress=None) -> dict:
    """The Benchmarks page's live run, bounded: seq_len 1024 and 2048, head_dim 64, batch 2, 8 heads,
    causal or not; softmax 4096 x 4096 float32; the ceilings. `progress(fraction, message)`.
    `seconds` in the result is its wall time, compiling and tuning included (the first run in a
    process compiles every candidate config)."""
    progress = progress or (lambda f, m: None)
    t0 = time.perf_counter()
    progress(0.0, "ceilings")
    result = {"env": environment(), "ceilings": ceilings()}
    result["attention"] = bench_attention([1024, 2048], [64], batch=2, heads=8,
                                          progress=lambda f, m: progress(0.1 + 0.6 * f, m))
    result["softmax"] = bench_softmax([(4096, 4096)], dtypes=("float32",),
                                      progress=lambda f, m: progress(0.7 + 0.3 * f, m))
    result["seconds"] = time.perf_counter() - t0
    progress(1.0, "done")
    return result


# ----------------------------------------------------------------------------------- report
def vs_ours(rows: list[dict], kind: str = "attention") -> list[dict]:
    """ours / each other implementation in TFLOP/s, per (head_dim, causal, seq_len); where the run
    also replayed each call from a CUDA graph (graph_tflops: GPU time alone), gpu_vs_NAME too."""
    by_key = {}
    for r in rows:
        by_key.setdefault((r["head_dim"], r["causal"], r["seq_len"]), {})[r["impl"]] = r
    out = []
    for (d, causal, n), impls in sorted(by_key.items()):
        ours = impls.get("ours", {})
        row = {"kind": kind, "head_dim": d, "causal": causal, "seq_len": n, "ours_tflops": ours.get("tflops")}
        for name, r in impls.items():
            if name != "ours":
                row[f"vs_{name}"] = _ratio(ours.get("tflops"), r.get("tflops"))
        if any(r.get("graph_tflops") for r in impls.values()):
            for name, r in impls.items():
                if name != "ours":
                    row[f"gpu_vs_{name}"] = _ratio(ours.get("graph_tflops"), r.get("graph_tflops"))
        out.append(row)
    return out


def _ratio(a, b):
    return a / b if (a and b) else None


def ratios(result: dict) -> list[dict]:
    """ours / each SDPA backend (forward; forward + backward); softmax variant ratios."""
    out = vs_ours(result.get("attention", []), "attention") + vs_ours(result.get("backward", []), "backward")
    sm = {}
    for r in result.get("softmax", []):
        sm.setdefault((r["rows"], r["cols"], r["dtype"]), {})[r["impl"]] = r["GBps"]
    copy = result.get("ceilings", {}).get("copy_TBps")
    for (r, c, dtype), impls in sorted(sm.items()):
        best = impls.get("single_pass") or impls.get("online")
        out.append({
            "kind": "softmax", "rows": r, "cols": c, "dtype": dtype,
            "best_vs_torch": best / impls["torch"],
            "best_vs_copy": best / (copy * 1000) if copy else None,
            "best_vs_copy_same_size": best / impls["copy"] if impls.get("copy") else None,
            "online_vs_safe": impls["online"] / impls["safe"],
            "naive_vs_online": impls["naive"] / impls["online"],
        })
    return out


def table(result: dict) -> str:
    lines = [f"# {result['env']['gpu']} · torch {result['env']['torch']} · triton {result['env']['triton']} "
             f"· {result['env']['date']}"]
    c = result.get("ceilings", {})
    if c:
        lines.append(f"ceilings: copy {c['copy_TBps']:.2f} TB/s, fp16 matmul {c['matmul_fp16_TFLOPs']:.0f} TFLOP/s")
    rat = ratios(result)
    for kind, title in (("attention", "attention fwd (TFLOP/s of ours, and ours / PyTorch)"),
                        ("backward", "attention forward + backward (TFLOP/s of ours at 3.5x forward FLOPs, "
                                     "and ours / PyTorch)")):
        rows = [r for r in rat if r["kind"] == kind]
        if not rows:
            continue
        names = [k for k in rows[0] if k.startswith(("vs_", "gpu_vs_"))]
        lines.append(title)
        if any(n.startswith("gpu_") for n in names):
            lines.append("(gpu: the same call replayed from a CUDA graph, the GPU's time alone)")
        labels = {n: n[3:] if n.startswith("vs_") else "gpu " + n[7:] for n in names}
        width = {n: max(22, len(labels[n])) for n in names}
        lines.append(f"{'d':>4} {'causal':>6} {'N':>6} {'ours':>7} "
                     + " ".join(f"{labels[n]:>{width[n]}}" for n in names))
        for r in rows:
            cells = " ".join(f"{r[n]:{width[n]}.2f}" if r.get(n) else f"{'-':>{width[n]}}" for n in names)
            lines.append(f"{r['head_dim']:4d} {r['causal']!s:>6} {r['seq_len']:6d} {r['ours_tflops'] or 0:7.1f} {cells}")
    sm = [r for r in rat if r["kind"] == "softmax"]
    if sm:
        lines.append("softmax (best = single_pass where the row fits, else online)")
        lines.append(f"{'shape':>16} {'dtype':>8} {'best/torch':>10} {'best/copy':>9} {'best/copy same size':>19} "
                     f"{'online/safe':>11} {'naive/online':>12}")
        for r in sm:
            same = f"{r['best_vs_copy_same_size']:19.2f}" if r.get("best_vs_copy_same_size") else f"{'-':>19}"
            lines.append(f"{r['rows']:>7}x{r['cols']:<8} {r['dtype']:>8} {r['best_vs_torch']:10.2f} "
                         f"{r['best_vs_copy'] or 0:9.2f} {same} {r['online_vs_safe']:11.2f} {r['naive_vs_online']:12.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=("attention", "softmax", "backward", "all"), nargs="+", default=["all"],
                    help="one or more parts; backward: forward + backward against SDPA (kernels/bench_backward.py)")
    ap.add_argument("--seq-lens", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    ap.add_argument("--head-dims", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--dtype", choices=("float16", "bfloat16"), default="float16")
    ap.add_argument("--quick", action="store_true", help="seq_len 1024 and 4096, one softmax shape each")
    ap.add_argument("--json", default=None, help="write every figure here (default: print the path used)")
    args = ap.parse_args(argv)
    if backend.INTERPRET:
        print("kernels.bench needs a CUDA GPU: this machine runs the kernels in Triton's interpreter, "
              "where timings mean nothing. The recorded H100 results are in kernels/results/.", file=sys.stderr)
        return 2
    if args.quick:
        args.seq_lens = [1024, 4096]
    result = {"env": environment(), "args": vars(args)}
    _log(f"{result['env']['gpu']}: measuring ceilings")
    result["ceilings"] = ceilings()
    parts = {"attention", "softmax", "backward"} if "all" in args.only else set(args.only)
    if "attention" in parts:
        result["attention"] = bench_attention(args.seq_lens, args.head_dims, args.batch, args.heads, args.dtype)
    if "softmax" in parts:
        shapes = ([SOFTMAX_SHAPES_ON_CHIP[0], SOFTMAX_SHAPES_LONG[0]] if args.quick
                  else SOFTMAX_SHAPES_ON_CHIP + SOFTMAX_SHAPES_LONG)
        result["softmax"] = bench_softmax(shapes)
    if "backward" in parts:
        from kernels import bench_backward

        result["backward"] = bench_backward.bench_backward(args.seq_lens, args.head_dims, args.batch, args.heads,
                                                           dtype=args.dtype)
        result["flops_convention"] = "forward 4*B*H*N^2*D (halved when causal); backward 2.5x; fwd+bwd 3.5x"
    result["ratios"] = ratios(result)
    path = args.json or f"bench-{datetime.date.today().isoformat()}.json"
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(table(result))
    _log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
