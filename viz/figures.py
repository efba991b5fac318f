"""Pure figure builders: (trace, q_block, step, row) -> plotly Figure or plain data.

Every number drawn here is read from an AttentionTrace or from what a softmax kernel returned.
The only arithmetic is on those values (acc x alpha, acc_after - acc_before x alpha, sums of the
kernel's p), and it is labelled as such. No Streamlit import: tests call these directly.

Not for: launching kernels (viz/state.py) or widgets and layout (viz/pages/).
"""
import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kernels import traffic

FONT = dict(family="Inter, Source Sans Pro, Arial, sans-serif", size=14, color="#1f2430")
ORANGE, BLUE, GREY, RED = "#E8710A", "#2E6DB4", "#9AA3AE", "#C62828"

# ---------------------------------------------------------------- tile grid
TILE_STATES = ("done", "current", "pending", "other", "skipped")
TILE_COLORS = {
    "done": "#2E6DB4",  # folded into m, l, acc already
    "current": "#E8710A",  # on chip now
    "pending": "#B9D3EE",  # this q-block will visit it
    "other": "#E4E7EB",  # another q-block's program computes it
    "skipped": "#FFFFFF",  # above the causal diagonal: never loaded
}
TILE_LABELS = {
    "done": "done",
    "current": "current tile",
    "pending": "pending",
    "other": "other q-blocks",
    "skipped": "skipped (causal)",
}


def _colorscale(name: str) -> list:
    """A plotly colorscale by name, with Streamlit's placeholder colors (#000001-#000040, which the
    browser swaps for theme colors) nudged: Inferno starts at #000004 and would turn lavender."""
    import plotly.colors

    out = []
    for pos, color in plotly.colors.get_colorscale(name):
        if color.lower().startswith("#0000") and int(color[1:], 16) <= 0x40:
            color = "#01010a"
        out.append([pos, color])
    return out


def _layout(fig: go.Figure, height: int, **kw) -> go.Figure:
    fig.update_layout(
        template="plotly_white", font=FONT, height=height,
        margin=dict(l=10, r=10, t=kw.pop("t", 36), b=10), **kw,
    )
    return fig


def step_count(trace, q_block: int) -> int:
    """Tiles the kernel computed for q_block (fewer than Tk under causal)."""
    return len(trace.steps(q_block))


def kv_block(trace, q_block: int, step: int) -> int:
    return int(trace.steps(q_block)[step])


def _cols(trace, j: int) -> int:
    """Columns of kv-block j that lie inside seq_len."""
    c = trace.config
    return min(c.block_n, c.seq_len - j * c.block_n)


def tile_states(trace, q_block: int, step: int) -> np.ndarray:
    """(Tq, Tk) array of TILE_STATES names for the followed q-block at this step."""
    states = np.where(trace.visited, "other", "skipped").astype(object)
    order = trace.visit_order[q_block]  # (Tk,) step at which each tile was computed, -1 skipped
    row = np.full(order.shape, "skipped", dtype=object)
    row[(order >= 0) & (order < step)] = "done"
    row[order == step] = "current"
    row[order > step] = "pending"
    states[q_block] = row
    return states


def _discrete_colorscale(colors: list[str]) -> list:
    n = len(colors)
    scale = []
    for k, c in enumerate(colors):
        scale += [[k / n, c], [(k + 1) / n, c]]
    return scale


def tile_grid_figure(trace, q_block: int, step: int) -> go.Figure:
    """The seq_len x seq_len score matrix cut into block_m x block_n tiles, row 0 at the top."""
    c = trace.config
    tq, tk = trace.visit_order.shape
    states = tile_states(trace, q_block, step)
    order = trace.visit_order
    text = [["" for _ in range(tk)] for _ in range(tq)]
    if tk <= 32:  # the step number at which the followed q-block visits each tile
        for j in range(tk):
            if order[q_block, j] >= 0:
                text[q_block][j] = str(order[q_block, j] + 1)
    j = kv_block(trace, q_block, step)
    return _tile_grid(c, states, text, shapes=[
        ("q-row on chip", "row", q_block, "solid"), ("kv-column on chip", "col", j, "dot")],
        title="tiles of S: keys →, queries ↓")


def _tile_grid(c, states: np.ndarray, text: list, shapes: list, title: str, other: str = "q-blocks") -> go.Figure:
    """The tile grid both passes draw: states (Tq, Tk) coloured, step numbers as text, the causal
    diagonal, and outlines (name, "row" | "col", block index, "solid" | "dot") in the order given."""
    tq, tk = states.shape
    code = {s: k for k, s in enumerate(TILE_STATES)}
    z = np.vectorize(code.get)(states).astype(int)  # (Tq, Tk)
    x_edges = [min(j * c.block_n, c.seq_len) for j in range(tk + 1)]
    y_edges = [min(i * c.block_m, c.seq_len) for i in range(tq + 1)]
    labels = {s: TILE_LABELS[s].replace("q-blocks", other) for s in TILE_STATES}
    hover = [[f"q-block {i} (rows {y_edges[i]}–{y_edges[i + 1] - 1}) × kv-block {j} "
              f"(cols {x_edges[j]}–{x_edges[j + 1] - 1}): {labels[states[i, j]]}"
              for j in range(tk)] for i in range(tq)]
    gap = 2 if max(tq, tk) <= 32 else 0
    fig = go.Figure(go.Heatmap(
        z=z, x=x_edges, y=y_edges, zmin=-0.5, zmax=len(TILE_STATES) - 0.5,
        colorscale=_discrete_colorscale([TILE_COLORS[s] for s in TILE_STATES]), showscale=False,
        xgap=gap, ygap=gap, text=text, texttemplate="%{text}", textfont=dict(size=13, color="white"),
        hovertext=hover, hoverinfo="text", name="tiles",
    ))
    for s in TILE_STATES:  # legend entries; the heatmap itself has none
        if (states == s).any():
            fig.add_trace(go.Scatter(
                x=[None], y=[None], mode="markers", name=labels[s],
                marker=dict(symbol="square", size=14, color=TILE_COLORS[s], line=dict(color="#888", width=1)),
            ))
    if c.causal:  # keys after the query are masked: the kernel skips tiles wholly above this line
        fig.add_shape(type="line", x0=0, y0=0, x1=c.seq_len, y1=c.seq_len, name="causal diagonal",
                      line=dict(color="#9AA3AE", width=1, dash="dash"), opacity=0.8, layer="above")
    for name, axis, k, dash in shapes:
        box = (dict(x0=0, x1=c.seq_len, y0=y_edges[k], y1=y_edges[k + 1]) if axis == "row"
               else dict(x0=x_edges[k], x1=x_edges[k + 1], y0=0, y1=c.seq_len))
        fig.add_shape(type="rect", name=name, line=dict(color="#1f2430", width=3, dash=dash),
                      fillcolor="rgba(0,0,0,0)", layer="above", **box)
    ticks_x = x_edges if tk <= 16 else None
    ticks_y = y_edges[:-1] if tq <= 16 else None  # the last edge would sit under the legend
    fig.update_xaxes(range=[0, c.seq_len], side="top", tickvals=ticks_x, showgrid=False, zeroline=False,
                     constrain="domain", tickfont=dict(size=12))
    fig.update_yaxes(range=[c.seq_len, 0], tickvals=ticks_y, showgrid=False, zeroline=False, scaleanchor="x",
                     constrain="domain", tickfont=dict(size=12))
    fig.update_layout(title=dict(text=title, x=0, font=dict(size=15)))
    return _layout(fig, 360, t=58, legend=dict(orientation="h", y=-0.02, yanchor="top", x=0, font=dict(size=12),
                                              itemwidth=30, tracegroupgap=0))


