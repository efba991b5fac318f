"""The tile grid of the score matrix (queries down, keys across), for every pass: which tiles are
done, current, pending, computed by other programs or skipped, with the blocks on chip outlined, at
a step of kernels/steps.py (the forward's walk, split-KV's splits, the backward's dK/dV program).
A forward trace that recorded how the kernel ran each tile (tile_kind) marks the tiles that ran
masked; `mask_line` says what the mask saved, from the kernel's record and its counters."""
import math

import numpy as np
import plotly.graph_objects as go

from kernels import masks, steps, traffic
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
MASKED_MARK = "#1f2430"  # the corner mark of a tile that ran masked
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
                    height=height, hover=hover, legend_right=legend_right, kinds=trace.tile_kind)
    if c.kv_splits > 1:
        rows = c.rows(step.q_block)
        for s in range(c.kv_splits):
            lo, hi = c.split_range(s)
            x0, x1 = c.keys(lo).start, c.keys(hi - 1).stop
            color = SPLIT_COLORS[s % len(SPLIT_COLORS)]
            fig.add_shape(type="rect", x0=x0, x1=x1, y0=rows.start, y1=rows.stop, name=f"split {s}", layer="above",
                          line=dict(color=color, width=3 if s == step.split else 2), fillcolor="rgba(0,0,0,0)")
            if s:
                fig.add_shape(type="line", x0=x0, x1=x0, y0=0, y1=c.n_rows, name=f"split {s} starts", layer="above",
                              line=dict(color="#1f2430", width=1, dash="dash"))
            few = c.kv_splits <= 4  # more: the number alone, inside the rows' bottom edge (the key ticks are above)
            fig.add_annotation(x=(x0 + x1) / 2, y=rows.start if few else rows.stop, yanchor="bottom",
                               yshift=1 if few else 2, showarrow=False,
                               text=f"<b>split {s}</b>" if few else f"<b>{s}</b>",
                               font=dict(size=12, color=color), name=f"split {s} label",
                               bgcolor="rgba(255,255,255,0.85)")
    return fig


def _mask_edges(c, most: int = 400) -> go.Scatter:
    """The first and one-past-last key each row sees (the mask's edges, from its definition in
    kernels/masks.py), as two dashed lines over the grid; a GQA group's heads one after another."""
    m = c.masks()
    rows = np.unique(np.linspace(0, c.n_rows - 1, min(most, c.n_rows)).round().astype(int))
    lo, hi = m.key_bounds(rows)
    xs, ys = [], []
    for edge in (lo, hi):
        head = rows // m.n_queries
        for h in np.unique(head):
            sel = head == h
            xs += list(edge[sel]) + [None]
            ys += list(rows[sel] + 0.5) + [None]
    return go.Scatter(x=xs, y=ys, mode="lines", name="mask edges", line=dict(color="#9AA3AE", width=1, dash="dash"),
                      hoverinfo="skip", showlegend=False)


