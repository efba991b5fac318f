"""The FlashAttention tiles page: (AttentionTrace, q_block, step, row) -> figures and numbers.

Every value drawn is read from the trace the kernel wrote. The arithmetic done here on those
values (alpha x acc, acc after - alpha x acc before, sums of the kernel's p) is labelled derived.
`row` is a row of the q-block (0 .. block_m - 1); labels show its number in the sequence. For a
FlashAttention-1-order trace the step is the one program's (every tile), and the q-block is the
current tile's.
"""
import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from viz.figures.grid import tile_at
from viz.figures.style import BLUE, GREY, ORANGE, colorscale, layout


def where(trace, q_block: int, step: int) -> tuple[int, int, int]:
    """(q-block, kv-block, k): the tile of this step and its index among its q-block's tiles."""
    i, j = tile_at(trace, q_block, step)
    return i, j, int(np.flatnonzero(trace.steps(i) == j)[0])


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
    """s or p of the current tile, valid rows and columns only; NaN where the kernel masked the
    score (s = -inf, p = 0): masked cells are drawn in the background grey in both."""
    i, j, _ = where(trace, q_block, step)
    slot = trace.tile_slot(i)
    s = trace.s[slot, j, : trace.rows(i), : trace.cols(j)]
    vals = s if which == "s" else trace.p[slot, j, : trace.rows(i), : trace.cols(j)]
    return np.where(np.isfinite(s), vals, np.nan)


def tile_heatmap_figure(trace, q_block: int, step: int, which: str, row: int | None = None,
                        height: int = 360) -> go.Figure:
    """Heatmap of the kernel's s (scores) or p = exp(s - m_new) for the current tile."""
    c = trace.config
    i, j, _ = where(trace, q_block, step)
    z = tile_values(trace, q_block, step, which)  # (rows, cols)
    zmin, zmax = tile_ranges(trace, i)[which]
    xs = j * c.block_n + np.arange(z.shape[1])
    ys = i * c.block_m + np.arange(z.shape[0])
    title = "scores s = q·k × scale" if which == "s" else "p = exp(s − m_new)"
    fig = go.Figure(go.Heatmap(
        z=z, x=xs, y=ys, zmin=zmin, zmax=zmax, colorscale=colorscale("Viridis" if which == "s" else "Inferno"),
        colorbar=dict(thickness=12, len=0.9, tickfont=dict(size=12)),
        hovertemplate="row %{y}, key %{x}<br>" + which + " = %{z:.4g}<extra></extra>", name=which))
    if row is not None and row < z.shape[0]:
        y = i * c.block_m + row
        fig.add_shape(type="rect", x0=xs[0] - 0.5, x1=xs[-1] + 0.5, y0=y - 0.5, y1=y + 0.5,
                      line=dict(color="#FFFFFF", width=2), name="selected row")
    fig.update_xaxes(showgrid=False, zeroline=False, side="top", tickfont=dict(size=12), nticks=6)
    fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False, scaleanchor="x", constrain="domain",
                     tickfont=dict(size=12), nticks=6)
    fig.update_layout(title=dict(text=title, x=0.0, xanchor="left", font=dict(size=15)),
                      plot_bgcolor="#BFC5CC")  # masked cells (NaN) show this grey
    return layout(fig, height, t=58)