# ---------------------------------------------------------------- the current tile
def tile_ranges(trace, q_block: int) -> dict:
    """Fixed color ranges over every tile of this q-block: {"s": (lo, hi), "p": (lo, hi)}."""
    slot = trace.tile_slot(q_block)
    out = {}
    for name in ("s", "p"):
        a = getattr(trace, name)[slot]  # (Tk, block_m, block_n)
        a = a[np.isfinite(a)]
        out[name] = (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)
        if out[name][0] == out[name][1]:
            out[name] = (out[name][0] - 0.5, out[name][1] + 0.5)
    return out


def tile_values(trace, q_block: int, step: int, which: str) -> np.ndarray:
    """s or p of the current tile, valid rows and columns only. -inf (masked) stays -inf."""
    slot = trace.tile_slot(q_block)
    j = kv_block(trace, q_block, step)
    return getattr(trace, which)[slot, j, : trace.rows(q_block), : _cols(trace, j)]


def tile_heatmap_figure(trace, q_block: int, step: int, which: str, row: int | None = None) -> go.Figure:
    """Heatmap of the kernel's s (scores) or p = exp(s - m_new) for the current tile."""
    c = trace.config
    j = kv_block(trace, q_block, step)
    vals = tile_values(trace, q_block, step, which)  # (rows, cols)
    z = np.where(np.isfinite(vals), vals, np.nan)
    zmin, zmax = tile_ranges(trace, q_block)[which]
    xs = j * c.block_n + np.arange(vals.shape[1])
    ys = q_block * c.block_m + np.arange(vals.shape[0])
    title = "scores s = q·k × scale" if which == "s" else "p = exp(s − m_new)"
    fig = go.Figure(go.Heatmap(
        z=z, x=xs, y=ys, zmin=zmin, zmax=zmax,
        colorscale=_colorscale("Viridis" if which == "s" else "Inferno"),
        colorbar=dict(thickness=12, len=0.9, tickfont=dict(size=12)),
        hovertemplate="row %{y}, col %{x}<br>" + which + " = %{z:.4g}<extra></extra>", name=which,
    ))
    if row is not None and row < vals.shape[0]:
        y = q_block * c.block_m + row
        fig.add_shape(type="rect", x0=xs[0] - 0.5, x1=xs[-1] + 0.5, y0=y - 0.5, y1=y + 0.5,
                      line=dict(color="#FFFFFF", width=2), name="selected row")
    fig.update_xaxes(showgrid=False, zeroline=False, side="top", tickfont=dict(size=12))
    fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False, scaleanchor="x", constrain="domain",
                     tickfont=dict(size=12))
    fig.update_layout(title=dict(text=title, x=0.0, xanchor="left", font=dict(size=15)),
                      plot_bgcolor="#BFC5CC")  # masked (causal) cells show this grey
    return _layout(fig, 360, t=58)


# ---------------------------------------------------------------- running state m, l, alpha
def state_series(trace, q_block: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(kv-blocks in visit order, values (rows, steps)) of trace.m / l / alpha for q_block."""
    js = trace.steps(q_block)
    vals = getattr(trace, name)[q_block][:, : trace.rows(q_block)][js].T  # (rows, steps)
    return js, vals


def running_state_figure(trace, q_block: int, step: int, row: int) -> go.Figure:
    """Running max m and running sum l of every row of the q-block, one line per row."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("running max m", "running sum l"))
    for col, name in ((1, "m"), (2, "l")):
        js, vals = state_series(trace, q_block, name)
        xs, ys = [], []
        for r in range(vals.shape[0]):  # every row in one trace, lines broken by None
            xs += list(js) + [None]
            ys += list(vals[r]) + [None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=GREY, width=1), opacity=0.45,
                                 name=f"{name}: all rows", showlegend=False, hoverinfo="skip"), row=1, col=col)
        fig.add_trace(go.Scatter(
            x=js, y=vals[row], mode="lines+markers", line=dict(color=BLUE, width=3), marker=dict(size=7),
            name=f"{name}: row {row}", showlegend=False,
            hovertemplate="kv-block %{x}<br>" + name + " = %{y:.5g}<extra></extra>"), row=1, col=col)
        k = step
        fig.add_trace(go.Scatter(
            x=[js[k]], y=[vals[row, k]], mode="markers", marker=dict(size=14, color=ORANGE, line=dict(color="white", width=2)),
            name=f"{name}: this step", showlegend=False, hoverinfo="skip"), row=1, col=col)
        fig.add_vline(x=js[k], line=dict(color=ORANGE, width=2, dash="dot"), row=1, col=col)
        fig.update_xaxes(title_text="kv-block j", tickvals=list(js) if len(js) <= 16 else None,
                         range=[js[0] - 0.3, js[-1] + 0.3], row=1, col=col)
    fig.update_annotations(font=dict(size=15))
    return _layout(fig, 300, t=40)


