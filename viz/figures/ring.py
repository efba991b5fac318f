"""Ring attention's figures: the ranks as lanes with the K/V shards moving around the ring, the
chunk pairs of the sequence each rank computes, skips or masks, the merge of one row's partial
states with its numbers, and each rank's state at a step. Pure builders: trace and step in.

Not for: running the ring (kernels/ring.py) or the page's layout (viz/pages/ring.py).
"""
import numpy as np
import plotly.graph_objects as go

from kernels.ring_plan import DIAGONAL, FULL, SKIPPED
from kernels.ring_trace import merge_view
from viz.figures.attention import paren, tex_num
from viz.figures.style import BLUE, ORANGE, discrete_colorscale, layout

# what a rank did with the shard it held at a step, by its chunk pairs
WORK = ("to come", "all keys", "causal mask inside", "part skipped", "skipped")
WORK_COLORS = ("#F1F2F4", "#7FB0E0", "#B99EDD", "#CFE0F3", "#FFFFFF")  # light: the shard names read in dark type
PAIR_STATES = ("done", "this step", "to come", "skipped (future)")
PAIR_COLORS = (BLUE, ORANGE, "#86AEDC", "#FFFFFF")
SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def work(kinds: np.ndarray) -> str:
    """What a rank did at a step, from its (Cr, Cr) pair kinds."""
    if np.all(kinds == SKIPPED):
        return "skipped"
    if np.any(kinds == DIAGONAL):
        return "causal mask inside"
    return "part skipped" if np.any(kinds == SKIPPED) else "all keys"


def pair_counts(kinds: np.ndarray) -> str:
    """'2 full · 1 masked · 1 skipped' for a rank's pairs at a step."""
    names = ((FULL, "full"), (DIAGONAL, "masked"), (SKIPPED, "skipped"))
    return " · ".join(f"{int((kinds == k).sum())} {n}" for k, n in names if (kinds == k).any())


def lanes_figure(trace, step: int, height: int = 320) -> go.Figure:
    """Ranks down (one lane each), ring steps across: the K/V shard each rank held, coloured by
    what it did with it; steps to come faded; this step outlined, with the shards' next move."""
    c = trace.config
    p = c.world_size
    z = np.zeros((p, p), dtype=int)
    text = np.full((p, p), "", dtype=object)
    for r in range(p):
        for t in range(p):
            z[r, t] = WORK.index(work(trace.kinds[r, t])) if t <= step else 0
            done = int((trace.kinds[r, t] != SKIPPED).sum())
            text[r, t] = (f"KV{str(int(trace.held[r, t])).translate(SUB)}<br><span style='font-size:11px'>{done} of "
                          f"{trace.kinds[r, t].size} pair{'s' * (trace.kinds[r, t].size > 1)}</span>")
    hover = [[f"rank {r}, step {t + 1}: holds the K/V shard of rank {int(trace.held[r, t])} · "
              f"{pair_counts(trace.kinds[r, t])}" for t in range(p)] for r in range(p)]
    fig = go.Figure(go.Heatmap(z=z, x=list(range(1, p + 1)), y=list(range(p)), zmin=-0.5, zmax=len(WORK) - 0.5,
                               colorscale=discrete_colorscale(list(WORK_COLORS)), showscale=False, xgap=3, ygap=3,
                               text=text, texttemplate="%{text}", textfont=dict(size=15, color="#1f2430"),
                               hovertext=hover, hoverinfo="text", name="lanes"))
    for k, name in enumerate(WORK):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name,
                                 marker=dict(symbol="square", size=13, color=WORK_COLORS[k],
                                             line=dict(color="#888", width=1))))
    fig.add_shape(type="rect", x0=step + 0.5, x1=step + 1.5, y0=-0.5, y1=p - 0.5, name="this step", layer="above",
                  line=dict(color=ORANGE, width=3), fillcolor="rgba(0,0,0,0)")
    if step < p - 1:  # where each shard goes next: rank r to rank r + 1 (the last one back to rank 0)
        for r in range(p):
            fig.add_annotation(x=step + 1.92, y=(r + 1) % p, ax=step + 1.3, ay=r, xref="x", yref="y", axref="x",
                               ayref="y", showarrow=True, arrowhead=3, arrowwidth=2, arrowcolor=ORANGE, text="",
                               name=f"pass {r}")
    fig.update_xaxes(tickvals=list(range(1, p + 1)), ticktext=[f"step {t}" for t in range(1, p + 1)], side="top",
                     showgrid=False, zeroline=False)
    fig.update_yaxes(tickvals=list(range(p)), ticktext=[f"rank {r}" for r in range(p)], autorange="reversed",
                     showgrid=False, zeroline=False)
    fig.update_layout(title=dict(text="the ranks' lanes: the K/V shard each holds at each step", x=0, font=dict(size=15)))
    return layout(fig, height, t=64, legend=dict(orientation="h", y=-0.02, yanchor="top", x=0, font=dict(size=11)))


