"""The Backward page: (BackwardTrace, BackwardStep of kernels/steps.py, row) -> figures. Every tile value is what the
dK/dV kernel wrote; the Jacobian of one row is built from the kernel's own P and dP row (float64
arithmetic, labelled), to set it next to the kernel's dS."""
import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kernels import reference, steps
from viz.figures.style import BLUE, ORANGE, colorscale, layout

BWD_TILES = {  # name -> (title, colorscale, diverging)
    "p": ("P = exp(s − lse), recomputed", "Viridis", False),
    "dp": ("dP = dO Vᵀ", "RdBu_r", True),
    "ds": ("dS = P ∘ (dP − D)", "RdBu_r", True),
}


def bwd_tile_ranges(trace, kv_block: int) -> dict:
    """Fixed color ranges over every step of this kv-block's program: {name: (lo, hi)}."""
    slot = trace.tile_slot(kv_block)
    iq = [b.q_block for b in steps.backward_steps(trace, kv_block)]
    out = {}
    for name, (_, _, diverging) in BWD_TILES.items():
        a = getattr(trace, name)[slot, iq]  # (steps, block_m, block_n)
        a = a[np.isfinite(a)]
        # the 99th percentile, not the max: one large entry would leave every other cell white (dS) or
        # black (P); cells beyond it take the end colour, the hover shows their value
        if not a.size:
            out[name] = (-1.0, 1.0) if diverging else (0.0, 1.0)
        elif diverging:
            lim = float(np.percentile(np.abs(a), 99)) or float(np.abs(a).max()) or 1.0
            out[name] = (-lim, lim)
        else:
            lo, hi = float(a.min()), float(np.percentile(a, 99))
            out[name] = (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)
    return out


def bwd_tile_values(trace, bstep, name: str) -> np.ndarray:
    """P, dP or dS of the current tile, valid rows and columns only, NaN above the causal diagonal."""
    c = trace.config
    vals = getattr(trace, name)[trace.tile_slot(bstep.kv_block), bstep.q_block, : len(bstep.rows), : len(bstep.keys)]
    if c.causal:  # the kernel holds 0 (P, dS) or an unused dP there: masked, drawn grey
        rows = np.array(bstep.rows)[:, None]
        cols = np.array(bstep.keys)[None, :]
        vals = np.where(cols <= rows, vals, np.nan)
    return vals


def bwd_tile_heatmap_figure(trace, bstep, name: str, row: int | None = None, height: int = 360) -> go.Figure:
    """Heatmap of the kernel's P, dP or dS tile; row: a global query row to outline."""
    vals = bwd_tile_values(trace, bstep, name)
    title, scale, diverging = BWD_TILES[name]
    zmin, zmax = bwd_tile_ranges(trace, bstep.kv_block)[name]
    xs, ys = np.array(bstep.keys), np.array(bstep.rows)
    fig = go.Figure(go.Heatmap(
        z=vals, x=xs, y=ys, zmin=zmin, zmax=zmax, colorscale=colorscale(scale) if not diverging else scale,
        colorbar=dict(thickness=12, len=0.9, tickfont=dict(size=12), exponentformat="power"),
        hovertemplate="row %{y}, col %{x}<br>" + name + " = %{z:.4g}<extra></extra>", name=name,
    ))
    if row is not None and ys[0] <= row <= ys[-1]:
        fig.add_shape(type="rect", x0=xs[0] - 0.5, x1=xs[-1] + 0.5, y0=row - 0.5, y1=row + 0.5,
                      line=dict(color="#1f2430" if diverging else "#FFFFFF", width=2), name="selected row")
    fig.update_xaxes(showgrid=False, zeroline=False, side="top", tickfont=dict(size=12))
    fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False, scaleanchor="x", constrain="domain",
                     tickfont=dict(size=12))
    fig.update_layout(title=dict(text=title, x=0.0, xanchor="left", font=dict(size=15)), plot_bgcolor="#BFC5CC")
    return layout(fig, height, t=58)