def rescaled_rows(trace, q_block: int, step: int) -> np.ndarray:
    """Rows whose max grew at this step (alpha < 1); none at step 0, where m_old = -inf."""
    _, alpha = state_series(trace, q_block, "alpha")
    return alpha[:, step] < 1 if step > 0 else np.zeros(alpha.shape[0], bool)


def rescale_count(trace, q_block: int, step: int) -> int:
    """(row, step) events with alpha < 1 in steps 1..step: how often the max grew so far."""
    _, alpha = state_series(trace, q_block, "alpha")
    return int(np.sum(alpha[:, 1 : step + 1] < 1))


def alpha_figure(trace, q_block: int, step: int, row: int) -> go.Figure:
    """This step's alpha = exp(m_old - m_new) per row; rows whose max grew in orange."""
    c = trace.config
    _, alpha = state_series(trace, q_block, "alpha")
    a = alpha[:, step]
    grew = rescaled_rows(trace, q_block, step)
    ys = q_block * c.block_m + np.arange(a.size)
    colors = [ORANGE if g else GREY for g in grew]
    fig = go.Figure(go.Bar(
        x=ys, y=a, marker=dict(color=colors, line=dict(width=[2 if r == row else 0 for r in range(a.size)],
                                                       color="#1f2430")),
        hovertemplate="row %{x}<br>α = %{y:.5g}<extra></extra>", name="alpha"))
    if grew.any():  # a marker on each rescaled row: alpha can be ~1e-20, a bar too short to see
        fig.add_trace(go.Scatter(x=ys[grew], y=a[grew], mode="markers", name="max grew",
                                 marker=dict(color=ORANGE, size=8, symbol="diamond", line=dict(color="white", width=1)),
                                 hovertemplate="row %{x}: max grew, α = %{y:.3g}<extra></extra>"))
    if step == 0:
        fig.add_annotation(text="first tile: m_old = −∞, so α = 0",
                           x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                           font=dict(size=14), bgcolor="rgba(255,255,255,0.85)")
    fig.update_xaxes(title_text="query row", showgrid=False)
    fig.update_yaxes(range=[-0.06, 1.08])
    fig.update_layout(showlegend=False, title=dict(text="α per row (<span style='color:%s'>orange: max grew</span>)" % ORANGE,
                                 x=0, font=dict(size=15)), bargap=0.1)
    return _layout(fig, 300, t=40)


# ---------------------------------------------------------------- accumulator of one row
def accumulator_parts(trace, q_block: int, step: int, row: int) -> dict:
    """acc before, acc x alpha, p.V (what the kernel added) and acc after, for one row: (d,) each."""
    slot = trace.tile_slot(q_block)
    j = kv_block(trace, q_block, step)
    before = trace.acc_before[slot, j, row]  # (d,)
    after = trace.acc_after[slot, j, row]
    alpha = float(trace.alpha[q_block, j, row])
    scaled = before * alpha
    return {"before": before, "scaled": scaled, "pv": after - scaled, "after": after, "alpha": alpha}


ACC_ROWS = ("acc before", "α × acc before", "+ p·V (kernel added)", "= acc after")


def _acc_range(trace, q_block: int, row: int) -> float:
    slot = trace.tile_slot(q_block)
    js = trace.steps(q_block)
    vals = np.concatenate([trace.acc_before[slot, js, row].ravel(), trace.acc_after[slot, js, row].ravel()])
    vals = vals[np.isfinite(vals)]
    return float(np.abs(vals).max()) if vals.size and np.abs(vals).max() > 0 else 1.0


def accumulator_figure(trace, q_block: int, step: int, row: int) -> go.Figure:
    """The four stages of acc for one row as strips over head_dim, one fixed color range per row."""
    parts = accumulator_parts(trace, q_block, step, row)
    z = np.stack([parts["before"], parts["scaled"], parts["pv"], parts["after"]])  # (4, d)
    lim = _acc_range(trace, q_block, row)
    fig = go.Figure(go.Heatmap(
        z=z, y=list(ACC_ROWS), x=np.arange(z.shape[1]), zmin=-lim, zmax=lim, colorscale="RdBu_r", zmid=0,
        xgap=1, ygap=3, colorbar=dict(thickness=12, tickfont=dict(size=12)),
        hovertemplate="%{y}<br>dim %{x}: %{z:.5g}<extra></extra>", name="acc"))
    fig.update_yaxes(autorange="reversed", showgrid=False, tickfont=dict(size=14))
    fig.update_xaxes(title_text="head dim", showgrid=False)
    return _layout(fig, 260, t=10)


def output_parts(trace, q_block: int, row: int) -> dict:
    """After the last step: acc / l from the trace, the kernel's out and the float64 reference."""
    slot = trace.tile_slot(q_block)
    j = int(trace.steps(q_block)[-1])
    r = q_block * trace.config.block_m + row
    acc_over_l = trace.acc_after[slot, j, row] / trace.l[q_block, j, row]
    return {"acc_over_l": acc_over_l, "out": trace.out[r], "ref": trace.ref_out[r],
            "err": float(np.max(np.abs(trace.out[r].astype(np.float64) - trace.ref_out[r]))), "l": float(trace.l[q_block, j, row])}


