"""Standard attention's figures: the followed rows of S and P in HBM as the three kernels write and
read them (kernels/standard.py), and the bytes of S and P moved so far beside FlashAttention's none."""
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from viz.figures.style import BLUE, GREY, ORANGE, colorscale, layout


def rows_figure(s_rows: np.ndarray, p_rows: np.ndarray, s_done: int, p_done: bool, p_read: int, row0: int,
                height: int = 300) -> go.Figure:
    """S (left) and P (right) rows of the followed q-block: written columns shown, the rest blank;
    a frame around what kernel 3 has read back of P."""
    n = s_rows.shape[1]
    s_shown = np.where(np.arange(n)[None, :] < s_done, s_rows, np.nan)
    s_shown = np.where(np.isinf(s_shown), np.nan, s_shown)
    p_shown = p_rows if p_done else np.full_like(p_rows, np.nan)
    finite = s_rows[np.isfinite(s_rows)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.06,
                        subplot_titles=("S rows in HBM (written by kernel 1)", "P rows in HBM (written by kernel 2)"))
    ys = np.arange(row0, row0 + s_rows.shape[0])
    fig.add_trace(go.Heatmap(z=s_shown, y=ys, zmin=lo, zmax=hi, colorscale=colorscale("RdBu"), reversescale=True,
                             showscale=False, hovertemplate="row %{y}, key %{x}: S = %{z:.4g}<extra></extra>"), 1, 1)
    fig.add_trace(go.Heatmap(z=p_shown, y=ys, zmin=0.0, zmax=float(np.nanmax(p_rows)) or 1.0, colorscale=colorscale("Viridis"),
                             showscale=False, hovertemplate="row %{y}, key %{x}: P = %{z:.4g}<extra></extra>"), 1, 2)
    if p_read:
        fig.add_shape(type="rect", x0=-0.5, x1=p_read - 0.5, y0=row0 - 0.5, y1=row0 + s_rows.shape[0] - 0.5, xref="x2", yref="y2",
                      line=dict(color=ORANGE, width=3))
    for axis in ("yaxis", "yaxis2"):
        fig.layout[axis].update(range=[row0 + s_rows.shape[0] - 0.5, row0 - 0.5], title="row")
    fig.layout.xaxis.update(title="key", range=[-0.5, n - 0.5])
    fig.layout.xaxis2.update(title="key (orange: read back by kernel 3)", range=[-0.5, n - 0.5])
    return layout(fig, height, t=40)


def bytes_figure(moved: dict, whole: dict, itemsize: int, height: int = 240) -> go.Figure:
    """Bytes of S and P written to and read from HBM: the followed rows so far, the whole run (the
    kernels' counters), and FlashAttention's: none."""
    names = ["S written", "S read", "P written", "P read"]
    keys = ["s_stores", "s_loads", "p_stores", "p_loads"]
    fig = go.Figure()
    fig.add_bar(y=names, x=[whole[k] * itemsize for k in keys], orientation="h", marker_color=GREY,
                name="standard, whole run (counted)")
    fig.add_bar(y=names, x=[moved[k] * itemsize for k in keys], orientation="h", marker_color=BLUE,
                name="standard, these rows so far")
    fig.add_bar(y=names, x=[0, 0, 0, 0], orientation="h", marker_color=ORANGE, name="FlashAttention: 0")
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="bytes")
    return layout(fig, height, barmode="group", legend=dict(orientation="h", y=-0.35), t=10)
