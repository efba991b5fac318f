"""The Softmax page: each variant's passes over one row, the online kernel's running (m, d), overflow,
and accesses per element."""
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kernels import reference, steps, traffic
from viz.figures.style import BLUE, GREY, ORANGE, RED, discrete_colorscale, layout

# ---------------------------------------------------------------- softmax page
PASSES = traffic.SOFTMAX_PASSES
VARIANT_TITLES = {"naive": "naive", "safe": "safe", "online": "online", "single_pass": "single pass (row on chip)",
                  "split_row": "split-row (slices in parallel programs)"}
SHORT_TITLES = {"naive": "naive", "safe": "safe", "online": "online", "single_pass": "single pass",
                "split_row": "split-row"}
SHORT_PASS_NAMES = {"m, d running (rescale d when m grows)": "running m, d",
                    "whole row on chip: m, d, y": "row on chip: m, d, y",
                    "slices on chip: partial (m, d), merged across programs, y": "slices: (m, d) merged, y"}
PASS_STATES = ("read", "read_alt", "write", "write_alt", "current", "pending", "pending_alt")
PASS_COLORS = {"read": "#2E6DB4", "read_alt": "#5B8FCB", "write": "#2E9D5B", "write_alt": "#5DBB82",
               "current": "#E8710A", "pending": "#E4E7EB", "pending_alt": "#D2D7DD"}


assert max(len(p) for p in PASSES.values()) == steps.SOFTMAX_MAX_PASSES


def pass_states(variant: str, length: int, block: int, step: int) -> np.ndarray:
    """(passes, length) of PASS_STATES names: which element each pass has read/written so far."""
    passes = PASSES[variant]
    if variant in ("single_pass", "split_row"):  # the whole row on chip at once (split-row: in slices)
        p, c = (0, 0) if step == 0 else (1, 0)
        if variant == "single_pass":
            block = max(length, 1)
        else:
            chunk = np.arange(length) // block
            alt = chunk % 2 == 1
            out = np.empty((1, length), dtype=object)
            out[0] = np.where(alt, "write_alt", "write") if p else "current"
            return out
    else:
        p, c = steps.softmax_position(length, block, step)
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


def passes_figure(length: int, block: int, step: int, variants=traffic.SOFTMAX_VARIANTS, height: int | None = None,
                  counts: dict | None = None) -> go.Figure:
    """Every variant's passes over the row as one aligned grid, a row of cells per pass: blue read,
    green read and y written, orange the chunk on chip now. counts: {variant: {"loads", "stores"}}
    the kernels counted, shown per element beside each variant."""
    code = {s: k for k, s in enumerate(PASS_STATES)}
    rows, labels = [], []
    for v in variants:
        states = pass_states(v, length, block, step)
        for k, (name, _) in enumerate(PASSES[v]):
            rows.append(np.vectorize(code.get)(states[k]).astype(int) if length else np.zeros(0, int))
            got = (counts or {}).get(v)
            per = f" · {traffic.total(got) / length:g}/elem" if (got and k == 0) else ""
            name = SHORT_PASS_NAMES.get(name, name)
            labels.append(f"<b>{SHORT_TITLES[v]}</b>{per} · {k + 1}: {name}" if k == 0 else f"{k + 1}: {name}")
    z = np.stack(rows)
    fig = go.Figure(go.Heatmap(
        z=z, x=np.arange(length), y=list(range(len(labels))), zmin=-0.5, zmax=len(PASS_STATES) - 0.5,
        colorscale=discrete_colorscale([PASS_COLORS[s] for s in PASS_STATES]), showscale=False,
        xgap=1 if length <= 128 else 0, ygap=3, hoverinfo="x", name="passes"))
    fig.update_yaxes(autorange="reversed", showgrid=False, tickvals=list(range(len(labels))), ticktext=labels,
                     tickfont=dict(size=13))
    bounds, k = [], 0
    for v in variants[:-1]:
        k += len(PASSES[v])
        bounds.append(k - 0.5)
    for b in bounds:  # a line between variants
        fig.add_hline(y=b, line=dict(color="#1f2430", width=1.5))
    fig.update_xaxes(showgrid=False, range=[-0.5, length - 0.5], title_text="element of the row", nticks=10)
    return layout(fig, height or 60 + 26 * len(labels), t=10)


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
                        ref_m: np.ndarray | None = None, ref_d: np.ndarray | None = None,
                        height: int = 460, done: int | None = None) -> go.Figure:
    """Top: the row and the kernel's running max after each chunk; bottom: its running sum d.
    done: the last chunk the online kernel has read at this step (None: every chunk); the state of
    the chunks after it is not drawn, the kernel has not computed it yet."""
    total = len(m)
    n_chunks = total if done is None else min(done + 1, total)
    m, d = m[:n_chunks], d[:n_chunks]
    ref_d = None if ref_d is None else ref_d[:n_chunks]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=False, vertical_spacing=0.27, row_heights=[0.6, 0.4],
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
    fig.update_xaxes(title_text="chunk (orange: m grew, d rescaled)", tickvals=np.arange(total) if total <= 32 else None,
                     range=[-0.5, total - 0.5], row=2, col=1)
    fig.update_xaxes(range=[-0.5, len(x) - 0.5], row=1, col=1)
    fig.update_annotations(font=dict(size=14), selector=dict(showarrow=False))
    fig.update_layout(legend=dict(orientation="h", y=1.12, yanchor="bottom", x=1, xanchor="right"), bargap=0.3)
    fig.update_yaxes(exponentformat="power")
    return layout(fig, height, t=70)