def pair_states(trace, step: int) -> tuple[np.ndarray, np.ndarray]:
    """(n_chunks, n_chunks) PAIR_STATES names of the (query chunk, key chunk) pairs at this step,
    and the text of each: which rank computes it at which step."""
    c = trace.config
    n = c.n_chunks
    states = np.full((n, n), "skipped (future)", dtype=object)
    text = np.full((n, n), "", dtype=object)
    for r in range(c.world_size):
        for t in range(c.world_size):
            for a, qc in enumerate(c.rank_chunks(r)):
                for b, kc in enumerate(c.rank_chunks(int(trace.held[r, t]))):
                    kind = int(trace.kinds[r, t, a, b])
                    if kind == SKIPPED:
                        continue
                    states[qc, kc] = "done" if t < step else ("this step" if t == step else "to come")
                    text[qc, kc] = str(t + 1)
    return states, text


def pairs_figure(trace, step: int, row: int, height: int = 320) -> go.Figure:
    """The sequence's chunk pairs (queries down, keys across): done, computed now, to come or
    skipped; each labelled with the step at which its query chunk's rank computes it; the causal
    mask inside a diagonal pair drawn over its upper triangle."""
    c = trace.config
    n = c.n_chunks
    states, text = pair_states(trace, step)
    z = np.vectorize(PAIR_STATES.index)(states)
    owner = {ch: r for r in range(c.world_size) for ch in c.rank_chunks(r)}
    fig = go.Figure(go.Heatmap(z=z, x=list(range(n)), y=list(range(n)), zmin=-0.5, zmax=len(PAIR_STATES) - 0.5,
                               colorscale=discrete_colorscale(list(PAIR_COLORS)), showscale=False, xgap=2, ygap=2,
                               text=text, texttemplate="%{text}",
                               textfont=dict(size=12 if n <= 8 else 9, color="white"), hoverinfo="skip", name="pairs"))
    for k, name in enumerate(PAIR_STATES):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name,
                                 marker=dict(symbol="square", size=13, color=PAIR_COLORS[k],
                                             line=dict(color="#888", width=1))))
    for i in range(n) if c.causal else ():  # keys after the query inside a diagonal pair: masked
        fig.add_shape(type="path", path=f"M {i - 0.5},{i - 0.5} L {i + 0.5},{i - 0.5} L {i + 0.5},{i + 0.5} Z",
                      fillcolor="rgba(255,255,255,0.8)", line=dict(width=0), layer="above", name=f"mask {i}")
    chunk = row // c.chunk_len
    fig.add_shape(type="rect", x0=-0.5, x1=n - 0.5, y0=chunk - 0.5, y1=chunk + 0.5, name="the followed row's chunk",
                  line=dict(color="#1f2430", width=2, dash="dot"), fillcolor="rgba(0,0,0,0)", layer="above")
    labels = [f"{ch} (r{owner[ch]})" for ch in range(n)]
    fig.update_xaxes(tickvals=list(range(n)), side="top", showgrid=False, zeroline=False)
    fig.update_yaxes(tickvals=list(range(n)), ticktext=labels, autorange="reversed", showgrid=False, zeroline=False,
                     scaleanchor="x", constrain="domain")
    fig.update_layout(title=dict(text=f"S in chunks of {c.chunk_len}: keys →, queries ↓ (their rank)", x=0,
                                 font=dict(size=15)))
    return layout(fig, height, t=64, legend=dict(orientation="h", y=-0.02, yanchor="top", x=0, font=dict(size=11)))


# ---------------------------------------------------------------- one row's merge, with its numbers
def _vec(o: np.ndarray, shown: int = 3) -> str:
    return "[" + ", ".join(tex_num(x) for x in o[:shown]) + (r", \dots" if o.size > shown else "") + "]"