def delta_figure(trace, bstep) -> go.Figure:
    """D per row of the q-block on chip: the preprocess kernel's value, the float64 reference."""
    rows = np.array(bstep.rows)
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
    return layout(fig, 330, t=40)


def bwd_acc_figure(trace, bstep, height: int = 300) -> go.Figure:
    """dK_j and dV_j after this step (block_n rows x head_dim), colors fixed over the program's steps."""
    c = trace.config
    kv_block, i = bstep.kv_block, bstep.q_block
    slot = trace.tile_slot(kv_block)
    iq = [b.q_block for b in steps.backward_steps(trace, kv_block)]
    cols = len(bstep.keys)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.2,
                        subplot_titles=("dK<sub>j</sub> so far = scale·Σ dSᵀQ<sub>i</sub>",
                                        "dV<sub>j</sub> so far = Σ PᵀdO<sub>i</sub>"))
    ys = np.array(bstep.keys)
    for col, name in ((1, "dk_acc"), (2, "dv_acc")):
        every = getattr(trace, name)[slot, iq, :cols]  # (steps, cols, d)
        lim = float(np.nanmax(np.abs(every))) or 1.0
        fig.add_trace(go.Heatmap(
            z=getattr(trace, name)[slot, i, :cols], x=np.arange(c.head_dim), y=ys, zmin=-lim, zmax=lim, zmid=0,
            colorscale="RdBu_r", colorbar=dict(thickness=10, len=0.9, x=0.41 if col == 1 else 1.01,
                                               tickfont=dict(size=11), exponentformat="power"),
            hovertemplate="key row %{y}, dim %{x}<br>%{z:.4g}<extra></extra>", name=name), row=1, col=col)
        fig.update_yaxes(autorange="reversed", showgrid=False, row=1, col=col, title_text="key row" if col == 1 else None,
                         showticklabels=col == 1)  # the same rows as dK's, labelled once
        fig.update_xaxes(title_text="head dim", showgrid=False, row=1, col=col)
    fig.update_annotations(font=dict(size=15))
    return layout(fig, height, t=40)


# -- one row, two ways
def backward_row_parts(trace, row: int) -> dict:
    """One query row of the softmax backward both ways. source "kernel": P, dP and dS are the
    kernel's tiles; "float64": P and dP recomputed (the trace kept only some kv-blocks). dp is
    shown as the kernel computed it; the Jacobian product sees 0 where a key is masked (P = 0
    there, so J's row and column are 0 whatever dP holds)."""
    c = trace.config
    p, dp, ds = (trace.row_values(row, n) for n in ("p", "dp", "ds"))
    source = "kernel" if p is not None else "float64"
    if p is None:
        p, dp = reference.attention_row(trace.q, trace.k, trace.v, trace.do, row, c.causal, trace.sm_scale)
    p, dp = p.astype(np.float64), dp.astype(np.float64)
    keys = np.arange(row + 1 if c.causal else p.size)  # the keys this query may see
    seen = np.zeros(p.size, dtype=bool)
    seen[keys] = True
    both = reference.softmax_backward_row(p, np.where(seen, dp, 0.0))
    d_kernel = float(trace.delta[row])
    ds_d = ds.astype(np.float64) if ds is not None else p * (np.where(seen, dp, 0.0) - d_kernel)
    return {"source": source, "keys": keys, "p": p, "dp": dp, "d": d_kernel, "d_pdp": both["d"],
            "ds_jacobian": both["ds_jacobian"], "ds_d": ds_d,
            "max_diff": float(np.max(np.abs(both["ds_jacobian"][keys] - ds_d[keys])))}