def output_figure(trace, q_block: int, row: int) -> go.Figure:
    parts = output_parts(trace, q_block, row)
    z = np.stack([parts["acc_over_l"], parts["out"], parts["ref"]])
    lim = float(np.abs(trace.ref_out).max()) or 1.0
    fig = go.Figure(go.Heatmap(
        z=z, y=["acc / l (trace)", "out (kernel)", "float64 reference"], x=np.arange(z.shape[1]),
        zmin=-lim, zmax=lim, colorscale="RdBu_r", zmid=0, xgap=1, ygap=3,
        colorbar=dict(thickness=12, tickfont=dict(size=12)),
        hovertemplate="%{y}<br>dim %{x}: %{z:.6g}<extra></extra>", name="out"))
    fig.update_yaxes(autorange="reversed", showgrid=False)
    fig.update_xaxes(title_text="head dim", showgrid=False)
    return _layout(fig, 210, t=10)


# ---------------------------------------------------------------- the update, with numbers
def tex_num(v: float, digits: int = 4) -> str:
    """A number for st.latex: 4 significant digits, -inf as -\\infty, exponents as x 10^k."""
    v = float(v)
    if math.isnan(v):
        return r"\mathrm{NaN}"
    if math.isinf(v):
        return r"-\infty" if v < 0 else r"\infty"
    s = f"{v:.{digits}g}"
    if "e" in s:
        mant, exp = s.split("e")
        s = rf"{mant} \times 10^{{{int(exp)}}}"
    return s


def _paren(v: float) -> str:
    return f"({tex_num(v)})" if v < 0 else tex_num(v)


def _tex_vec(a: np.ndarray, n: int = 2) -> str:
    items = [tex_num(x) for x in a[:n]] + ([r"\dots"] if a.size > n else [])
    return "[" + ", ".join(items) + "]"


def update_values(trace, q_block: int, step: int, row: int) -> dict:
    """The numbers of one row's update at this step, as the kernel wrote them."""
    js = trace.steps(q_block)
    j = int(js[step])
    slot = trace.tile_slot(q_block)
    s_row = trace.s[slot, j, row, : _cols(trace, j)]
    p_row = trace.p[slot, j, row, : _cols(trace, j)]
    finite = s_row[np.isfinite(s_row)]
    prev = int(js[step - 1]) if step > 0 else None
    parts = accumulator_parts(trace, q_block, step, row)
    return {
        "j": j,
        "m_old": float(trace.m[q_block, prev, row]) if prev is not None else -math.inf,
        "rowmax_s": float(finite.max()) if finite.size else -math.inf,
        "m_new": float(trace.m[q_block, j, row]),
        "alpha": float(trace.alpha[q_block, j, row]),
        "l_old": float(trace.l[q_block, prev, row]) if prev is not None else 0.0,
        "rowsum_p": float(p_row.sum(dtype=np.float64)),
        "l_new": float(trace.l[q_block, j, row]),
        "acc_old": parts["before"], "pv": parts["pv"], "acc_new": parts["after"],
    }


def update_equations(trace, q_block: int, step: int, row: int) -> str:
    """One aligned LaTeX block: the four update equations with this row's numbers plugged in."""
    v = update_values(trace, q_block, step, row)
    n = tex_num
    lines = [
        rf"m_\text{{new}} &= \max(m_\text{{old}},\ \mathrm{{rowmax}}(s)) = \max({n(v['m_old'])},\ {n(v['rowmax_s'])}) = \mathbf{{{n(v['m_new'])}}}",
        rf"\alpha &= e^{{\,m_\text{{old}} - m_\text{{new}}}} = e^{{{n(v['m_old'])} - {_paren(v['m_new'])}}} = \mathbf{{{n(v['alpha'])}}}",
        rf"\ell_\text{{new}} &= \alpha\,\ell_\text{{old}} + \mathrm{{rowsum}}(p) = {n(v['alpha'])} \cdot {n(v['l_old'])} + {n(v['rowsum_p'])} = \mathbf{{{n(v['l_new'])}}}",
        rf"\mathrm{{acc}}_\text{{new}} &= \alpha\,\mathrm{{acc}}_\text{{old}} + pV = {n(v['alpha'])} \cdot {_tex_vec(v['acc_old'])} + {_tex_vec(v['pv'])} = {_tex_vec(v['acc_new'])}",
    ]
    return r"\begin{aligned}" + r" \\[4pt] ".join(lines) + r"\end{aligned}"


# ---------------------------------------------------------------- memory accesses
def _flash_counted(counters: dict) -> dict:
    loads = counters["q_loads"] + counters["k_loads"] + counters["v_loads"]
    stores = counters["o_stores"] + counters["lse_stores"]
    return {"loads": loads, "stores": stores}


def memory_rows(trace, softmax_counts: dict | None) -> list[dict]:
    """Model next to counted, in elements. softmax_counts: scores_softmax_counts(trace) or None."""
    c = trace.config
    n = c.seq_len
    rows = []
    names = {"naive": "naive softmax", "safe": "safe softmax", "online": "online softmax",
             "single_pass": "single-pass softmax"}
    for variant in traffic.SOFTMAX_VARIANTS:
        counted = (softmax_counts or {}).get(variant)
        if variant == "single_pass" and counted is None and softmax_counts is not None:
            continue  # the row does not fit on chip: the kernel refuses, so no row
        rows.append({"id": variant, "what": names[variant], "group": "softmax",
                     "model": traffic.softmax(variant, n, n), "counted": counted})
    rows.append({"id": "standard", "what": "standard attention", "group": "attention",
                 "model": traffic.standard_attention(n, c.head_dim), "counted": None})
    rows.append({"id": "flash", "what": "FlashAttention-2", "group": "attention",
                 "model": trace.model_counters(), "counted": _flash_counted(trace.counters)})
    for r in rows:
        r["model_total"] = traffic.total(r["model"])
        r["counted_total"] = traffic.total(r["counted"]) if r["counted"] else None
        r["equal"] = None if r["counted"] is None else (
            r["counted"]["loads"] == r["model"]["loads"] and r["counted"]["stores"] == r["model"]["stores"])
    return rows