def merge_tex(view, compact: bool = False) -> str:
    """The step's merge for the view's row: M, L and O with the numbers the ranks recorded (the
    old state first; a skipped key chunk takes no part). Compact (the presenter's column) leaves
    out the symbolic middle of each line; every number stays."""
    merged = merge_view(view)
    names = ([r"m_\text{old}"] if np.isfinite(view.m_old) else []) + [f"m_{{K{p.chunk}}}" for p in view.live]
    ms = ([view.m_old] if np.isfinite(view.m_old) else []) + [p.m for p in view.live]
    ls = ([view.l_old] if np.isfinite(view.m_old) else []) + [p.l for p in view.live]
    os_ = ([view.o_old] if np.isfinite(view.m_old) else []) + [p.o for p in view.live]
    terms = " + ".join(f"{tex_num(lv)}\\,e^{{{tex_num(mv - view.m)}}}" for lv, mv in zip(ls, ms, strict=True))
    weights = [lv * np.exp(mv - merged["M"]) / merged["L"] for lv, mv in zip(ls, ms, strict=True)]
    o_sum = " + ".join(f"{tex_num(w)} \\cdot {paren(o[0])}" for w, o in zip(weights, os_, strict=True))
    m_sym = "" if compact else rf"\max({', '.join(names)}) = "
    l_sym = "" if compact else r"\textstyle\sum \ell\,e^{m - M} = "
    o_sym = "" if compact else r"\textstyle\sum \frac{\ell\,e^{m - M}}{L}\,O_{[0]} = "
    return (r"\begin{aligned}"
            rf"M &= {m_sym}\max({', '.join(tex_num(x) for x in ms)}) = \mathbf{{{tex_num(view.m)}}}"
            r"\\[4pt]"
            rf"L &= {l_sym}{terms} = \mathbf{{{tex_num(view.l)}}}\\[4pt]"
            rf"O_{{[0]}} &= {o_sym}{o_sum} = "
            rf"\mathbf{{{tex_num(view.o[0])}}}\\[4pt]"
            rf"O &= {_vec(view.o, 2 if compact else 3)}"
            r"\end{aligned}")


def final_tex(trace, view, compact: bool = False) -> str:
    """After the last step: lse = M + log L, and the row's out against float64 (compact: the
    numbers only, M + log L in the heading above, two lines)."""
    lse = float(trace.lse[view.row])
    err = float(np.max(np.abs(trace.out[view.row].astype(np.float64) - trace.ref_out[view.row])))
    if compact:
        return (r"\begin{aligned}"
                rf"\mathrm{{lse}} &= {tex_num(view.m)} + \log {paren(view.l)} = \mathbf{{{tex_num(lse)}}}\\[4pt]"
                rf"\mathrm{{lse}}_{{64}} &= {tex_num(float(trace.ref_lse[view.row]), 7)},\ \ "
                rf"\max|\Delta\mathrm{{out}}| = {tex_num(err, 2)}"
                r"\end{aligned}")
    return (r"\begin{aligned}"
            rf"\mathrm{{lse}} &= M + \log L = {tex_num(view.m)} + \log {paren(view.l)}\\[4pt]"
            rf"&= \mathbf{{{tex_num(lse)}}}\quad(\text{{float64: }} {tex_num(float(trace.ref_lse[view.row]), 7)})\\[4pt]"
            rf"\max|\mathrm{{out}} - \mathrm{{out}}_{{64}}| &= {tex_num(err, 2)}"
            r"\end{aligned}")


def ranks_rows(trace, step: int, local: int) -> list[dict]:
    """One row per rank at this step: the shard it holds, its pairs, the partial and merged state of
    its row at local index `local` (the followed row's place in its shard), bytes and seconds."""
    c = trace.config
    out = []
    for r in range(c.world_size):
        row = int(c.rank_rows(r)[local])
        a = local // c.chunk_len
        live = [b for b in range(c.chunks_per_rank) if trace.kinds[r, step, a, b] != SKIPPED]
        srcs = c.rank_chunks(int(trace.held[r, step]))
        out.append({
            "rank": r, "holds K/V of": f"rank {int(trace.held[r, step])} (chunks {', '.join(map(str, srcs))})",
            "pairs": pair_counts(trace.kinds[r, step]), "its row": row,
            "partial m": ", ".join(f"{trace.part_m[r, step, b, local]:.5g}" for b in live) or "skipped",
            "partial ℓ": ", ".join(f"{trace.part_l[r, step, b, local]:.5g}" for b in live) or "skipped",
            "M after": float(trace.merged_m[r, step, local]), "L after": float(trace.merged_l[r, step, local]),
            "K loaded": int(trace.k_loads[r, step]), "sent (bytes)": int(trace.sent_bytes[r, step]),
            "compute ms": 1e3 * float(trace.compute_seconds[r, step]),
            "waited ms": 1e3 * float(trace.wait_seconds[r, step])})
    return out
