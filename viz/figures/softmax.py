"""The Softmax page: each variant's passes over one row, the online kernel's running (m, d), overflow,
and accesses per element."""
import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kernels import traffic
from viz.figures.style import BLUE, GREY, ORANGE, RED, discrete_colorscale, layout

# ---------------------------------------------------------------- softmax page
PASSES = traffic.SOFTMAX_PASSES
VARIANT_TITLES = {"naive": "naive", "safe": "safe", "online": "online", "single_pass": "single pass (row on chip)"}
PASS_STATES = ("read", "read_alt", "write", "write_alt", "current", "pending", "pending_alt")
PASS_COLORS = {"read": "#2E6DB4", "read_alt": "#5B8FCB", "write": "#2E9D5B", "write_alt": "#5DBB82",
               "current": "#E8710A", "pending": "#E4E7EB", "pending_alt": "#D2D7DD"}


def softmax_steps(length: int, block: int) -> int:
    """Chunk reads of the slowest variant (safe: 3 passes): the softmax page's step count."""
    return max(len(p) for p in PASSES.values()) * math.ceil(length / block)


def pass_position(length: int, block: int, step: int) -> tuple[int, int]:
    """(pass, chunk) that the streaming kernels are on at this step."""
    n_chunks = math.ceil(length / block)
    return step // n_chunks, step % n_chunks


def pass_states(variant: str, length: int, block: int, step: int) -> np.ndarray:
    """(passes, length) of PASS_STATES names: which element each pass has read/written so far."""
    passes = PASSES[variant]
    if variant == "single_pass":
        block = max(length, 1)  # the whole row is one chunk
        p, c = (0, 0) if step == 0 else (1, 0)
    else:
        p, c = pass_position(length, block, step)
    chunk = np.arange(length) // block  # (length,)
    alt = chunk % 2 == 1
    out = np.empty((len(passes), length), dtype=object)
    for k, (_, writes) in enumerate(passes):
        done_name = np.where(alt, "write_alt" if writes else "read_alt", "write" if writes else "read")
        pend_name = np.where(alt, "pending_alt", "pending")
        if k < p:
            out[k] = done_name
        elif k > p:
            out[k] = pend_name
        else:
            out[k] = np.where(chunk < c, done_name, np.where(chunk == c, "current", pend_name))
    return out


def softmax_passes_figure(variant: str, length: int, block: int, step: int) -> go.Figure:
    """One row of cells per pass; blue = read, green = read and y written, orange = this chunk."""
    states = pass_states(variant, length, block, step)
    code = {s: k for k, s in enumerate(PASS_STATES)}
    z = np.vectorize(code.get)(states).astype(int) if states.size else np.zeros((len(PASSES[variant]), 0))
    loads, stores = traffic.SOFTMAX_ACCESSES[variant]
    labels = [f"pass {k + 1}: {name}" + (" → write y" if w else "") for k, (name, w) in enumerate(PASSES[variant])]
    fig = go.Figure(go.Heatmap(
        z=z, x=np.arange(length), y=labels, zmin=-0.5, zmax=len(PASS_STATES) - 0.5,
        colorscale=discrete_colorscale([PASS_COLORS[s] for s in PASS_STATES]), showscale=False,
        xgap=1 if length <= 128 else 0, ygap=4, hoverinfo="x+y", name=variant))
    fig.update_yaxes(autorange="reversed", showgrid=False, tickfont=dict(size=13))
    fig.update_xaxes(showgrid=False, title_text=None, range=[-0.5, length - 0.5])
    title = (f"<b>{VARIANT_TITLES[variant]}</b>: {len(PASSES[variant])} pass{'es' if len(PASSES[variant]) > 1 else ''}, "
             f"{loads} read{'s' if loads > 1 else ''} + {stores} write = {loads + stores} accesses per element")
    fig.update_layout(title=dict(text=title, x=0, font=dict(size=15)))
    return layout(fig, 70 + 34 * len(PASSES[variant]), t=36)


def online_rescales(m: np.ndarray) -> list[tuple[int, float]]:
    """(chunk, e^(m_old - m_new)) for each chunk after the first where the kernel's running max grew."""
    return [(c, float(np.exp(np.float64(m[c - 1]) - np.float64(m[c])))) for c in range(1, len(m)) if m[c] > m[c - 1]]


def online_table(m: np.ndarray, d: np.ndarray, ref_m: np.ndarray, ref_d: np.ndarray) -> list[dict]:
    """Per chunk: the kernel's (m, d), the rescale factor where m grew, the float64 check."""
    factors = dict(online_rescales(m))
    return [{
        "chunk": c,
        "m": float(m[c]),
        "d": float(d[c]),
        "d ×": factors.get(c),
        "m (f64)": float(ref_m[c]),
        "d (f64)": float(ref_d[c]),
    } for c in range(len(m))]