def memory_table(rows: list[dict]) -> list[dict]:
    """Rows for st.dataframe."""
    return [{
        "": r["what"],
        "model": r["model_total"],
        "counted by the kernel": r["counted_total"],
        "equal?": "—" if r["equal"] is None else ("✓" if r["equal"] else "✗ differs"),
    } for r in rows]


def flash_ratio(rows: list[dict]) -> float:
    """Elements standard attention moves per element FlashAttention moved (counted when known)."""
    std = next(r for r in rows if r["id"] == "standard")
    fa = next(r for r in rows if r["id"] == "flash")
    return std["model_total"] / (fa["counted_total"] or fa["model_total"])


def flash_headline(rows: list[dict]) -> str:
    ratio = flash_ratio(rows)
    if ratio >= 1:
        return f"FlashAttention moves {ratio:.1f}× fewer elements than standard attention here."
    return (f"FlashAttention moves {1 / ratio:.1f}× more elements than standard attention here: "
            f"K and V are re-read once per q-block, so a larger block_m helps at this size.")


def memory_figure(rows: list[dict]) -> go.Figure:
    """Horizontal bars: loads and stores per method (model), counted totals as diamonds."""
    names = [r["what"] for r in rows][::-1]
    rows_r = rows[::-1]
    fig = go.Figure()
    fig.add_trace(go.Bar(y=names, x=[r["model"]["loads"] for r in rows_r], orientation="h", name="loads (model)",
                         marker_color=BLUE, hovertemplate="%{y}: %{x:,} loads<extra></extra>"))
    fig.add_trace(go.Bar(y=names, x=[r["model"]["stores"] for r in rows_r], orientation="h", name="stores (model)",
                         marker_color="#8DB6E3", hovertemplate="%{y}: %{x:,} stores<extra></extra>"))
    counted = [(r["what"], r["counted_total"]) for r in rows_r if r["counted_total"] is not None]
    if counted:
        fig.add_trace(go.Scatter(y=[c[0] for c in counted], x=[c[1] for c in counted], mode="markers",
                                 name="counted by the kernel (total)",
                                 marker=dict(symbol="diamond", size=13, color=ORANGE, line=dict(color="white", width=1)),
                                 hovertemplate="%{y}: %{x:,} counted<extra></extra>"))
    fig.update_layout(barmode="stack", legend=dict(orientation="h", y=-0.12, yanchor="top", x=0, font=dict(size=13)))
    fig.update_xaxes(tickformat="~s", side="top")
    return _layout(fig, 330, t=30)


# ---------------------------------------------------------------- softmax page
# Each pass of each kernel in kernels/softmax.py: what it computes, and whether it writes y.
PASSES = {
    "naive": (("d = Σ eˣ", False), ("y = eˣ / d", True)),
    "safe": (("m = max x", False), ("d = Σ eˣ⁻ᵐ", False), ("y = eˣ⁻ᵐ / d", True)),
    "online": (("m, d running (rescale d when m grows)", False), ("y = eˣ⁻ᵐ / d", True)),
    "single_pass": (("whole row on chip: m, d, y", True),),
}
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
        colorscale=_discrete_colorscale([PASS_COLORS[s] for s in PASS_STATES]), showscale=False,
        xgap=1 if length <= 128 else 0, ygap=4, hoverinfo="x+y", name=variant))
    fig.update_yaxes(autorange="reversed", showgrid=False, tickfont=dict(size=13))
    fig.update_xaxes(showgrid=False, title_text=None, range=[-0.5, length - 0.5])
    title = (f"<b>{VARIANT_TITLES[variant]}</b>: {len(PASSES[variant])} pass{'es' if len(PASSES[variant]) > 1 else ''}, "
             f"{loads} read{'s' if loads > 1 else ''} + {stores} write = {loads + stores} accesses per element")
    fig.update_layout(title=dict(text=title, x=0, font=dict(size=15)))
    return _layout(fig, 70 + 34 * len(PASSES[variant]), t=36)


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
    return _layout(fig, 460, t=70)


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
    return _layout(fig, 300, t=40)


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
            "equal?": "—" if got is None else ("✓" if got == {"loads": model["loads"], "stores": model["stores"]} else "✗ differs"),
        })
    return rows

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


def bench_measured_on(result: dict) -> str:
    env = result["env"]
    return (f"{env['gpu']} · torch {env['torch']} · triton {env['triton']} · "
            f"{env['date'].replace('T', ' ')[:16]} UTC")


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
    _layout(fig, 560, legend=dict(orientation="h", y=-0.14, x=0), t=40)
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
            label = dict(annotation_text=f"copy of 1 GiB: {copy * 1000:.0f} GB/s", annotation_position="bottom right",
                         annotation_font=dict(size=12, color=GREY)) if ci == len(dtypes) else {}
            fig.add_hline(y=copy * 1000, line=dict(color=GREY, dash="dot"), row=1, col=ci, **label)
    cols = sorted({r["cols"] for r in rows})
    fig.update_xaxes(type="log", tickvals=cols, ticktext=[f"{c // 1024}k" for c in cols], title_text="columns per row")
    fig.update_yaxes(title_text="GB/s", row=1, col=1)
    fig.update_yaxes(range=[0, (copy * 1000 if copy else max(r["GBps"] for r in rows)) * 1.1])
    _layout(fig, 420, legend=dict(orientation="h", y=-0.28, x=0), t=40)
    return fig


def host_bound_note(result: dict, kind: str = "backward") -> str | None:
    """A sentence on how far ours' eager call stands above its CUDA-graph replay (the GPU's time alone),
    from the run's own figures: the case where it stands furthest; None when the run has no replays."""
    ours = [r for r in result.get(kind, []) if r.get("impl") == "ours" and r.get("ms") and r.get("graph_ms")]
    if not ours:
        return None
    head = "Dashed, and the 'GPU only' columns: ours replayed from a CUDA graph, the GPU's time alone. "
    r = max(ours, key=lambda r: r["ms"] / r["graph_ms"])
    if r["ms"] < 1.1 * r["graph_ms"]:
        return head + "In every case the eager call takes within 10% of that."
    mask = "causal" if r["causal"] else "full"
    return (head + "Where it stands above the solid line the eager call waits on the host (Triton's launches, "
            f"autograd): most at seq_len {r['seq_len']}, head_dim {r['head_dim']} {mask}, "
            f"{r['ms'] * 1000:.0f} µs a call against {r['graph_ms'] * 1000:.0f} µs of GPU work.")


