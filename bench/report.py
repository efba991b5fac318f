"""The table `python -m bench` prints: ours / PyTorch per case, from kernels.results.ratios."""
from kernels.results import ratios


def _cells(r: dict, names: list, width: dict) -> str:
    return " ".join(f"{r[n]:{width[n]}.2f}" if r.get(n) else f"{'-':>{width[n]}}" for n in names)


def table(result: dict) -> str:
    env = result["env"]
    lines = [f"# {env['gpu']} · torch {env['torch']} · triton {env['triton']} · {env['date']}"]
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
        lines.append(f"{'d':>4} {'causal':>6} {'N':>6} {'ours':>7} " + " ".join(f"{labels[n]:>{width[n]}}" for n in names))
        for r in rows:
            lines.append(f"{r['head_dim']:4d} {r['causal']!s:>6} {r['seq_len']:6d} {r['ours_tflops'] or 0:7.1f} "
                         + _cells(r, names, width) + (f"  {r['config']}" if r.get("config") else ""))
    mk = [r for r in rat if r["kind"] == "masks"]
    if mk:
        names = sorted({k for r in mk for k in r if k.startswith("vs_")})
        lines.append("masks (" + result.get("masks_note", "") + "); vs_X = X's time / ours (above 1: ours faster)")
        lines.append(f"{'case':>10} {'N':>6} {'q':>3} {'ours ms':>9} {'TFLOP/s':>8} {'KV GB/s':>8} "
                     + " ".join(f"{n:>22}" for n in names))
        for r in mk:
            lines.append(f"{r['case']:>10} {r['seq_len']:6d} {r['q_len']:3d} {r['ours_ms'] or 0:9.3f} "
                         f"{r['ours_tflops'] or 0:8.1f} {r['ours_kv_GBps'] or 0:8.0f} "
                         + " ".join(f"{r[n]:22.2f}" if r.get(n) else f"{'-':>22}" for n in names)
                         + (f"  {r['config']}" if r.get("config") else ""))
    sm = [r for r in rat if r["kind"] == "softmax"]
    if sm:
        names = ["best_vs_torch", "best_vs_copy", "best_vs_copy_same_size", "online_vs_safe", "naive_vs_online"]
        width = dict.fromkeys(names, 12)
        lines.append("softmax (best = single_pass where the row fits, else split_row or online)")
        lines.append(f"{'shape':>16} {'dtype':>8} {'best':>12} " + " ".join(f"{n[:12]:>12}" for n in names))
        for r in sm:
            lines.append(f"{r['rows']:>7}x{r['cols']:<8} {r['dtype']:>8} {r['best']:>12} " + _cells(r, names, width))
    return "\n".join(lines)
