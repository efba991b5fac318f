"""The tile grid of the N x N score matrix, for every pass: which tiles are done, current, pending,
computed by other programs or skipped (causal), with the blocks on chip outlined, at a step of
kernels/steps.py (the forward's walk, split-KV's splits, the backward's dK/dV program)."""
import math

import numpy as np
import plotly.graph_objects as go

from kernels import steps
from viz.figures.style import discrete_colorscale, layout

TILE_STATES = ("done", "current", "pending", "other", "skipped")
TILE_COLORS = {
    "done": "#2E6DB4",  # folded into m, l, acc already
    "current": "#E8710A",  # on chip now
    "pending": "#86AEDC",  # this program will visit it (white step numbers stay readable)
    "other": "#E4E7EB",  # another program computes it
    "skipped": "#FFFFFF",  # above the causal diagonal: never loaded
}
TILE_LABELS = {"done": "done", "current": "current tile", "pending": "pending", "other": "other programs",
               "skipped": "skipped (causal)"}
MAX_TICKS = 6  # tick labels per axis: more overlap at 1280 px
MAX_NUMBERED = 16  # tile numbers drawn only while the grid is at most this many tiles across


SPLIT_COLORS = ("#7B3FA0", "#1B8A5A", "#B8860B", "#C2185B", "#00838F", "#5D4037", "#3949AB", "#6D7B00")


# ---------------------------------------------------------------- the forward's walk
def tile_states(trace, step) -> np.ndarray:
    """(Tq, Tk) TILE_STATES names at this step (a kernels.steps.Step): the tiles of the walk done,
    current or pending (FA2: the followed q-block's row, split by split; FA1: every tile, the one
    program's), every other computed tile another program's."""
    states = np.where(trace.visited, "other", "skipped").astype(object)
    walk = steps.walk(trace, step.q_block if step.loop_order != "fa1" else 0)
    for k, (i, j, _) in enumerate(walk):
        states[i, j] = "done" if k < step.index else ("current" if k == step.index else "pending")
    return states


def tile_grid_figure(trace, step, height: int = 360, title: str | None = None, numbers: bool = True,
                     hover: bool = True, legend_right: bool = False) -> go.Figure:
    """The seq_len x seq_len score matrix cut into block_m x block_n tiles, row 0 at the top; each
    tile of the walk numbered with its step; split-KV: each split's keys marked along the top and
    its tiles of the followed q-block outlined in its colour."""
    c = trace.config
    tq, tk = trace.visit_order.shape
    states = tile_states(trace, step)
    text = np.full((tq, tk), "", dtype=object)
    walk = steps.walk(trace, step.q_block if step.loop_order != "fa1" else 0)
    if numbers and max(tq, tk) <= MAX_NUMBERED:
        for k, (i, j, _) in enumerate(walk):
            text[i, j] = str(k + 1)
    shapes = [("Q_i on chip", "row", step.q_block, "solid"), ("K_j, V_j on chip", "col", step.kv_block, "dot")]
    fig = tile_grid(c, states, text.tolist(), shapes=shapes, title=title or "tiles of S: keys →, queries ↓",
                    height=height, hover=hover, legend_right=legend_right)
    if c.kv_splits > 1:
        rows = c.rows(step.q_block)
        for s in range(c.kv_splits):
            lo, hi = c.split_range(s)
            x0, x1 = c.keys(lo).start, c.keys(hi - 1).stop
            color = SPLIT_COLORS[s % len(SPLIT_COLORS)]
            fig.add_shape(type="rect", x0=x0, x1=x1, y0=rows.start, y1=rows.stop, name=f"split {s}", layer="above",
                          line=dict(color=color, width=3 if s == step.split else 2), fillcolor="rgba(0,0,0,0)")
            if s:
                fig.add_shape(type="line", x0=x0, x1=x0, y0=0, y1=c.seq_len, name=f"split {s} starts", layer="above",
                              line=dict(color="#1f2430", width=1, dash="dash"))
            fig.add_annotation(x=(x0 + x1) / 2, y=rows.start, yanchor="bottom", yshift=1, showarrow=False,
                               text=f"<b>split {s}</b>", font=dict(size=12, color=color), name=f"split {s} label",
                               bgcolor="rgba(255,255,255,0.85)")
    return fig


def number_px(height: int, tiles_across: int) -> int | None:
    """The font size of the tile numbers for a grid drawn `height` px tall, or None when a cell is
    too small for a readable number (under 18 px)."""
    cell = (height - 58 - 56) / max(1, tiles_across)  # the plot area: less the title and the legend
    return 16 if cell >= 34 else 13 if cell >= 24 else 11 if cell >= 18 else None


def _ticks(edges: list[int], most: int = MAX_TICKS) -> list[int]:
    """At most `most` of the block edges, evenly spaced, the first one included."""
    step = max(1, math.ceil((len(edges) - 1) / most))
    return edges[:-1:step]


