"""The Benchmarks page: recorded (or live) results from `python -m bench` as charts and ratio tables."""
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kernels import results
from viz.figures.style import BLUE, GREY, ORANGE, RED, layout

# ---------------------------------------------------------------- benchmarks
IMPL_LABELS = {
    "ours": "ours (this app's kernel, TRACE off)",
    "ours_gpu_only": "ours, GPU time alone (CUDA graph replay)",
    "sdpa_flash_attention": "SDPA FLASH_ATTENTION",
    "sdpa_cudnn_attention": "SDPA CUDNN_ATTENTION",
    "sdpa_efficient_attention": "SDPA EFFICIENT_ATTENTION",
    "sdpa_math": "SDPA MATH",
    "torch": "torch.softmax",
    "naive": "naive", "safe": "safe", "online": "online", "single_pass": "single-pass",
    "copy": "copy of the same bytes",
}
IMPL_COLORS = {
    "ours": ORANGE, "ours_gpu_only": ORANGE, "sdpa_flash_attention": BLUE, "sdpa_cudnn_attention": "#6A3D9A",
    "sdpa_efficient_attention": "#33A02C", "sdpa_math": GREY,
    "torch": BLUE, "naive": RED, "safe": "#6A3D9A", "online": ORANGE, "single_pass": "#33A02C",
    "copy": GREY,
}


def ordered_runs(recorded: dict) -> list[str]:
    """The recorded runs' names: those that timed the attention forward first (the Benchmarks page
    opens on one, the talk quotes it), each group the newest first, and of one day's runs the one
    with the most parts (forward, backward, softmax) first; a run of the masks alone comes after."""
    return sorted(recorded, key=lambda k: (bool(recorded[k].get("attention")),
                                           str(recorded[k].get("env", {}).get("date", k[5:15]))[:10],
                                           sum(bool(recorded[k].get(p)) for p in ("attention", "backward", "softmax"))),
                  reverse=True)


def bench_measured_on(result: dict) -> str:
    env = result["env"]
    cudnn = f" · cuDNN {env['cudnn']}" if isinstance(env.get("cudnn"), int) else ""
    clk = env.get("clocks") if isinstance(env.get("clocks"), dict) else {}
    sm = (f" · SM {clk['sm_mhz']} of {clk['sm_max_mhz']} MHz at the start"
          if all(isinstance(clk.get(k), int) for k in ("sm_mhz", "sm_max_mhz")) else "")
    return (f"{env['gpu']} · torch {env['torch']} · triton {env['triton']}{cudnn} · "
            f"{env['date'].replace('T', ' ')[:16]} UTC{sm}")


def bench_attention_series(rows: list[dict], head_dim: int, causal: bool) -> dict:
    """{impl: (seq_lens, tflops)} for one panel, skipped measurements left out; where ours was also
    replayed from a CUDA graph, that series too, as "ours_gpu_only"."""
    out = {}
    for r in rows:
        if r["head_dim"] != head_dim or r["causal"] != causal:
            continue
        for impl, tf in ((r["impl"], r.get("tflops")),
                         ("ours_gpu_only", r.get("graph_tflops") if r["impl"] == "ours" else None)):
            if tf:
                xs, ys = out.setdefault(impl, ([], []))
                xs.append(r["seq_len"])
                ys.append(tf)
    return out