def backward_row_table(parts: dict, n: int = 6) -> list[dict]:
    """The first n entries of the row (keys it may see) in both forms, for st.dataframe."""
    cols = parts["keys"][:n]
    return [{"key j": int(j), "P": parts["p"][j], "dP": parts["dp"][j],
             "(diag(P) − P Pᵀ) dP": parts["ds_jacobian"][j],
             "P ∘ (dP − D)": parts["ds_d"][j],
             "difference": parts["ds_jacobian"][j] - parts["ds_d"][j]} for j in cols]


MAX_JACOBIAN_CELLS = 256  # the Jacobian heatmap shows at most this many rows and columns


def backward_row_figure(parts: dict, row: int) -> go.Figure:
    """Left: log10 |J| of the row's N x N Jacobian diag(P) − P Pᵀ (every k-th entry when N is
    large); right: dS of the row by both forms."""
    n = parts["p"].size
    seen = parts["keys"].size  # causal: the keys this query may see; J is 0 elsewhere
    stride = max(1, math.ceil(seen / MAX_JACOBIAN_CELLS))
    idx = np.arange(0, seen, stride)
    jac = reference.jacobian(parts["p"], idx, idx)  # the sampled entries only: never N x N
    with np.errstate(divide="ignore"):
        z = np.where(jac != 0, np.log10(np.abs(jac)), np.nan)  # exact zeros (masked keys): blank
    fig = make_subplots(rows=1, cols=2, column_widths=[0.4, 0.6], horizontal_spacing=0.17, subplot_titles=(
        f"log₁₀|J|: {seen} × {seen}" + (f", every {stride}th" if stride > 1 else "")
        + (" (keys ≤ row)" if seen < n else ""),
        "dS of this row, both ways"))
    domain_end = 0.4 * (1 - 0.17)
    fig.add_trace(go.Heatmap(z=z, x=idx, y=idx, customdata=jac, colorscale=colorscale("Viridis"),
                             colorbar=dict(thickness=10, len=0.9, x=domain_end + 0.01, tickfont=dict(size=11)),
                             hovertemplate="J[%{y}, %{x}] = %{customdata:.3g}<extra></extra>", name="Jacobian"),
                  row=1, col=1)
    if seen == 1:  # one key: P = 1, so J = P(1 − P) = 0 and dS = 0
        fig.add_annotation(text="one key: P = 1, J = P(1 − P) = 0", x=0, y=0, xref="x", yref="y", showarrow=False,
                           font=dict(size=13), bgcolor="rgba(255,255,255,0.85)")
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", showgrid=False, row=1, col=1,
                     range=[idx[-1] + 0.5, -0.5] if seen == 1 else None)
    fig.update_xaxes(showgrid=False, constrain="domain", row=1, col=1, range=[-0.5, 0.5] if seen == 1 else None)
    fig.update_yaxes(exponentformat="power", row=1, col=2)
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
    return layout(fig, 330, t=40)


def row_forms_tex(parts: dict, row: int, n_show: int = 3) -> str:
    """The row's two forms with its numbers: the first keys' dS both ways, and D."""
    from viz.figures.attention import tex_num

    keys = parts["keys"][:n_show]
    jac = ", ".join(tex_num(parts["ds_jacobian"][j]) for j in keys)
    d_form = ", ".join(tex_num(parts["ds_d"][j]) for j in keys)
    more = r", \dots" if parts["keys"].size > n_show else ""
    return (r"\begin{aligned}"
            rf"(\mathrm{{diag}}(P) - PP^\top)\,dP &= [{jac}{more}]\\"
            rf"P \circ (dP - D) &= [{d_form}{more}],\quad D = {tex_num(parts['d'])}\\"
            rf"\max|\text{{difference}}| &= {tex_num(parts['max_diff'], 2)}"
            r"\end{aligned}")


