"""The tile grid of the N x N score matrix, for both passes: which tiles are done, current, pending,
computed by other programs or skipped (causal), with the program's on-chip blocks outlined.
Also where a program is at a step: the kv-block (forward) or q-block (backward) of that step."""
import numpy as np
import plotly.graph_objects as go

from viz.figures.style import discrete_colorscale, layout

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


def step_count(trace, q_block: int) -> int:
    """Tiles the kernel computed for q_block (fewer than Tk under causal)."""
    return len(trace.steps(q_block))


def kv_block(trace, q_block: int, step: int) -> int:
    return int(trace.steps(q_block)[step])


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
    return tile_grid(c, states, text, shapes=[
        ("q-row on chip", "row", q_block, "solid"), ("kv-column on chip", "col", j, "dot")],
        title="tiles of S: keys →, queries ↓")


def tile_grid(c, states: np.ndarray, text: list, shapes: list, title: str, other: str = "q-blocks") -> go.Figure:
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
        colorscale=discrete_colorscale([TILE_COLORS[s] for s in TILE_STATES]), showscale=False,
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
    return layout(fig, 360, t=58, legend=dict(orientation="h", y=-0.02, yanchor="top", x=0, font=dict(size=12),
                                              itemwidth=30, tracegroupgap=0))


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
    return tile_grid(c, states, text, shapes=[
        ("kv-column on chip", "col", kv_block, "solid"), ("q-row streaming", "row", i, "dot")],
        title="tiles: keys →, queries ↓", other="kv-blocks")