def bench_attention_figure(result: dict, key: str = "attention") -> go.Figure:
    """TFLOP/s against seq_len per implementation: head_dim across, causal down. key="backward"
    draws forward + backward (TFLOP/s at 3.5x the forward FLOPs)."""
    rows = result[key]
    dims = sorted({r["head_dim"] for r in rows})
    causals = sorted({r["causal"] for r in rows})
    fig = make_subplots(rows=len(causals), cols=len(dims), shared_xaxes=True, shared_yaxes=True,
                        subplot_titles=[f"head_dim {d}, {'causal' if c else 'full'}" for c in causals for d in dims],
                        vertical_spacing=0.12, horizontal_spacing=0.05)
    peak = result.get("ceilings", {}).get("matmul_fp16_TFLOPs")
    for ri, c in enumerate(causals, start=1):
        for ci, d in enumerate(dims, start=1):
            for impl, (xs, ys) in bench_attention_series(rows, d, c).items():
                fig.add_trace(go.Scatter(
                    x=xs, y=ys, mode="lines+markers", name=IMPL_LABELS.get(impl, impl), legendgroup=impl,
                    showlegend=(ri == 1 and ci == 1),
                    line=dict(color=IMPL_COLORS.get(impl), width={"ours": 4, "ours_gpu_only": 3}.get(impl, 2),
                              dash="dash" if impl == "ours_gpu_only" else None),
                    hovertemplate="N=%{x}<br>%{y:.0f} TFLOP/s<extra>" + IMPL_LABELS.get(impl, impl) + "</extra>",
                ), row=ri, col=ci)
            if peak:
                label = dict(annotation_text=f"fp16 matmul peak {peak:.0f}", annotation_position="bottom right",
                             annotation_font=dict(size=12, color=GREY)) if ci == len(dims) else {}
                fig.add_hline(y=peak, line=dict(color=GREY, dash="dot"), row=ri, col=ci, **label)
    ns = sorted({r["seq_len"] for r in rows})
    fig.update_xaxes(type="log", tickvals=ns, ticktext=[str(n) for n in ns], title_text=None)
    if peak:
        fig.update_yaxes(range=[0, peak * 1.08])
    for ci in range(1, len(dims) + 1):
        fig.update_xaxes(title_text="seq_len N", row=len(causals), col=ci)
    for ri in range(1, len(causals) + 1):
        fig.update_yaxes(title_text="TFLOP/s", row=ri, col=1, rangemode="tozero")
    layout(fig, 560, legend=dict(orientation="h", y=-0.14, x=0), t=40)
    return fig


def bench_softmax_series(rows: list[dict], dtype: str) -> dict:
    """{impl: (cols, GB/s)} for one dtype; where one column count has several row counts, the first."""
    out = {}
    for r in sorted(rows, key=lambda r: (r["cols"], r["rows"])):
        if r["dtype"] != dtype:
            continue
        xs, ys = out.setdefault(r["impl"], ([], []))
        if xs and xs[-1] == r["cols"]:
            continue
        xs.append(r["cols"])
        ys.append(r["GBps"])
    return out


def bench_softmax_figure(result: dict) -> go.Figure:
    """GB/s (bytes read once + written once) against columns per variant, with the copy line."""
    rows = result["softmax"]
    dtypes = sorted({r["dtype"] for r in rows}, reverse=True)
    fig = make_subplots(rows=1, cols=len(dtypes), shared_yaxes=True, subplot_titles=dtypes, horizontal_spacing=0.05)
    copy = result.get("ceilings", {}).get("copy_TBps")
    for ci, dt in enumerate(dtypes, start=1):
        for impl, (xs, ys) in bench_softmax_series(rows, dt).items():
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines+markers", name=IMPL_LABELS.get(impl, impl), legendgroup=impl,
                showlegend=ci == 1,
                line=dict(color=IMPL_COLORS.get(impl), width=2 if impl == "copy" else 3,
                          dash="dash" if impl == "copy" else "solid"),
                hovertemplate="cols=%{x}<br>%{y:.0f} GB/s<extra>" + IMPL_LABELS.get(impl, impl) + "</extra>",
            ), row=1, col=ci)
        if copy:
            label = dict(annotation_text=f"copy of 1 GiB: {copy * 1000:.0f} GB/s", annotation_position="top left",
                         annotation_font=dict(size=12, color=GREY)) if ci == 1 else {}  # above the line, clear of the data
            fig.add_hline(y=copy * 1000, line=dict(color=GREY, dash="dot"), row=1, col=ci, **label)
    cols = sorted({r["cols"] for r in rows})
    fig.update_xaxes(type="log", tickvals=cols, ticktext=[f"{c // 1024}k" for c in cols], title_text="columns per row")
    fig.update_yaxes(title_text="GB/s", row=1, col=1)
    fig.update_yaxes(range=[0, (copy * 1000 if copy else max(r["GBps"] for r in rows)) * 1.15])
    layout(fig, 420, legend=dict(orientation="h", y=-0.28, x=0), t=40)
    return fig


def host_bound_note(result: dict, kind: str = "backward") -> str | None:
    """A sentence on how far ours' eager call stands above its CUDA-graph replay (the GPU's time alone),
    from the run's own figures: the case where it stands furthest; None when the run has no replays."""
    r = results.host_bound(result, kind)
    if r is None:
        return None
    head = "Dashed, and the 'GPU only' columns: ours replayed from a CUDA graph, the GPU's time alone. "
    if r["ms"] < 1.1 * r["graph_ms"]:
        return head + "In every case the eager call takes within 10% of that."
    mask = "causal" if r["causal"] else "full"
    return (head + "Where it stands above the solid line the eager call waits on the host (Triton's launches, "
            f"autograd): most at seq_len {r['seq_len']}, head_dim {r['head_dim']} {mask}, "
            f"{r['ms'] * 1000:.0f} µs a call against {r['graph_ms'] * 1000:.0f} µs of GPU work.")