def online_state_figure(x: np.ndarray, m: np.ndarray, d: np.ndarray, block: int, chunk: int | None,
                        ref_m: np.ndarray | None = None, ref_d: np.ndarray | None = None) -> go.Figure:
    """Top: the row and the kernel's running max after each chunk; bottom: its running sum d."""
    n_chunks = len(m)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=False, vertical_spacing=0.2, row_heights=[0.6, 0.4],
                        subplot_titles=("elements x, and the running max m after each chunk",
                                        "running sum d after each chunk"))
    fig.add_trace(go.Scatter(x=np.arange(len(x)), y=x, mode="markers", marker=dict(size=5, color=GREY),
                             name="x", hovertemplate="x[%{x}] = %{y:.4g}<extra></extra>"), row=1, col=1)
    mx, my = [], []
    for c in range(n_chunks):  # m after chunk c, drawn across chunk c
        lo, hi = c * block - 0.5, min((c + 1) * block, len(x)) - 0.5
        mx += [lo, hi, None]
        my += [float(m[c]), float(m[c]), None]
    fig.add_trace(go.Scatter(x=mx, y=my, mode="lines", line=dict(color=BLUE, width=3), name="m (kernel)"), row=1, col=1)
    rescales = online_rescales(m)
    for c, factor in rescales if len(rescales) <= 12 else ():  # more would bury the row
        fig.add_annotation(x=c * block, y=float(m[c]), text=f"×{factor:.3g}", showarrow=True, arrowhead=0,
                           ax=0, ay=-26, font=dict(size=13, color=ORANGE), row=1, col=1)
    chunks = np.arange(n_chunks)
    grew = np.array([c > 0 and m[c] > m[c - 1] for c in chunks])
    fig.add_trace(go.Bar(x=chunks, y=d, marker_color=[ORANGE if g else BLUE for g in grew], name="d (kernel)",
                         hovertemplate="chunk %{x}<br>d = %{y:.6g}<extra></extra>"), row=2, col=1)
    if ref_d is not None:
        fig.add_trace(go.Scatter(x=chunks, y=ref_d, mode="markers", name="float64 reference",
                                 marker=dict(symbol="line-ew-open", size=22, color="#1f2430", line=dict(width=2)),
                                 hovertemplate="chunk %{x}<br>d (float64) = %{y:.6g}<extra></extra>"), row=2, col=1)
    if chunk is not None:
        lo, hi = chunk * block - 0.5, min((chunk + 1) * block, len(x)) - 0.5
        fig.add_vrect(x0=lo, x1=hi, fillcolor=ORANGE, opacity=0.15, line_width=0, row=1, col=1)
        fig.add_vrect(x0=chunk - 0.45, x1=chunk + 0.45, fillcolor=ORANGE, opacity=0.15, line_width=0, row=2, col=1)
    fig.update_xaxes(title_text="chunk (orange: m grew, d rescaled)", tickvals=chunks if n_chunks <= 32 else None, row=2, col=1)
    fig.update_annotations(font=dict(size=14), selector=dict(showarrow=False))
    fig.update_layout(legend=dict(orientation="h", y=1.12, yanchor="bottom", x=1, xanchor="right"), bargap=0.3)
    return layout(fig, 460, t=70)


def overflow_figure(x16: np.ndarray, outputs: dict, ref: np.ndarray) -> go.Figure:
    """Kernel outputs on float16 input x100, one panel per variant, float64 reference as a line."""
    variants = list(outputs)
    fig = make_subplots(rows=1, cols=len(variants), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[f"{v}: {overflow_summary(outputs[v], ref)}" for v in variants])
    idx = np.arange(len(x16))
    for k, v in enumerate(variants):
        y = outputs[v].astype(np.float64)
        ok = np.isfinite(y)
        fig.add_trace(go.Bar(x=idx[ok], y=y[ok], marker_color=BLUE, name="kernel output", showlegend=k == 0,
                             hovertemplate="y[%{x}] = %{y:.4g}<extra></extra>"), row=1, col=k + 1)
        if (~ok).any():  # NaN / inf outputs: red ticks along the bottom
            fig.add_trace(go.Scatter(x=idx[~ok], y=np.zeros((~ok).sum()), mode="markers", name="NaN / inf",
                                     marker=dict(symbol="x", size=9, color=RED), showlegend=k == 0,
                                     hovertemplate="y[%{x}] is NaN or inf<extra></extra>"), row=1, col=k + 1)
        fig.add_trace(go.Scatter(x=idx, y=ref, mode="lines", line=dict(color="#1f2430", width=1.5, dash="dot"),
                                 name="float64 reference", showlegend=k == 0), row=1, col=k + 1)
        fig.update_xaxes(title_text="element", row=1, col=k + 1)
    fig.update_annotations(font=dict(size=14))
    fig.update_layout(legend=dict(orientation="h", y=-0.25, x=0))
    return layout(fig, 300, t=40)


def overflow_summary(y: np.ndarray, ref: np.ndarray) -> str:
    y = y.astype(np.float64)
    bad = int((~np.isfinite(y)).sum())
    if bad:
        return f"{bad} of {y.size} NaN/inf"
    return f"finite, max err {np.max(np.abs(y - ref)):.1e}"


def softmax_access_rows(length: int, counts: dict) -> list[dict]:
    """Accesses per element: the model (kernels/traffic.py) next to the kernels' own counts."""
    rows = []
    for variant in traffic.SOFTMAX_VARIANTS:
        model = traffic.softmax(variant, 1, length)
        got = counts.get(variant)
        rows.append({
            "variant": VARIANT_TITLES[variant],
            "passes": len(PASSES[variant]),
            "model: loads + stores": f"{model['loads']:,} + {model['stores']:,}",
            "per element (model)": traffic.total(model) / length,
            "counted: loads + stores": f"{got['loads']:,} + {got['stores']:,}" if got else None,
            "per element (counted)": traffic.total(got) / length if got else None,
            "equal?": "—" if got is None else (
                "✓" if got == {"loads": model["loads"], "stores": model["stores"]} else "✗ differs"),
        })
    return rows