# ---------------------------------------------------------------- running state m, l, alpha
def state_series(trace, q_block: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(kv-blocks in visit order, values (rows, steps)) of trace.m / l / alpha for q_block."""
    js = trace.steps(q_block)
    vals = getattr(trace, name)[q_block][:, : trace.rows(q_block)][js].T  # (rows, steps)
    return js, vals


def running_state_figure(trace, q_block: int, step: int, row: int, height: int = 300) -> go.Figure:
    """Running max m and running sum l of every row of the q-block, one line per row, drawn up to
    this step; the steps still to come faded."""
    i, _, k = where(trace, q_block, step)
    r0 = i * trace.config.block_m
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=("running max m", "running sum ℓ"))
    for col, name in ((1, "m"), (2, "l")):
        js, vals = state_series(trace, i, name)
        for part, sl, opacity in (("done", slice(0, k + 1), 0.45), ("to come", slice(k, None), 0.12)):
            xs, ys = [], []
            for r in range(vals.shape[0]):  # every row in one trace, lines broken by None
                xs += list(js[sl]) + [None]
                ys += list(vals[r, sl]) + [None]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=GREY, width=1), opacity=opacity,
                                     name=f"{name}: all rows, {part}", showlegend=False, hoverinfo="skip"),
                          row=1, col=col)
        fig.add_trace(go.Scatter(x=js[k:], y=vals[row, k:], mode="lines", line=dict(color=BLUE, width=2, dash="dot"),
                                 opacity=0.35, name=f"{name}: row {r0 + row}, to come", showlegend=False,
                                 hoverinfo="skip"), row=1, col=col)
        fig.add_trace(go.Scatter(
            x=js[: k + 1], y=vals[row, : k + 1], mode="lines+markers", line=dict(color=BLUE, width=3),
            marker=dict(size=7), name=f"{name}: row {r0 + row}", showlegend=False,
            hovertemplate="kv-block %{x}<br>" + name + " = %{y:.5g}<extra></extra>"), row=1, col=col)
        fig.add_trace(go.Scatter(x=[js[k]], y=[vals[row, k]], mode="markers", name=f"{name}: this step",
                                 marker=dict(size=14, color=ORANGE, line=dict(color="white", width=2)),
                                 showlegend=False, hoverinfo="skip"), row=1, col=col)
        fig.update_xaxes(title_text="kv-block j", tickvals=list(js) if len(js) <= 16 else None, nticks=8,
                         range=[js[0] - 0.3, js[-1] + 0.3], row=1, col=col)
    fig.update_annotations(font=dict(size=15))
    return layout(fig, height, t=40)


def step_facts(trace, q_block: int, step: int) -> dict:
    """What a step does to the rows of its q-block, from the kernel's alpha: whether it is the
    q-block's first tile, rows whose max grew, row-steps whose max grew so far, and the rescales
    of acc done so far (the kernel multiplies acc by alpha at every step, grown or not)."""
    i, _, k = where(trace, q_block, step)
    _, alpha = state_series(trace, i, "alpha")
    rows = alpha.shape[0]
    grew_now = int(np.sum(alpha[:, k] < 1)) if k > 0 else 0
    return {"first": k == 0, "rows": rows, "grew": grew_now, "grew_so_far": int(np.sum(alpha[:, 1: k + 1] < 1)),
            "multiplies_so_far": rows * (k + 1), "q_block": i, "k": k, "steps": alpha.shape[1]}


def alpha_figure(trace, q_block: int, step: int, row: int, height: int = 300) -> go.Figure:
    """This step's alpha = exp(m_old - m_new) per row; rows whose max grew in orange."""
    c = trace.config
    i, _, k = where(trace, q_block, step)
    _, alpha = state_series(trace, i, "alpha")
    a = alpha[:, k]
    grew = a < 1 if k > 0 else np.zeros(a.size, bool)
    ys = i * c.block_m + np.arange(a.size)
    fig = go.Figure(go.Bar(
        x=ys, y=a, marker=dict(color=[ORANGE if g else GREY for g in grew],
                               line=dict(width=[2 if r == row else 0 for r in range(a.size)], color="#1f2430")),
        hovertemplate="row %{x}<br>α = %{y:.5g}<extra></extra>", name="alpha"))
    if grew.any():  # a marker on each rescaled row: alpha can be ~1e-20, a bar too short to see
        fig.add_trace(go.Scatter(x=ys[grew], y=a[grew], mode="markers", name="max grew",
                                 marker=dict(color=ORANGE, size=8, symbol="diamond", line=dict(color="white", width=1)),
                                 hovertemplate="row %{x}: max grew, α = %{y:.3g}<extra></extra>"))
    if k == 0:
        fig.add_annotation(text="first tile: m_old = −∞, so α = 0 for every row", x=0.5, y=0.5, xref="paper",
                           yref="paper", showarrow=False, font=dict(size=14), bgcolor="rgba(255,255,255,0.85)")
    fig.update_xaxes(title_text="query row", showgrid=False, nticks=8)
    fig.update_yaxes(range=[-0.06, 1.08])
    fig.update_layout(showlegend=False, bargap=0.1, title=dict(
        text=f"α per row (<span style='color:{ORANGE}'>orange: max grew</span>)", x=0, font=dict(size=15)))
    return layout(fig, height, t=40)


# ---------------------------------------------------------------- accumulator of one row
def accumulator_parts(trace, q_block: int, step: int, row: int) -> dict:
    """One row's accumulator around this step, (d,) each. FA2: acc unnormalized, before and after
    (from the trace), alpha x acc before and p V = after - alpha x before (derived). FA1: O
    normalized, read from and written to memory; its parts are l_old alpha O_old / l_new and
    p V / l_new (derived)."""
    i, j, _ = where(trace, q_block, step)
    slot = trace.tile_slot(i)
    before, after = trace.acc_before[slot, j, row], trace.acc_after[slot, j, row]
    alpha = float(trace.alpha[i, j, row])
    if trace.config.loop_order == "fa1":
        k = int(np.flatnonzero(trace.steps(i) == j)[0])
        l_old = float(trace.l[i, trace.steps(i)[k - 1], row]) if k > 0 else 0.0
        l_new = float(trace.l[i, j, row])
        scaled = before * (l_old * alpha / l_new)
        return {"before": before, "scaled": scaled, "pv": after - scaled, "after": after, "alpha": alpha,
                "l_old": l_old, "l_new": l_new}
    scaled = before * alpha
    return {"before": before, "scaled": scaled, "pv": after - scaled, "after": after, "alpha": alpha}


def acc_labels(loop_order: str) -> tuple[str, str, str, str]:
    if loop_order == "fa1":
        return ("O before (read)", "ℓ_old·α·O / ℓ_new (derived)", "+ pV / ℓ_new (derived)", "= O after (written)")
    return ("acc before", "α × acc before (derived)", "+ p·V: after − α·before (derived)", "= acc after")


def _acc_range(trace, q_block: int, row: int) -> float:
    slot = trace.tile_slot(q_block)
    js = trace.steps(q_block)
    vals = np.concatenate([trace.acc_before[slot, js, row].ravel(), trace.acc_after[slot, js, row].ravel()])
    vals = vals[np.isfinite(vals)]
    return float(np.abs(vals).max()) if vals.size and np.abs(vals).max() > 0 else 1.0


def accumulator_figure(trace, q_block: int, step: int, row: int, height: int = 260) -> go.Figure:
    """The four stages of acc for one row as strips over head_dim, one fixed color range per row."""
    i, _, _ = where(trace, q_block, step)
    parts = accumulator_parts(trace, q_block, step, row)
    z = np.stack([parts["before"], parts["scaled"], parts["pv"], parts["after"]])  # (4, d)
    lim = _acc_range(trace, i, row)
    fig = go.Figure(go.Heatmap(
        z=z, y=list(acc_labels(trace.config.loop_order)), x=np.arange(z.shape[1]), zmin=-lim, zmax=lim,
        colorscale="RdBu_r", zmid=0, xgap=1, ygap=3, colorbar=dict(thickness=12, tickfont=dict(size=12)),
        hovertemplate="%{y}<br>dim %{x}: %{z:.5g}<extra></extra>", name="acc"))
    fig.update_yaxes(autorange="reversed", showgrid=False, tickfont=dict(size=14))
    fig.update_xaxes(title_text="head dim", showgrid=False)
    return layout(fig, height, t=10)


def output_parts(trace, q_block: int, row: int) -> dict:
    """After the last step: acc / l from the trace, the kernel's out and the float64 reference."""
    slot = trace.tile_slot(q_block)
    j = int(trace.steps(q_block)[-1])
    r = q_block * trace.config.block_m + row
    l_last = float(trace.l[q_block, j, row])
    acc = trace.acc_after[slot, j, row]
    acc_over_l = acc if trace.config.loop_order == "fa1" else acc / l_last
    return {"acc_over_l": acc_over_l, "out": trace.out[r], "ref": trace.ref_out[r], "l": l_last,
            "err": float(np.max(np.abs(trace.out[r].astype(np.float64) - trace.ref_out[r])))}


def output_figure(trace, q_block: int, row: int, height: int = 210) -> go.Figure:
    parts = output_parts(trace, q_block, row)
    z = np.stack([parts["acc_over_l"], parts["out"], parts["ref"]])
    lim = float(np.abs(trace.ref_out).max()) or 1.0
    first = "O after the last tile (trace)" if trace.config.loop_order == "fa1" else "acc / ℓ (trace, derived)"
    fig = go.Figure(go.Heatmap(
        z=z, y=[first, "out (kernel)", "float64 reference"], x=np.arange(z.shape[1]), zmin=-lim, zmax=lim,
        colorscale="RdBu_r", zmid=0, xgap=1, ygap=3, colorbar=dict(thickness=12, tickfont=dict(size=12)),
        hovertemplate="%{y}<br>dim %{x}: %{z:.6g}<extra></extra>", name="out"))
    fig.update_yaxes(autorange="reversed", showgrid=False)
    fig.update_xaxes(title_text="head dim", showgrid=False)
    return layout(fig, height, t=10)


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
    i, j, k = where(trace, q_block, step)
    js = trace.steps(i)
    slot = trace.tile_slot(i)
    s_row = trace.s[slot, j, row, : trace.cols(j)]
    p_row = trace.p[slot, j, row, : trace.cols(j)]
    finite = s_row[np.isfinite(s_row)]
    prev = int(js[k - 1]) if k > 0 else None
    parts = accumulator_parts(trace, q_block, step, row)
    return {
        "j": j, "m_old": float(trace.m[i, prev, row]) if prev is not None else -math.inf,
        "rowmax_s": float(finite.max()) if finite.size else -math.inf, "m_new": float(trace.m[i, j, row]),
        "alpha": float(trace.alpha[i, j, row]), "l_old": float(trace.l[i, prev, row]) if prev is not None else 0.0,
        "rowsum_p": float(p_row.sum(dtype=np.float64)), "l_new": float(trace.l[i, j, row]),
        "acc_old": parts["before"], "pv": parts["pv"], "acc_new": parts["after"],
    }


def update_equations(trace, q_block: int, step: int, row: int) -> str:
    """One aligned LaTeX block: the update equations with this row's numbers plugged in. FA2 keeps
    acc unnormalized (one division at the end); FA1 renormalizes O at every tile."""
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
    ]
    if trace.config.loop_order == "fa1":
        lines.append(rf"O_\text{{new}} &= \frac{{\ell_\text{{old}}\,\alpha\,O_\text{{old}} + pV}}{{\ell_\text{{new}}}}"
                     rf" = \frac{{{n['l_old']} \cdot {n['alpha']} \cdot {acc_old} + \dots}}{{{n['l_new']}}}")
        lines.append(rf"&= {acc_new}")
    else:
        lines.append(rf"\mathrm{{acc}}_\text{{new}} &= \alpha\,\mathrm{{acc}}_\text{{old}} + pV = {n['alpha']} \cdot"
                     rf" {acc_old} + {pv}")
        lines.append(rf"&= {acc_new}")
    return r"\begin{aligned}" + r" \\[4pt] ".join(lines) + r"\end{aligned}"