def row_forms_figure(parts: dict, height: int = 260) -> go.Figure:
    """dS of one row both ways, over the keys it sees (the presenter view's half of backward_row_figure)."""
    keys = parts["keys"]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=keys, y=parts["ds_jacobian"][keys], mode="lines", line=dict(color=BLUE, width=6),
                             opacity=0.45, name="(diag(P) − P Pᵀ) dP"))
    fig.add_trace(go.Scatter(x=keys, y=parts["ds_d"][keys], mode="markers" if keys.size <= 256 else "lines",
                             marker=dict(size=6, color=ORANGE), line=dict(color=ORANGE, width=1.5),
                             name="P ∘ (dP − D)" + (" (kernel)" if parts["source"] == "kernel" else "")))
    fig.update_xaxes(title_text="key j")
    fig.update_yaxes(exponentformat="power")
    fig.update_layout(legend=dict(orientation="h", y=1.12, x=0, font=dict(size=13)))
    return layout(fig, height, t=40)


# -- the post's worked example: P = [0.1, 0.5, 0.4]
EXAMPLE_P = (0.1, 0.5, 0.4)
EXAMPLE_DP = (1.0, 2.0, 3.0)


def example_parts(p, dp, kernel: tuple | None) -> dict:
    """The Jacobian J = diag(P) − P Pᵀ, J dP and P ∘ (dP − D) in float64, and the kernel's (dS, D)
    (kernels/softmax_bwd.py) when it ran. ValueError for a P that is not a probability vector."""
    p = np.asarray(p, dtype=np.float64)
    dp = np.asarray(dp, dtype=np.float64)
    if np.any(p < 0) or abs(p.sum() - 1) > 1e-6:
        raise ValueError(f"P must be non-negative and sum to 1 (a softmax output), got {list(p)} (sum {p.sum():.6g})")
    both = reference.softmax_backward_row(p, dp)
    jac = np.diag(p) - np.outer(p, p)
    out = {"p": p, "dp": dp, "jac": jac, "ds_jacobian": both["ds_jacobian"], "d": both["d"],
           "ds_d": p * (dp - both["d"])}
    if kernel is not None:
        out["ds_kernel"], out["d_kernel"] = np.asarray(kernel[0], dtype=np.float64), float(kernel[1])
    return out


def example_second_form_tex(ex: dict) -> str:
    """The post's second form in a, b, c: dS = P ∘ dP − (Pᵀ dP) P, then with the numbers."""
    from viz.figures.attention import tex_num

    p = ex["p"]
    pdp = " + ".join(f"{tex_num(v, 3)}{n}" for v, n in zip(p, "abc", strict=True))
    col = r" \\ ".join(f"{tex_num(v, 3)}{n}" for v, n in zip(p, "abc", strict=True))
    pcol = r" \\ ".join(tex_num(v, 3) for v in p)
    values = r" \\ ".join(tex_num(v) for v in ex["ds_d"])
    return (r"dS = P \circ dP - (P^\top dP)\,P = \begin{bmatrix} " + col + r" \end{bmatrix} - (" + pdp
            + r")\begin{bmatrix} " + pcol + r" \end{bmatrix} = \begin{bmatrix} " + values + r" \end{bmatrix}")


def example_tex(ex: dict) -> tuple[str, str]:
    """J; and each entry of J dP in a, b, c, then with the numbers (two LaTeX blocks)."""
    from viz.figures.attention import tex_num

    jac = ex["jac"]
    rows = r" \\ ".join(" & ".join(tex_num(v, 3) for v in r) for r in jac)
    names = "abc"

    def entry(k: int) -> str:
        terms = []
        for j in range(3):
            v = jac[k, j]
            terms.append(("- " if v < 0 else ("+ " if terms else "")) + f"{tex_num(abs(v), 3)}{names[j]}")
        return " ".join(terms)

    values = r" \\ ".join(tex_num(v) for v in ex["ds_jacobian"])
    return (rf"J = \mathrm{{diag}}(P) - PP^\top = \begin{{bmatrix}} {rows} \end{{bmatrix}}",
            r"J\,dP = \begin{bmatrix} " + r" \\ ".join(entry(k) for k in range(3)) + r" \end{bmatrix}"
            + rf" = \begin{{bmatrix}} {values} \end{{bmatrix}}")