def bench_ratio_table(result: dict, kind: str = "attention") -> list[dict]:
    """Rows for st.dataframe: ours / each PyTorch backend per attention (or backward) case, and the
    config the forward's tuner picked where the run recorded it (e.g. 'BM256 BN64 w8 s3 split2')."""
    from kernels import bench

    picked = {(r["head_dim"], r["causal"], r["seq_len"]): r["config"] for r in result.get(kind, [])
              if r.get("impl") == "ours" and r.get("config")}
    out = []
    for r in bench.ratios(result):
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


def bench_softmax_ratio_table(result: dict) -> list[dict]:
    from kernels import bench

    return [{"shape": f"{r['rows']} x {r['cols']}", "dtype": r["dtype"],
             "best / torch.softmax": round(r["best_vs_torch"], 2),
             "best / 1 GiB copy": round(r["best_vs_copy"], 2) if r["best_vs_copy"] else None,
             "best / same-size copy": (round(r["best_vs_copy_same_size"], 2)
                                       if r.get("best_vs_copy_same_size") else None),
             "online / safe": round(r["online_vs_safe"], 2), "naive / online": round(r["naive_vs_online"], 2)}
            for r in bench.ratios(result) if r["kind"] == "softmax"]


# ---------------------------------------------------------------- backward
# The Backward page: (BackwardTrace, kv_block, step) -> figures. Every tile value is what the
# dK/dV kernel wrote; the Jacobian of one row is built here from the kernel's own P and dP row
# (float64 arithmetic, labelled), to set it next to the kernel's dS.
def bwd_step_count(trace, kv_block: int) -> int:
    """q-blocks the kv-block's program visited (fewer than Tq under causal)."""
    return len(trace.steps(kv_block))


def bwd_q_block(trace, kv_block: int, step: int) -> int:
    return int(trace.steps(kv_block)[step])


def bwd_tile_states(trace, kv_block: int, step: int) -> np.ndarray:
    """(Tq, Tk) array of TILE_STATES names: the followed kv-block's column at this step."""
    order_t = trace.visit_order.T  # (Tq, Tk)
    states = np.where(order_t >= 0, "other", "skipped").astype(object)
    order = trace.visit_order[kv_block]  # (Tq,) step at which the program visited each q-block
    col = np.full(order.shape, "skipped", dtype=object)
    col[(order >= 0) & (order < step)] = "done"
    col[order == step] = "current"
    col[order > step] = "pending"
    states[:, kv_block] = col
    return states


def bwd_tile_grid_figure(trace, kv_block: int, step: int) -> go.Figure:
    """The N x N score matrix in tiles, row 0 at the top; the kv-block's program walks down its column."""
    c = trace.config
    tk, tq = trace.visit_order.shape
    states = bwd_tile_states(trace, kv_block, step)
    order = trace.visit_order[kv_block]
    text = [["" for _ in range(tk)] for _ in range(tq)]
    if tq <= 32:
        for i in range(tq):
            if order[i] >= 0:
                text[i][kv_block] = str(order[i] + 1)
    i = bwd_q_block(trace, kv_block, step)
    return _tile_grid(c, states, text, shapes=[
        ("kv-column on chip", "col", kv_block, "solid"), ("q-row streaming", "row", i, "dot")],
        title="tiles: keys →, queries ↓", other="kv-blocks")


BWD_TILES = {  # name -> (title, colorscale, diverging)
    "p": ("P = exp(s − lse), recomputed", "Inferno", False),
    "dp": ("dP = dO Vᵀ", "RdBu_r", True),
    "ds": ("dS = P ∘ (dP − D)", "RdBu_r", True),
}


def bwd_tile_ranges(trace, kv_block: int) -> dict:
    """Fixed color ranges over every step of this kv-block's program: {name: (lo, hi)}."""
    slot = trace.tile_slot(kv_block)
    iq = trace.steps(kv_block)
    out = {}
    for name, (_, _, diverging) in BWD_TILES.items():
        a = getattr(trace, name)[slot, iq]  # (steps, block_m, block_n)
        a = a[np.isfinite(a)]
        if not a.size:
            out[name] = (-1.0, 1.0) if diverging else (0.0, 1.0)
        elif diverging:
            lim = float(np.abs(a).max()) or 1.0
            out[name] = (-lim, lim)
        else:
            lo, hi = float(a.min()), float(a.max())
            out[name] = (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)
    return out


def bwd_tile_values(trace, kv_block: int, step: int, name: str) -> np.ndarray:
    """P, dP or dS of the current tile, valid rows and columns only, NaN above the causal diagonal."""
    c = trace.config
    i = bwd_q_block(trace, kv_block, step)
    vals = getattr(trace, name)[trace.tile_slot(kv_block), i, : trace.rows(i), : trace.cols(kv_block)]
    if c.causal:  # the kernel holds 0 (P, dS) or an unused dP there: masked, drawn grey
        rows = i * c.block_m + np.arange(vals.shape[0])[:, None]
        cols = kv_block * c.block_n + np.arange(vals.shape[1])[None, :]
        vals = np.where(cols <= rows, vals, np.nan)
    return vals