def mask_line(trace) -> str:
    """What the mask saved, from what the kernel did: the tiles it ran (whole, masked: its tile_kind)
    and skipped (never loaded), and the K, V rows it counted loading against the unmasked kernel's."""
    c = trace.config
    total = trace.visit_order.size
    ran = int(trace.visited.sum())
    kinds = "" if trace.tile_kind is None else (f" ({int((trace.tile_kind == masks.WHOLE).sum())} whole, "
                                                 f"{int((trace.tile_kind == masks.MASKED).sum())} masked)")
    line = (f"The kernel ran {ran} of {total} tiles{kinds} and skipped {total - ran} ({(total - ran) / total:.0%} of the "
            f"Q·Kᵀ and P·V work)")
    if c.loop_order == "fa2" and "k_loads" in trace.counters:
        dense = traffic.flash_fa2(c.seq_len, c.head_dim, c.block_m, c.block_n, False,
                                  masks.Masks(c.n_queries, c.seq_len, group=c.group))["k_loads"]
        line += (f"; it loaded {trace.counters['k_loads'] // c.head_dim:,} rows of K (and of V), counted, against "
                 f"{dense // c.head_dim:,} without a mask")
    if c.group > 1:
        line += f"; each K/V tile it loaded served all {c.group} query heads of the group"
    return line + "."


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
              height: int = 360, hover: bool = True, legend_right: bool = False,
              kinds: np.ndarray | None = None) -> go.Figure:
    """The tile grid every pass draws: states (Tq, Tk) coloured, step numbers as text, the mask's
    edges (the causal diagonal), outlines (name, "row" | "col", block index, "solid" | "dot"), and
    where `kinds` (the kernel's tile_kind) is given, a corner mark on every tile that ran masked. Its
    legend always lists every state, so the grid keeps its size from step to step."""
    tq, tk = states.shape
    rows, n = c.n_rows, c.seq_len
    code = {s: k for k, s in enumerate(TILE_STATES)}
    z = np.vectorize(code.get)(states).astype(int)  # (Tq, Tk)
    x_edges = [min(j * c.block_n, n) for j in range(tk + 1)]
    y_edges = [min(i * c.block_m, rows) for i in range(tq + 1)]
    plain = c.masks().plain_or_causal
    labels = {s: TILE_LABELS[s].replace("programs", other) for s in TILE_STATES}
    if not plain:
        labels["skipped"] = "skipped (never loaded)"
    ran = {masks.WHOLE: ", ran whole", masks.MASKED: ", ran masked"}
    hover = [[f"rows {y_edges[i]}–{y_edges[i + 1] - 1} × keys {x_edges[j]}–{x_edges[j + 1] - 1}: {labels[states[i, j]]}"
              + (ran.get(int(kinds[i, j]), "") if kinds is not None else "")
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
    if plain and c.causal:  # keys after the query are masked: the kernel skips tiles wholly above this line
        fig.add_shape(type="line", x0=0, y0=0, x1=n, y1=n, name="causal diagonal",
                      line=dict(color="#9AA3AE", width=1, dash="dash"), opacity=0.8, layer="above")
    elif not plain:
        fig.add_trace(_mask_edges(c))
    if kinds is not None:  # the kernel's record: a corner mark on each tile it ran masked
        ii, jj = np.nonzero(kinds == masks.MASKED)
        fig.add_trace(go.Scatter(
            x=[x_edges[j + 1] - 0.12 * (x_edges[j + 1] - x_edges[j]) for j in jj],
            y=[y_edges[i] + 0.15 * (y_edges[i + 1] - y_edges[i]) for i in ii], mode="markers", name="ran masked",
            marker=dict(symbol="triangle-ne", size=9 if max(tq, tk) <= 32 else 5, color=MASKED_MARK,
                        line=dict(color="white", width=1)), hoverinfo="skip"))
    for name, axis, k, dash in shapes:
        box = (dict(x0=0, x1=n, y0=y_edges[k], y1=y_edges[k + 1]) if axis == "row"
               else dict(x0=x_edges[k], x1=x_edges[k + 1], y0=0, y1=rows))
        fig.add_shape(type="rect", name=name, line=dict(color="#1f2430", width=3, dash=dash),
                      fillcolor="rgba(0,0,0,0)", layer="above", **box)
    most = 4 if legend_right else MAX_TICKS  # presenter view's type is larger
    fig.update_xaxes(range=[0, n], side="top", tickvals=_ticks(x_edges, most), showgrid=False, zeroline=False,
                     constrain="domain", tickfont=dict(size=12))
    square = 0.5 <= rows / n <= 2  # decode's few rows, a GQA group's many: cells not square, or the grid is a sliver
    fig.update_yaxes(range=[rows, 0], tickvals=_ticks(y_edges, most), showgrid=False, zeroline=False,
                     scaleanchor="x" if square else None, constrain="domain", tickfont=dict(size=12))
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
