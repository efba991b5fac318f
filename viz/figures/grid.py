"""The tile grid of the N x N score matrix, for every pass: which tiles are done, current, pending,
computed by other programs or skipped (causal), with the blocks on chip outlined. Also where a
program is at a step: the kv-block (forward), the q-block (backward), the tile (FA1's one program)."""
import math

import numpy as np
import plotly.graph_objects as go

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


# ---------------------------------------------------------------- where a program is
def step_count(trace, q_block: int) -> int:
    """Steps the followed program takes: the tiles of q_block (FA2), every tile (FA1's one program)."""
    if trace.config.loop_order == "fa1":
        return int(trace.visited.sum())
    return len(trace.steps(q_block))


def tile_at(trace, q_block: int, step: int) -> tuple[int, int]:
    """(q-block, kv-block) of the tile computed at `step` of the followed program."""
    if trace.config.loop_order == "fa1":
        i, j = np.nonzero(trace.visit_order == step)
        return int(i[0]), int(j[0])
    return q_block, int(trace.steps(q_block)[step])


def kv_block(trace, q_block: int, step: int) -> int:
    return tile_at(trace, q_block, step)[1]


def tile_states(trace, q_block: int, step: int) -> np.ndarray:
    """(Tq, Tk) TILE_STATES names at this step: FA2 colours the followed q-block's row; FA1's single
    program walks every tile, so all of them are its own."""
    order = trace.visit_order
    if trace.config.loop_order == "fa1":
        states = np.full(order.shape, "skipped", dtype=object)
        states[(order >= 0) & (order < step)] = "done"
        states[order == step] = "current"
        states[order > step] = "pending"
        return states
    states = np.where(trace.visited, "other", "skipped").astype(object)
    row = np.full(order.shape[1], "skipped", dtype=object)
    o = order[q_block]
    row[(o >= 0) & (o < step)] = "done"
    row[o == step] = "current"
    row[o > step] = "pending"
    states[q_block] = row
    return states


def tile_grid_figure(trace, q_block: int, step: int, height: int = 360, title: str | None = None) -> go.Figure:
    """The seq_len x seq_len score matrix cut into block_m x block_n tiles, row 0 at the top."""
    c = trace.config
    tq, tk = trace.visit_order.shape
    states = tile_states(trace, q_block, step)
    text = np.full((tq, tk), "", dtype=object)
    if max(tq, tk) <= MAX_NUMBERED:  # the step at which the program computes each tile
        order = trace.visit_order
        rows = range(tq) if c.loop_order == "fa1" else [q_block]
        for i in rows:
            for j in range(tk):
                if order[i, j] >= 0:
                    text[i, j] = str(order[i, j] + 1)
    i, j = tile_at(trace, q_block, step)
    return tile_grid(c, states, text.tolist(), shapes=[
        ("Q_i on chip", "row", i, "solid"), ("K_j, V_j on chip", "col", j, "dot")],
        title=title or "tiles of S: keys →, queries ↓", height=height)


def _ticks(edges: list[int]) -> list[int]:
    """At most MAX_TICKS of the block edges, evenly spaced, the first one included."""
    step = max(1, math.ceil((len(edges) - 1) / MAX_TICKS))
    return edges[:-1:step]


def tile_grid(c, states: np.ndarray, text: list, shapes: list, title: str, other: str = "programs",
              height: int = 360) -> go.Figure:
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
              for j in range(tk)] for i in range(tq)]
    gap = 2 if max(tq, tk) <= 32 else 0
    fig = go.Figure(go.Heatmap(
        z=z, x=x_edges, y=y_edges, zmin=-0.5, zmax=len(TILE_STATES) - 0.5,
        colorscale=discrete_colorscale([TILE_COLORS[s] for s in TILE_STATES]), showscale=False,
        xgap=gap, ygap=gap, text=text, texttemplate="%{text}",
        textfont=dict(size=14 if max(tq, tk) <= 8 else 11, color="white"), hovertext=hover, hoverinfo="text",
        name="tiles"))
    for s in TILE_STATES:  # legend entries, every state always: the plot area never changes size
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
    fig.update_xaxes(range=[0, c.seq_len], side="top", tickvals=_ticks(x_edges), showgrid=False, zeroline=False,
                     constrain="domain", tickfont=dict(size=12))
    fig.update_yaxes(range=[c.seq_len, 0], tickvals=_ticks(y_edges), showgrid=False, zeroline=False,
                     scaleanchor="x", constrain="domain", tickfont=dict(size=12))
    fig.update_layout(title=dict(text=title, x=0, font=dict(size=15)))
    return layout(fig, height, t=58, legend=dict(orientation="h", y=-0.02, yanchor="top", x=0, font=dict(size=11),
                                                 itemwidth=30, tracegroupgap=0))


# ---------------------------------------------------------------- the backward's dK/dV program
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


def bwd_tile_grid_figure(trace, kv_block: int, step: int, height: int = 360) -> go.Figure:
    """The N x N score matrix in tiles, row 0 at the top; the kv-block's program walks down its column."""
    c = trace.config
    tk, tq = trace.visit_order.shape
    states = bwd_tile_states(trace, kv_block, step)
    order = trace.visit_order[kv_block]
    text = [["" for _ in range(tk)] for _ in range(tq)]
    if max(tq, tk) <= MAX_NUMBERED:
        for i in range(tq):
            if order[i] >= 0:
                text[i][kv_block] = str(order[i] + 1)
    i = bwd_q_block(trace, kv_block, step)
    return tile_grid(c, states, text, shapes=[
        ("K_j, V_j on chip", "col", kv_block, "solid"), ("Q_i streaming", "row", i, "dot")],
        title="tiles: keys →, queries ↓", other="kv-blocks", height=height)