def tile_grid(c, states: np.ndarray, text: list, shapes: list, title: str, other: str = "programs",
              height: int = 360, hover: bool = True, legend_right: bool = False) -> go.Figure:
    """The tile grid every pass draws: states (Tq, Tk) coloured, step numbers as text, the causal
    diagonal, and outlines (name, "row" | "col", block index, "solid" | "dot"). Its legend always
    lists every state, so the grid keeps its size from step to step."""
    tq, tk = states.shape
    code = {s: k for k, s in enumerate(TILE_STATES)}
    z = np.vectorize(code.get)(states).astype(int)  # (Tq, Tk)
    x_edges = [min(j * c.block_n, c.seq_len) for j in range(tk + 1)]
    y_edges = [min(i * c.block_m, c.seq_len) for i in range(tq + 1)]
    labels = {s: TILE_LABELS[s].replace("programs", other) for s in TILE_STATES}
    hover = [[f"rows {y_edges[i]}–{y_edges[i + 1] - 1} × keys {x_edges[j]}–{x_edges[j + 1] - 1}: {labels[states[i, j]]}"
              for j in range(tk)] for i in range(tq)] if hover else None
    gap = 2 if max(tq, tk) <= 32 else 0
    size = number_px(height + (56 if legend_right else 0), max(tq, tk))
    if size is None:  # cells too small to read a number in: none drawn
        text = [["" for _ in row] for row in text]
    fig = go.Figure(go.Heatmap(
        z=z, x=x_edges, y=y_edges, zmin=-0.5, zmax=len(TILE_STATES) - 0.5,
        colorscale=discrete_colorscale([TILE_COLORS[s] for s in TILE_STATES]), showscale=False,
        xgap=gap, ygap=gap, text=text, texttemplate="%{text}",
        textfont=dict(size=size or 11, color="white"), hovertext=hover,
        hoverinfo="text" if hover else "skip",
        name="tiles"))
    shown = [s for s in TILE_STATES if s in ("done", "current", "pending") or (states == s).any()]
    for s in shown:  # legend entries: every state a step of this walk can show, so the plot area never changes size
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=labels[s],
                                 marker=dict(symbol="square", size=13, color=TILE_COLORS[s],
                                             line=dict(color="#888", width=1))))
    if c.causal:  # keys after the query are masked: the kernel skips tiles wholly above this line
        fig.add_shape(type="line", x0=0, y0=0, x1=c.seq_len, y1=c.seq_len, name="causal diagonal",
                      line=dict(color="#9AA3AE", width=1, dash="dash"), opacity=0.8, layer="above")
    for name, axis, k, dash in shapes:
        box = (dict(x0=0, x1=c.seq_len, y0=y_edges[k], y1=y_edges[k + 1]) if axis == "row"
               else dict(x0=x_edges[k], x1=x_edges[k + 1], y0=0, y1=c.seq_len))
        fig.add_shape(type="rect", name=name, line=dict(color="#1f2430", width=3, dash=dash),
                      fillcolor="rgba(0,0,0,0)", layer="above", **box)
    most = 4 if legend_right else MAX_TICKS  # presenter view's type is larger
    fig.update_xaxes(range=[0, c.seq_len], side="top", tickvals=_ticks(x_edges, most), showgrid=False, zeroline=False,
                     constrain="domain", tickfont=dict(size=12))
    fig.update_yaxes(range=[c.seq_len, 0], tickvals=_ticks(y_edges, most), showgrid=False, zeroline=False,
                     scaleanchor="x", constrain="domain", tickfont=dict(size=12))
    fig.update_layout(title=dict(text=title, x=0, font=dict(size=15)))
    if legend_right:  # presenter view: the grid as tall as the row, its legend beside it
        return layout(fig, height, t=40, legend=dict(orientation="v", y=1, yanchor="top", x=1.02, xanchor="left",
                                                     font=dict(size=11), tracegroupgap=0))
    return layout(fig, height, t=58, legend=dict(orientation="h", y=-0.02, yanchor="top", x=0, font=dict(size=11),
                                                 itemwidth=30, tracegroupgap=0))


# ---------------------------------------------------------------- the backward's dK/dV program
def bwd_tile_states(trace, bstep) -> np.ndarray:
    """(Tq, Tk) TILE_STATES names: the followed kv-block's column at this step (a BackwardStep)."""
    order_t = trace.visit_order.T  # (Tq, Tk)
    states = np.where(order_t >= 0, "other", "skipped").astype(object)
    for b in steps.backward_steps(trace, bstep.kv_block):
        states[b.q_block, bstep.kv_block] = ("done" if b.index < bstep.index else
                                            "current" if b.index == bstep.index else "pending")
    return states


def bwd_tile_grid_figure(trace, bstep, height: int = 360, legend_right: bool = False) -> go.Figure:
    """The N x N score matrix in tiles, row 0 at the top; the kv-block's program walks down its column."""
    c = trace.config
    tk, tq = trace.visit_order.shape
    states = bwd_tile_states(trace, bstep)
    text = [["" for _ in range(tk)] for _ in range(tq)]
    if max(tq, tk) <= MAX_NUMBERED:
        for b in steps.backward_steps(trace, bstep.kv_block):
            text[b.q_block][bstep.kv_block] = str(b.index + 1)
    return tile_grid(c, states, text, shapes=[
        ("K_j, V_j on chip", "col", bstep.kv_block, "solid"), ("Q_i streaming", "row", bstep.q_block, "dot")],
        title="tiles: keys →, queries ↓", other="kv-blocks", height=height, legend_right=legend_right)