def overflow_figure(x16: np.ndarray, outputs: dict, ref: np.ndarray, height: int = 300) -> go.Figure:
    """Kernel outputs on an overflowing row, one panel per variant, float64 reference as a line."""
    variants = list(outputs)
    fig = make_subplots(rows=1, cols=len(variants), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[f"<b>{v}</b><br>{overflow_summary(outputs[v], ref)}" for v in variants])
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
    fig.update_annotations(font=dict(size=13))
    fig.update_layout(legend=dict(orientation="h", y=-0.25, x=0))
    return layout(fig, height, t=58)


def overflow_summary(y: np.ndarray, ref: np.ndarray) -> str:
    y = y.astype(np.float64)
    bad = int((~np.isfinite(y)).sum())
    if bad:
        return f"{bad} of {y.size} NaN/inf"
    return f"finite, max err {np.max(np.abs(y - ref)):.1e}"


def softmax_access_rows(length: int, counts: dict, split_path: str = "cooperative") -> list[dict]:
    """Accesses per element: the model (kernels/traffic.py) next to the kernels' own counts.
    split_path: how the split-row kernel ran ("two launches" in the interpreter reads the row twice)."""
    rows = []
    for variant in traffic.SOFTMAX_VARIANTS:
        launches = 2 if variant == "split_row" and split_path == "two launches" else 1
        model = traffic.softmax(variant, 1, length, launches=launches)
        got = counts.get(variant)
        if variant == "split_row" and got is None:
            continue
        rows.append({
            "variant": VARIANT_TITLES[variant] + (" — two launches here" if launches == 2 else ""),
            "passes": len(PASSES[variant]),
            "model: loads + stores": f"{model['loads']:,} + {model['stores']:,}",
            "per element (model)": traffic.total(model) / length,
            "counted: loads + stores": f"{got['loads']:,} + {got['stores']:,}" if got else None,
            "per element (counted)": traffic.total(got) / length if got else None,
            "equal?": "—" if got is None else (
                "✓" if got == {"loads": model["loads"], "stores": model["stores"]} else "✗ differs"),
        })
    return rows


def split_row_parts(trace) -> dict:
    """The split-row kernel's partial (m_s, l_s) of each slice, merged in float64 (derived):
    M = max m_s, L = sum l_s e^(m_s - M), against the float64 row's max and sum."""
    m_s, l_s = trace.split_m.astype(np.float64), trace.split_l.astype(np.float64)
    merge = reference.merge_states(m_s, l_s)  # a slice past the row's end holds nothing: weight 0
    return {"m_s": m_s, "l_s": l_s, **merge, "ref_M": float(trace.ref_m[-1]), "ref_L": float(trace.ref_d[-1]),
            "path": trace.split_path}


def split_row_figure(trace, height: int = 280) -> go.Figure:
    parts = split_row_parts(trace)
    idx = np.arange(parts["m_s"].size)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=(
        "m<sub>s</sub>: each slice's max (kernel)", "ℓ<sub>s</sub>e<sup>m<sub>s</sub>−M</sup>: its share of L (derived)"))
    fig.add_trace(go.Bar(x=idx, y=np.where(parts["live"], parts["m_s"], np.nan), marker_color=BLUE, showlegend=False,
                         hovertemplate="slice %{x}: m_s = %{y:.5g}<extra></extra>"), row=1, col=1)
    fig.add_hline(y=parts["M"], line=dict(color=ORANGE, width=3, dash="dash"), row=1, col=1,
                  annotation_text=f"M = {parts['M']:.4g}", annotation_position="top left")
    fig.add_trace(go.Bar(x=idx, y=parts["terms"], marker_color=ORANGE, showlegend=False,
                         hovertemplate="slice %{x}: %{y:.5g}<extra></extra>"), row=1, col=2)
    fig.update_xaxes(title_text="slice", row=1, col=1)
    fig.update_xaxes(title_text="slice", row=1, col=2)
    fig.update_yaxes(exponentformat="power")
    fig.update_annotations(font_size=14)
    return layout(fig, height, t=40)
