"""Split-KV: each split program's partial state (m_s, l_s, O_s) of one row, as the kernel wrote
it, and the merge that combines them (the same merge flash-decoding and ring attention use).

Not for: running the kernel (kernels/trace.py) or the per-tile stepping (viz/figures/attention.py).
"""
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kernels import reference
from viz.figures.attention import tex_num
from viz.figures.style import BLUE, GREY, ORANGE, layout


def merge_parts(trace, row: int) -> dict:
    """Row `row`'s partials and their merge, recomputed in float64 from the kernel's partials
    (derived), next to the kernel's own merged output and the unsplit float64 reference."""
    m_s = trace.split_m[:, row].astype(np.float64)  # (S,) -inf: the split saw no key of this row
    l_s = trace.split_l[:, row].astype(np.float64)
    o_s = trace.split_out[:, row].astype(np.float64)  # (S, d) normalized
    merge = reference.merge_states(m_s, l_s)
    live, m, l = merge["live"], merge["M"], merge["L"]
    weights = merge["terms"] / l  # l_s e^(m_s - m) / l
    merged = weights @ o_s  # (d,)
    out = trace.out[row].astype(np.float64)
    return {"m_s": m_s, "l_s": l_s, "live": live, "m": m, "l": l, "weights": weights, "merged": merged,
            "err_formula": float(np.max(np.abs(out - merged))),
            "err_ref": float(np.max(np.abs(out - trace.ref_out[row]))),
            "ranges": [trace.config.split_range(s) for s in range(len(m_s))]}


def partials_figure(trace, row: int, height: int = 300, short: bool = False) -> go.Figure:
    """Left: each split's running max m_s at its end, and the merged max. Right: each split's
    weight l_s e^(m_s - m) / l in the merged row (derived)."""
    parts = merge_parts(trace, row)
    c = trace.config
    names = [f"s{s}" if short else f"split {s}<br>keys {lo * c.block_n}–{min(hi * c.block_n, c.seq_len) - 1}"
             for s, (lo, hi) in enumerate(parts["ranges"])]
    titles = (("m<sub>s</sub> (kernel)", "weight in the merge (derived)") if short else
              ("m<sub>s</sub>: each split's max (kernel)",
               "weight ℓ<sub>s</sub>e<sup>m<sub>s</sub>−m</sup>/ℓ in the merge (derived)"))
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=titles)
    m_plot = np.where(parts["live"], parts["m_s"], np.nan)
    fig.add_trace(go.Bar(x=names, y=m_plot, marker_color=BLUE, name="m_s", showlegend=False,
                         hovertemplate="%{x}: m_s = %{y:.5g}<extra></extra>"), row=1, col=1)
    fig.add_hline(y=parts["m"], line=dict(color=ORANGE, width=3, dash="dash"), row=1, col=1,
                  annotation_text=f"m = {parts['m']:.4g}" if short else f"m = max m_s = {parts['m']:.4g}",
                  annotation_position="top left")
    fig.add_trace(go.Bar(x=names, y=parts["weights"], marker_color=[ORANGE if w > 0 else GREY for w in parts["weights"]],
                         showlegend=False, hovertemplate="%{x}: weight %{y:.4f}<extra></extra>"), row=1, col=2)
    fig.update_yaxes(range=[0, 1.05], row=1, col=2)
    fig.update_annotations(font_size=15)
    return layout(fig, height, t=40)


def merge_equations(parts: dict, terms: int = 3) -> str:
    """The merge with this row's numbers, as LaTeX (the first `terms` splits' terms written out)."""
    live = [s for s, ok in enumerate(parts["live"]) if ok]
    ms = ", ".join(tex_num(parts["m_s"][s]) for s in live[:terms + 1]) + (", \\dots" if len(live) > terms + 1 else "")
    ls = " + ".join(f"{tex_num(parts['l_s'][s])}\\,e^{{{tex_num(parts['m_s'][s] - parts['m'])}}}" for s in live[:terms])
    ls += " + \\dots" if len(live) > terms else ""
    return (r"\begin{aligned}"
            rf"m &= \max_s m_s = \max({ms}) = {tex_num(parts['m'])}\\"
            rf"\ell &= \sum_s \ell_s e^{{m_s - m}} = {ls} = {tex_num(parts['l'])}\\"
            r"O &= \sum_s \frac{\ell_s e^{m_s - m}}{\ell}\, O_s"
            r"\end{aligned}")