def bench_ratio_table(result: dict, kind: str = "attention") -> list[dict]:
    """Rows for st.dataframe: ours / each PyTorch backend per attention (or backward) case, and the
    config the forward's tuner picked where the run recorded it (e.g. 'BM256 BN64 w8 s3 split2')."""
    picked = {(r["head_dim"], r["causal"], r["seq_len"]): r["config"] for r in result.get(kind, [])
              if r.get("impl") == "ours" and r.get("config")}
    out = []
    for r in results.ratios(result):
        if r["kind"] != kind:
            continue
        case = (r["head_dim"], r["causal"], r["seq_len"])
        row = {"head_dim": r["head_dim"], "causal": r["causal"], "seq_len": r["seq_len"],
               "ours TFLOP/s": round(r["ours_tflops"], 1) if r["ours_tflops"] else None}
        if picked:
            row["config picked"] = picked.get(case)
        for prefix, suffix in (("vs_", ""), ("gpu_vs_", ", GPU only")):  # GPU only: replayed from a CUDA graph
            for k, v in r.items():
                if k.startswith(prefix):
                    impl = k[len(prefix):]
                    name = IMPL_LABELS.get(impl, impl).replace("SDPA ", "").replace("_ATTENTION", "")
                    row[f"ours / {name}{suffix}"] = round(v, 2) if v else None
        out.append(row)
    return out


def _r2(x):
    return round(x, 2) if x else None


def bench_softmax_ratio_table(result: dict) -> list[dict]:
    return [{"shape": f"{r['rows']} x {r['cols']}", "dtype": r["dtype"],
             "best": r["best"], "best / torch.softmax": _r2(r["best_vs_torch"]),
             "best / 1 GiB copy": round(r["best_vs_copy"], 2) if r["best_vs_copy"] else None,
             "best / same-size copy": (round(r["best_vs_copy_same_size"], 2)
                                       if r.get("best_vs_copy_same_size") else None),
             "online / safe": _r2(r["online_vs_safe"]), "naive / online": _r2(r["naive_vs_online"])}
            for r in results.ratios(result) if r["kind"] == "softmax"]


MASK_IMPLS = {"sdpa_dense_mask": "SDPA, dense mask", "flex_attention": "FlexAttention", "sdpa_causal": "SDPA is_causal",
              "sdpa_lower_right": "SDPA causal_lower_right"}


def bench_masks_table(result: dict) -> list[dict]:
    """Rows for st.dataframe: per masks case, ours' time, TFLOP/s over the pairs the mask keeps, K/V
    GB/s (decode), the config its tuner picked, and each other implementation's time over ours."""
    out = []
    for r in results.ratios(result):
        if r["kind"] != "masks":
            continue
        row = {"case": r["case"], "N": r["seq_len"], "queries": r["q_len"], "ours ms": _r2(r["ours_ms"]),
               "ours TFLOP/s": round(r["ours_tflops"], 1) if r["ours_tflops"] else None,
               "ours K/V GB/s": round(r["ours_kv_GBps"]) if r["ours_kv_GBps"] else None}
        for k, v in r.items():
            if k.startswith("vs_"):
                row[f"{MASK_IMPLS.get(k[3:], k[3:])} / ours"] = _r2(v)
        row["config picked"] = r.get("config")
        out.append(row)
    return out


def bench_small_calls_table(data: dict) -> list[dict]:
    """Rows for st.dataframe: eager forward + backward, ours (graphs) and FLASH per call, then FLASH's
    time over each route's (graphs, no graphs, neither graphs nor launch plans, the operators), and
    the route flash_attention takes at that size by default."""
    out = []
    for r in results.small_call_ratios(data):
        out.append({"N": r["n"], "head_dim": r["head_dim"], "mask": "causal" if r["causal"] else "full",
                    "ours ms": round(r["ours_ms"], 3), "host µs": round(r["ours_host_us"]),
                    "FLASH ms": round(r["flash_ms"], 3), "FLASH host µs": round(r["flash_host_us"]),
                    "graphs": _r2(r["ours_vs_flash"]), "no graphs": _r2(r["ungraphed_vs_flash"]),
                    "neither": _r2(r["unplanned_vs_flash"]), "operators": _r2(r["operators_vs_flash"]),
                    "default": "graphs" if r["graphed_by_default"] else "no graphs"})
    return out