def bwd_tile_heatmap_figure(trace, kv_block: int, step: int, name: str, row: int | None = None) -> go.Figure:
    """Heatmap of the kernel's P, dP or dS tile; row: a global query row to outline."""
    c = trace.config
    i = bwd_q_block(trace, kv_block, step)
    vals = bwd_tile_values(trace, kv_block, step, name)
    title, scale, diverging = BWD_TILES[name]
    zmin, zmax = bwd_tile_ranges(trace, kv_block)[name]
    xs = kv_block * c.block_n + np.arange(vals.shape[1])
    ys = i * c.block_m + np.arange(vals.shape[0])
    fig = go.Figure(go.Heatmap(
        z=vals, x=xs, y=ys, zmin=zmin, zmax=zmax, colorscale=_colorscale(scale) if not diverging else scale,
        colorbar=dict(thickness=12, len=0.9, tickfont=dict(size=12)),
        hovertemplate="row %{y}, col %{x}<br>" + name + " = %{z:.4g}<extra></extra>", name=name,
    ))
    if row is not None and ys[0] <= row <= ys[-1]:
        fig.add_shape(type="rect", x0=xs[0] - 0.5, x1=xs[-1] + 0.5, y0=row - 0.5, y1=row + 0.5,
                      line=dict(color="#1f2430" if diverging else "#FFFFFF", width=2), name="selected row")
    fig.update_xaxes(showgrid=False, zeroline=False, side="top", tickfont=dict(size=12))
    fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False, scaleanchor="x", constrain="domain",
                     tickfont=dict(size=12))
    fig.update_layout(title=dict(text=title, x=0.0, xanchor="left", font=dict(size=15)), plot_bgcolor="#BFC5CC")
    return _layout(fig, 360, t=58)


def delta_figure(trace, kv_block: int, step: int) -> go.Figure:
    """D per row of the q-block on chip: the preprocess kernel's value, the float64 reference."""
    c = trace.config
    i = bwd_q_block(trace, kv_block, step)
    rows = i * c.block_m + np.arange(trace.rows(i))
    lim = float(np.abs(trace.ref_delta).max()) * 1.1 or 1.0
    fig = go.Figure(go.Bar(x=rows, y=trace.delta[rows], marker_color=BLUE, name="D (preprocess kernel)",
                           hovertemplate="row %{x}<br>D = %{y:.5g}<extra></extra>"))
    fig.add_trace(go.Scatter(x=rows, y=trace.ref_delta[rows], mode="markers", name="float64 reference",
                             marker=dict(symbol="line-ew-open", size=10, color="#1f2430", line=dict(width=2)),
                             hovertemplate="row %{x}<br>D (float64) = %{y:.6g}<extra></extra>"))
    fig.update_yaxes(range=[-lim, lim], zeroline=True, zerolinecolor="#BFC5CC")
    fig.update_xaxes(title_text="query row", showgrid=False)
    fig.update_layout(title=dict(text="D = rowsum(dO ∘ O) of these rows", x=0, font=dict(size=15)),
                      legend=dict(orientation="h", y=-0.3, x=0, font=dict(size=12)), bargap=0.1)
    return _layout(fig, 330, t=40)


def bwd_acc_figure(trace, kv_block: int, step: int) -> go.Figure:
    """dK_j and dV_j after this step (block_n rows x head_dim), colors fixed over the program's steps."""
    c = trace.config
    slot = trace.tile_slot(kv_block)
    i = bwd_q_block(trace, kv_block, step)
    iq = trace.steps(kv_block)
    cols = trace.cols(kv_block)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("dK_j so far = scale · Σ dSᵀ Q_i", "dV_j so far = Σ Pᵀ dO_i"))
    ys = kv_block * c.block_n + np.arange(cols)
    for col, name in ((1, "dk_acc"), (2, "dv_acc")):
        every = getattr(trace, name)[slot, iq, :cols]  # (steps, cols, d)
        lim = float(np.nanmax(np.abs(every))) or 1.0
        fig.add_trace(go.Heatmap(
            z=getattr(trace, name)[slot, i, :cols], x=np.arange(c.head_dim), y=ys, zmin=-lim, zmax=lim, zmid=0,
            colorscale="RdBu_r", colorbar=dict(thickness=10, len=0.9, x=0.44 if col == 1 else 1.0,
                                               tickfont=dict(size=11)),
            hovertemplate="key row %{y}, dim %{x}<br>%{z:.4g}<extra></extra>", name=name), row=1, col=col)
        fig.update_yaxes(autorange="reversed", showgrid=False, row=1, col=col, title_text="key row" if col == 1 else None)
        fig.update_xaxes(title_text="head dim", showgrid=False, row=1, col=col)
    fig.update_annotations(font=dict(size=15))
    return _layout(fig, 300, t=40)


