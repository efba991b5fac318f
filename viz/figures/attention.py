"""The FlashAttention tiles page: (AttentionTrace, q_block, step, row) -> figures and numbers.

Every value drawn is read from the trace the kernel wrote. The only arithmetic is on those values
(acc x alpha, acc after - alpha x acc before, sums of the kernel's p), and it is labelled as such.
"""
import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from viz.figures.grid import kv_block
from viz.figures.style import BLUE, GREY, ORANGE, colorscale, layout


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
    return getattr(trace, which)[slot, j, : trace.rows(q_block), : trace.cols(j)]


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
        colorscale=colorscale("Viridis" if which == "s" else "Inferno"),
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
    return layout(fig, 360, t=58)


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
    return layout(fig, 300, t=40)


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
    fig.update_layout(showlegend=False, title=dict(text=f"α per row (<span style='color:{ORANGE}'>orange: max grew</span>)",
                                 x=0, font=dict(size=15)), bargap=0.1)
    return layout(fig, 300, t=40)


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
    return layout(fig, 260, t=10)


def output_parts(trace, q_block: int, row: int) -> dict:
    """After the last step: acc / l from the trace, the kernel's out and the float64 reference."""
    slot = trace.tile_slot(q_block)
    j = int(trace.steps(q_block)[-1])
    r = q_block * trace.config.block_m + row
    acc_over_l = trace.acc_after[slot, j, row] / trace.l[q_block, j, row]
    return {"acc_over_l": acc_over_l, "out": trace.out[r], "ref": trace.ref_out[r],
            "err": float(np.max(np.abs(trace.out[r].astype(np.float64) - trace.ref_out[r]))),
            "l": float(trace.l[q_block, j, row])}


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
    return layout(fig, 210, t=10)


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
    s_row = trace.s[slot, j, row, : trace.cols(j)]
    p_row = trace.p[slot, j, row, : trace.cols(j)]
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
    n = {k: tex_num(x) for k, x in v.items() if not isinstance(x, np.ndarray)}
    acc_old, pv, acc_new = (_tex_vec(v[k]) for k in ("acc_old", "pv", "acc_new"))
    lines = [
        rf"m_\text{{new}} &= \max(m_\text{{old}},\ \mathrm{{rowmax}}(s)) = \max({n['m_old']},\ {n['rowmax_s']})"
        rf" = \mathbf{{{n['m_new']}}}",
        rf"\alpha &= e^{{\,m_\text{{old}} - m_\text{{new}}}} = e^{{{n['m_old']} - {_paren(v['m_new'])}}}"
        rf" = \mathbf{{{n['alpha']}}}",
        rf"\ell_\text{{new}} &= \alpha\,\ell_\text{{old}} + \mathrm{{rowsum}}(p) = {n['alpha']} \cdot {n['l_old']}"
        rf" + {n['rowsum_p']} = \mathbf{{{n['l_new']}}}",
        rf"\mathrm{{acc}}_\text{{new}} &= \alpha\,\mathrm{{acc}}_\text{{old}} + pV = {n['alpha']} \cdot {acc_old}"
        rf" + {pv} = {acc_new}",
    ]
    return r"\begin{aligned}" + r" \\[4pt] ".join(lines) + r"\end{aligned}"