# -- one row, two ways
def _row_ref(trace, row: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 P and dP of one row from the trace's inputs (used when the trace lacks some tiles)."""
    c = trace.config
    q, k, v, do = (getattr(trace, n).astype(np.float64) for n in ("q", "k", "v", "do"))
    s = (k @ q[row]) * trace.sm_scale  # (N,)
    if c.causal:
        s[row + 1:] = -np.inf
    p = np.exp(s - s.max())
    return p / p.sum(), v @ do[row]


def backward_row_parts(trace, row: int) -> dict:
    """One query row of the softmax backward both ways. source "kernel": P, dP and dS are the
    kernel's tiles; "float64": P and dP recomputed (the trace kept only some kv-blocks)."""
    from kernels import reference

    p, dp, ds = (trace.row_values(row, n) for n in ("p", "dp", "ds"))
    source = "kernel" if p is not None else "float64"
    if p is None:
        p, dp = _row_ref(trace, row)
    p, dp = p.astype(np.float64), np.where(p == 0, 0.0, dp).astype(np.float64)  # dP unused where P = 0
    both = reference.softmax_backward_row(p, dp)
    d_kernel = float(trace.delta[row])
    ds_d = ds.astype(np.float64) if ds is not None else p * (dp - d_kernel)
    keys = np.arange(row + 1 if trace.config.causal else p.size)  # the keys this query may see
    return {"source": source, "keys": keys, "p": p, "dp": dp, "d": d_kernel, "d_pdp": both["d"],
            "jacobian": both["jacobian"],
            "ds_jacobian": both["ds_jacobian"], "ds_d": ds_d,
            "max_diff": float(np.max(np.abs(both["ds_jacobian"] - ds_d)))}


def backward_row_table(parts: dict, n: int = 6) -> list[dict]:
    """The first n entries of the row (keys it may see) in both forms, for st.dataframe."""
    cols = parts["keys"][:n]
    return [{"key j": int(j), "P": parts["p"][j], "dP": parts["dp"][j],
             "(diag(P) − P Pᵀ) dP": parts["ds_jacobian"][j],
             "P ∘ (dP − D)": parts["ds_d"][j],
             "difference": parts["ds_jacobian"][j] - parts["ds_d"][j]} for j in cols]


def elements_text(n_elements: int, bytes_per: int = 4) -> str:
    """'65,536 elements (256 KiB in float32)'."""
    size = n_elements * bytes_per
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= div:
            return f"{n_elements:,} elements ({size / div:.3g} {unit} in float32)"
    return f"{n_elements:,} elements ({size} B in float32)"


MAX_JACOBIAN_CELLS = 256  # the Jacobian heatmap shows at most this many rows and columns


def backward_row_figure(parts: dict, row: int) -> go.Figure:
    """Left: log10 |J| of the row's N x N Jacobian diag(P) − P Pᵀ (every k-th entry when N is
    large); right: dS of the row by both forms."""
    n = parts["p"].size
    stride = max(1, math.ceil(n / MAX_JACOBIAN_CELLS))
    jac = parts["jacobian"][::stride, ::stride]
    idx = np.arange(0, n, stride)
    with np.errstate(divide="ignore"):
        z = np.where(jac != 0, np.log10(np.abs(jac)), np.nan)  # exact zeros (masked keys): blank
    fig = make_subplots(rows=1, cols=2, column_widths=[0.4, 0.6], horizontal_spacing=0.17, subplot_titles=(
        f"log₁₀|J|, J = diag(P) − P Pᵀ: {n} × {n}" + (f" (every {stride}th)" if stride > 1 else ""),
        "dS of this row, both ways"))
    domain_end = 0.4 * (1 - 0.17)
    fig.add_trace(go.Heatmap(z=z, x=idx, y=idx, customdata=jac, colorscale=_colorscale("Viridis"),
                             colorbar=dict(thickness=10, len=0.9, x=domain_end + 0.01, tickfont=dict(size=11)),
                             hovertemplate="J[%{y}, %{x}] = %{customdata:.3g}<extra></extra>", name="Jacobian"),
                  row=1, col=1)
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", showgrid=False, row=1, col=1)
    fig.update_xaxes(showgrid=False, constrain="domain", row=1, col=1)
    cols = np.arange(n)
    fig.add_trace(go.Scatter(x=cols, y=parts["ds_jacobian"], mode="lines", line=dict(color=BLUE, width=5),
                             opacity=0.45, name="(diag(P) − P Pᵀ) dP",
                             hovertemplate="key %{x}: %{y:.5g}<extra>Jacobian form</extra>"), row=1, col=2)
    fig.add_trace(go.Scatter(x=cols, y=parts["ds_d"], mode="markers" if n <= 256 else "lines",
                             marker=dict(size=5, color=ORANGE), line=dict(color=ORANGE, width=1.5),
                             name="P ∘ (dP − D)" + (" (kernel)" if parts["source"] == "kernel" else ""),
                             hovertemplate="key %{x}: %{y:.5g}<extra>P ∘ (dP − D)</extra>"), row=1, col=2)
    fig.update_xaxes(title_text="key j", row=1, col=2)
    fig.update_annotations(font=dict(size=14))
    fig.update_layout(legend=dict(orientation="h", y=-0.2, x=0.45, font=dict(size=13)))
    return _layout(fig, 330, t=40)


# -- memory traffic of the backward
BWD_PARTS = (("pre", "· preprocess (D)"), ("dkdv", "· dK/dV pass"), ("dq", "· dQ pass"))


def bwd_memory_rows(trace) -> list[dict]:
    """Standard backward (model) against the FlashAttention-2 backward, whole and per kernel
    (model, and the kernels' own counts), in elements. Same keys as memory_rows."""
    c = trace.config
    model = trace.model_counters()
    counted = trace.counters

    def part(prefix: str, source: dict) -> dict:
        ld = sum(v for k, v in source.items() if k.startswith(prefix) and k.endswith("_loads") and k.count("_") > 1)
        st = sum(v for k, v in source.items() if k.startswith(prefix) and k.endswith("_stores") and k.count("_") > 1)
        return {"loads": ld, "stores": st}

    rows = [{"id": "standard", "what": "standard backward",
             "model": traffic.standard_backward(c.seq_len, c.head_dim), "counted": None}]
    rows.append({"id": "flash", "what": "FlashAttention-2 backward", "model": part("", model),
                 "counted": part("", counted)})
    for prefix, what in BWD_PARTS:
        rows.append({"id": prefix, "what": what, "model": part(prefix + "_", model),
                     "counted": part(prefix + "_", counted)})
    for r in rows:
        r["model_total"] = traffic.total(r["model"])
        r["counted_total"] = traffic.total(r["counted"]) if r["counted"] else None
        r["equal"] = None if r["counted"] is None else r["counted"] == {k: r["model"][k] for k in ("loads", "stores")}
    return rows


def bwd_headline(rows: list[dict], seq_len: int) -> str:
    std = next(r for r in rows if r["id"] == "standard")
    fa = next(r for r in rows if r["id"] == "flash")
    ratio = std["model_total"] / (fa["counted_total"] or fa["model_total"])
    mats = f"P, dP and dS ({3 * seq_len * seq_len:,} elements) never leave the chip."
    if ratio >= 1:
        return f"The FlashAttention-2 backward moves {ratio:.1f}× fewer elements than the standard backward here: {mats}"
    return (f"The FlashAttention-2 backward moves {1 / ratio:.1f}× more elements than the standard backward at "
            f"this small size (Q, dO re-read per kv-block, K, V per q-block), yet {mats}")
