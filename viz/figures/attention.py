"""The FlashAttention tiles page: (AttentionTrace, Step, row) -> figures and numbers.

A step is kernels/steps.py's Step: the tile, its program (q-block, split) and where it stands in
the walk. Every value drawn is read from the trace the kernel wrote; what is computed here from
those values (alpha x acc, p V from the kernel's p and V, sums of the kernel's p) is labelled
derived. `row` is a row of the q-block (0 .. block_m - 1); labels show its number in the sequence.

Not for: which tile a step is or a row's numbers (kernels/steps.py), whether they hold (kernels/truth.py).
"""
import math
import re

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kernels import steps
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


def tile_values(trace, step, which: str) -> np.ndarray:
    """s or p of the step's tile, valid rows and columns only; NaN where the kernel masked the
    score (s = -inf, p = 0): masked cells are drawn in the background grey in both."""
    slot = trace.tile_slot(step.q_block)
    rows, cols = len(step.rows), len(step.keys)
    s = trace.s[slot, step.kv_block, :rows, :cols]
    vals = s if which == "s" else trace.p[slot, step.kv_block, :rows, :cols]
    return np.where(np.isfinite(s), vals, np.nan)


def tile_heatmap_figure(trace, step, which: str, row: int | None = None, height: int = 360) -> go.Figure:
    """Heatmap of the kernel's s (scores) or p = exp(s - m_new) for the step's tile."""
    z = tile_values(trace, step, which)  # (rows, cols)
    zmin, zmax = tile_ranges(trace, step.q_block)[which]
    xs, ys = np.array(step.keys), np.array(step.rows)
    title = "scores s = q·k × scale" if which == "s" else "p = exp(s − m_new)"
    fig = go.Figure(go.Heatmap(
        z=z, x=xs, y=ys, zmin=zmin, zmax=zmax, colorscale=colorscale("Viridis" if which == "s" else "Inferno"),
        colorbar=dict(thickness=12, len=0.9, tickfont=dict(size=12)),
        hovertemplate="row %{y}, key %{x}<br>" + which + " = %{z:.4g}<extra></extra>", name=which))
    if row is not None and row < z.shape[0]:
        y = step.rows.start + row
        fig.add_shape(type="rect", x0=xs[0] - 0.5, x1=xs[-1] + 0.5, y0=y - 0.5, y1=y + 0.5,
                      line=dict(color="#FFFFFF", width=2), name="selected row")
    fig.update_xaxes(showgrid=False, zeroline=False, side="top", tickfont=dict(size=12), nticks=6)
    fig.update_yaxes(autorange="reversed", showgrid=False, zeroline=False, scaleanchor="x", constrain="domain",
                     tickfont=dict(size=12), nticks=6)
    fig.update_layout(title=dict(text=title, x=0.0, xanchor="left", font=dict(size=15)),
                      plot_bgcolor="#BFC5CC")  # masked cells (NaN) show this grey
    return layout(fig, height, t=58)


# ---------------------------------------------------------------- running state m, l, alpha
def program_series(trace, step, name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(kv-blocks, values (rows, tiles))] of trace.m / l / alpha for the step's q-block, one entry
    per program that computes its tiles (split-KV: one per split, each starting afresh)."""
    i = step.q_block
    rows = len(step.rows)
    by_split: dict[int, list[int]] = {}
    for q, j, split in steps.walk(trace, i if step.loop_order != "fa1" else 0):
        if q == i:
            by_split.setdefault(split, []).append(j)
    vals = getattr(trace, name)[i][:, :rows]  # (Tk, rows)
    return [(np.array(js), vals[js].T) for _, js in sorted(by_split.items())]


def running_state_figure(trace, step, row: int, height: int = 300) -> go.Figure:
    """Running max m and running sum l of every row of the q-block, one line per row and program,
    drawn up to this step; the steps still to come faded. Split-KV: each split's lines start again."""
    r0 = step.rows.start
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=("running max m", "running sum ℓ"))
    done_kv = {j for q, j, _ in steps.walk(trace, step.q_block if step.loop_order != "fa1" else 0)[: step.index + 1]
               if q == step.q_block}
    for col, name in ((1, "m"), (2, "l")):
        series = program_series(trace, step, name)
        xs_all = np.concatenate([js for js, _ in series])
        parts = []  # per program: (kv-blocks, values, the part done, the part to come from the last done tile)
        for js, vals in series:
            done = np.array([j in done_kv for j in js])
            start = int(np.flatnonzero(done)[-1]) if done.any() else 0
            parts.append((js, vals, done, np.arange(js.size) >= start))
        for part, which, opacity in (("done", 2, 0.45), ("to come", 3, 0.12)):
            xs, ys = [], []
            for p in parts:
                js, vals, sel = p[0], p[1], p[which]
                for r in range(vals.shape[0]):  # every row in one trace, lines broken by None
                    xs += list(js[sel]) + [None]
                    ys += list(vals[r, sel]) + [None]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=GREY, width=1), opacity=opacity,
                                     name=f"{name}: all rows, {part}", showlegend=False, hoverinfo="skip"),
                          row=1, col=col)
        for js, vals, done, future in parts:
            fig.add_trace(go.Scatter(x=js[future], y=vals[row, future], mode="lines", opacity=0.35,
                                     line=dict(color=BLUE, width=2, dash="dot"), name=f"{name}: row {r0 + row}, to come",
                                     showlegend=False, hoverinfo="skip"), row=1, col=col)
            if done.any():
                fig.add_trace(go.Scatter(
                    x=js[done], y=vals[row, done], mode="lines+markers", line=dict(color=BLUE, width=3),
                    marker=dict(size=7), name=f"{name}: row {r0 + row}", showlegend=False,
                    hovertemplate="kv-block %{x}<br>" + name + " = %{y:.5g}<extra></extra>"), row=1, col=col)
        now = getattr(trace, name)[step.q_block, step.kv_block, row]
        fig.add_trace(go.Scatter(x=[step.kv_block], y=[now], mode="markers", name=f"{name}: this step",
                                 marker=dict(size=14, color=ORANGE, line=dict(color="white", width=2)),
                                 showlegend=False, hoverinfo="skip"), row=1, col=col)
        fig.update_xaxes(title_text="kv-block j", tickvals=sorted(set(xs_all.tolist())) if xs_all.size <= 10 else None,
                         nticks=8, range=[xs_all.min() - 0.3, xs_all.max() + 0.3], row=1, col=col)
    fig.update_annotations(font=dict(size=15))
    return layout(fig, height, t=40)


def step_facts(trace, step) -> dict:
    """What the step does to the rows of its q-block, from the kernel's alpha: whether it is its
    program's first tile, the rows whose max grew now, the row-steps whose max grew so far in this
    program, and the rescales of acc done so far (the kernel multiplies acc by alpha at every
    step, grown or not), and the rows that have seen no key yet."""
    i, j = step.q_block, step.kv_block
    rows = len(step.rows)
    program = [s for s in steps.steps(trace, i if step.loop_order != "fa1" else 0)
               if s.q_block == i and s.split == step.split and s.index <= step.index]
    alpha = trace.alpha[i][:, :rows]  # (Tk, rows)
    seen = np.isfinite(trace.m[i][:, :rows])  # (Tk, rows): a row with no key yet has alpha 0, no max that grew
    grew = [int(np.sum((alpha[s.kv_block] < 1) & seen[s.kv_block])) for s in program if not s.first]
    m = trace.m[i, j, :rows]
    return {"first": step.first, "rows": rows, "grew": int(np.sum((alpha[j] < 1) & seen[j])) if not step.first else 0,
            "grew_so_far": sum(grew), "multiplies_so_far": rows * len(program), "empty": int(np.sum(m == -np.inf)),
            "k": step.k, "steps": step.program_steps}


def alpha_figure(trace, step, row: int, height: int = 300) -> go.Figure:
    """This step's alpha = exp(m_old - m_new) per row; rows whose max grew in orange."""
    rows = len(step.rows)
    a = trace.alpha[step.q_block, step.kv_block, :rows]
    grew = (a < 1) & np.isfinite(trace.m[step.q_block, step.kv_block, :rows]) if not step.first else np.zeros(a.size, bool)
    ys = np.array(step.rows)
    fig = go.Figure(go.Bar(
        x=ys, y=a, marker=dict(color=[ORANGE if g else GREY for g in grew],
                               line=dict(width=[2 if r == row else 0 for r in range(a.size)], color="#1f2430")),
        hovertemplate="row %{x}<br>α = %{y:.5g}<extra></extra>", name="alpha"))
    if grew.any():  # a marker on each rescaled row: alpha can be ~1e-20, a bar too short to see
        fig.add_trace(go.Scatter(x=ys[grew], y=a[grew], mode="markers", name="max grew",
                                 marker=dict(color=ORANGE, size=8, symbol="diamond", line=dict(color="white", width=1)),
                                 hovertemplate="row %{x}: max grew, α = %{y:.3g}<extra></extra>"))
    if step.first:
        where = f"split {step.split}'s first tile" if step.splits > 1 else "first tile"
        fig.add_annotation(text=f"{where}: m_old = −∞, so α = 0", x=0.5, y=0.5, xref="paper",
                           yref="paper", showarrow=False, font=dict(size=14), bgcolor="rgba(255,255,255,0.85)")
    fig.update_xaxes(title_text="query row", showgrid=False, nticks=8)
    fig.update_yaxes(range=[-0.06, 1.08])
    fig.update_layout(showlegend=False, bargap=0.1, title=dict(
        text=f"α per row (<span style='color:{ORANGE}'>orange: max grew</span>)", x=0, font=dict(size=15)))
    return layout(fig, height, t=40)


# ---------------------------------------------------------------- accumulator of one row
def accumulator_parts(trace, step, row: int) -> dict:
    """One row's accumulator around this step, (d,) each. FA2: acc unnormalized, before and after
    (from the trace), alpha x acc before and p V (from the kernel's p and V), both derived. FA1: O
    normalized, read from and written to memory; its parts l_old alpha O_old / l_new and p V / l_new."""
    u = steps.row_update(trace, step, row)
    if u.normalized:
        scale = u.l_old * u.alpha / u.l_new if u.l_new > 0 else 0.0
        return {"before": u.acc_old, "scaled": u.acc_old * scale, "pv": u.pv / u.l_new if u.l_new > 0 else u.pv,
                "after": u.acc_new, "alpha": u.alpha}
    return {"before": u.acc_old, "scaled": u.acc_old * u.alpha, "pv": u.pv, "after": u.acc_new, "alpha": u.alpha}


def acc_labels(loop_order: str) -> tuple[str, str, str, str]:
    if loop_order == "fa1":
        return ("O before (read)", "ℓ_old·α·O / ℓ_new (derived)", "+ pV / ℓ_new (derived)", "= O after (written)")
    return ("acc before", "α × acc before (derived)", "+ p·V (derived: kernel's p, V)", "= acc after")


def _acc_range(trace, step, row: int) -> float:
    slot = trace.tile_slot(step.q_block)
    js = [j for q, j, _ in steps.walk(trace, step.q_block if step.loop_order != "fa1" else 0) if q == step.q_block]
    vals = np.concatenate([trace.acc_before[slot, js, row].ravel(), trace.acc_after[slot, js, row].ravel()])
    vals = vals[np.isfinite(vals)]
    return float(np.abs(vals).max()) if vals.size and np.abs(vals).max() > 0 else 1.0


def accumulator_figure(trace, step, row: int, height: int = 260) -> go.Figure:
    """The four stages of acc for one row as strips over head_dim, one fixed color range per row."""
    parts = accumulator_parts(trace, step, row)
    z = np.stack([parts["before"], parts["scaled"], parts["pv"], parts["after"]])  # (4, d)
    lim = _acc_range(trace, step, row)
    fig = go.Figure(go.Heatmap(
        z=z, y=list(acc_labels(trace.config.loop_order)), x=np.arange(z.shape[1]), zmin=-lim, zmax=lim,
        colorscale="RdBu_r", zmid=0, xgap=1, ygap=3, colorbar=dict(thickness=12, tickfont=dict(size=12)),
        hovertemplate="%{y}<br>dim %{x}: %{z:.5g}<extra></extra>", name="acc"))
    fig.update_yaxes(autorange="reversed", showgrid=False, tickfont=dict(size=14))
    fig.update_xaxes(title_text="head dim", showgrid=False)
    return layout(fig, height, t=10)


def output_figure(trace, q_block: int, row: int, height: int = 210) -> go.Figure:
    parts = steps.output_row(trace, q_block, row)
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


def paren(v: float) -> str:
    return f"({tex_num(v)})" if v < 0 else tex_num(v)


def tex_vec(a: np.ndarray, n: int = 2) -> str:
    items = [tex_num(x) for x in a[:n]] + ([r"\dots"] if a.size > n else [])
    return "[" + ", ".join(items) + "]"


def update_equations(trace, step, row: int, n_vec: int = 2, gap: str = "4pt", terse: bool = False) -> str:
    """One aligned LaTeX block: the update equations with this row's numbers plugged in. FA2 keeps
    acc unnormalized (one division at the end); FA1 renormalizes O at every tile. A row that has
    seen no key yet (split-KV inside the causal band) says so: nothing to rescale. terse (a half
    screen in presenter view): the numbers without the symbolic middle of each line."""
    u = steps.row_update(trace, step, row)
    n = {k: tex_num(getattr(u, k)) for k in ("m_old", "rowmax_s", "m_new", "alpha", "l_old", "rowsum_p", "l_new")}
    acc_old, pv, acc_new = (tex_vec(getattr(u, k), n_vec) for k in ("acc_old", "pv", "acc_new"))
    sym = {"m": "" if terse else r"\max(m_\text{old},\ \mathrm{rowmax}(s)) = ",
           "a": "" if terse else r"e^{\,m_\text{old} - m_\text{new}} = ",
           "l": "" if terse else r"\alpha\,\ell_\text{old} + \mathrm{rowsum}(p) = ",
           "o": "" if terse else r"\frac{\ell_\text{old}\,\alpha\,O_\text{old} + pV}{\ell_\text{new}} = "}
    lines = [rf"m_\text{{new}} &= {sym['m']}\max({n['m_old']},\ {n['rowmax_s']}) = \mathbf{{{n['m_new']}}}"]
    if u.empty:
        lines.append(r"\alpha &= 0,\ \ \ell_\text{new} = 0:\ \text{every key so far is masked for this row}")
    else:
        lines.append(rf"\alpha &= {sym['a']}e^{{{n['m_old']} - {paren(u.m_new)}}} = \mathbf{{{n['alpha']}}}")
        lines.append(rf"\ell_\text{{new}} &= {sym['l']}{n['alpha']} \cdot {n['l_old']} + {n['rowsum_p']} = "
                     rf"\mathbf{{{n['l_new']}}}")
    if u.normalized:
        lines.append(rf"O_\text{{new}} &= {sym['o']}\frac{{{n['l_old']} \cdot {n['alpha']} \cdot {acc_old} + {pv}}}"
                     rf"{{{n['l_new']}}}")
    else:
        lines.append(rf"\mathrm{{acc}}_\text{{new}} &= \alpha\,\mathrm{{acc}}_\text{{old}} + pV = {n['alpha']} \cdot"
                     rf" {acc_old} + {pv}")
    lines.append(rf"&= {acc_new}")
    return r"\begin{aligned}" + rf" \\[{gap}] ".join(lines) + r"\end{aligned}"


def html_num(v: float, digits: int = 4) -> str:
    """tex_num for HTML: the same 4 significant digits, −∞, ×10<sup>k</sup>."""
    t = tex_num(v, digits)
    t = t.replace(r"-\infty", "−∞").replace(r"\infty", "∞").replace(r"\mathrm{NaN}", "NaN")
    t = re.sub(r" \\times 10\^\{(-?\d+)\}", r"×10<sup>\1</sup>", t)
    return t.replace("-", "−")


def update_html(trace, step, row: int, n_vec: int = 2) -> list[str]:
    """update_equations as HTML lines (the offline deck and the exports, where no LaTeX renders),
    with the same numbers."""
    u = steps.row_update(trace, step, row)
    n = {k: html_num(getattr(u, k)) for k in ("m_old", "rowmax_s", "m_new", "alpha", "l_old", "rowsum_p", "l_new")}
    vec = lambda a: "[" + ", ".join([html_num(x) for x in a[:n_vec]] + (["…"] if a.size > n_vec else [])) + "]"  # noqa: E731
    lines = [f"m<sub>new</sub> = max(m<sub>old</sub>, rowmax(s)) = max({n['m_old']}, {n['rowmax_s']}) = "
             f"<b>{n['m_new']}</b>"]
    if u.empty:
        return lines + ["α = 0, ℓ<sub>new</sub> = 0: every key so far is masked for this row"]
    lines.append(f"α = e<sup>m<sub>old</sub> − m<sub>new</sub></sup> = e<sup>{n['m_old']} − {n['m_new']}</sup> = "
                 f"<b>{n['alpha']}</b>")
    lines.append(f"ℓ<sub>new</sub> = α ℓ<sub>old</sub> + rowsum(p) = {n['alpha']} · {n['l_old']} + {n['rowsum_p']} = "
                 f"<b>{n['l_new']}</b>")
    if u.normalized:
        lines.append(f"O<sub>new</sub> = (ℓ<sub>old</sub> α O<sub>old</sub> + pV) / ℓ<sub>new</sub> = ({n['l_old']} · "
                     f"{n['alpha']} · {vec(u.acc_old)} + {vec(u.pv)}) / {n['l_new']} = {vec(u.acc_new)}")
    else:
        lines.append(f"acc<sub>new</sub> = α acc<sub>old</sub> + pV = {n['alpha']} · {vec(u.acc_old)} + {vec(u.pv)} = "
                     f"{vec(u.acc_new)}")
    return lines


def step_label(trace, step, short: bool = False) -> str:
    """The step's one-line label (HTML): which tile, which program, what the step did to its rows;
    short (presenter view): without the key ranges and the counts so far."""
    facts = step_facts(trace, step)
    i, j = step.q_block, step.kv_block
    program = (f"split {step.split} of {step.splits} (keys {step.split_keys.start}–{step.split_keys.stop - 1}), its "
               f"tile {step.k + 1} of {step.program_steps} · " if step.splits > 1 else "")
    if facts["first"] and short:  # one line on a projector
        what = "first tile: m starts at −∞ (α = 0)"
    elif facts["first"]:
        what = ("first tile of Q<sub>{i}</sub>" + (" in this split" if step.splits > 1 else "")
                + ": m starts at −∞, every row takes its first max (α = 0)").format(i=i)
    else:
        what = f"max grew in <b>{facts['grew']}</b> of {facts['rows']} rows"
        if not short:
            what += (f" · every row's acc × α ({facts['multiplies_so_far']} row updates so far, "
                     f"{facts['grew_so_far']} of them real rescales, α < 1)")
    if facts["empty"]:
        what += (f" · {facts['empty']} all masked (m = −∞)" if short else
                 f" · {facts['empty']} rows have seen no key yet (all masked): m stays −∞")
    order = "one program walks every tile · " if step.loop_order == "fa1" else ""
    if short:
        program = f"split {step.split} of {step.splits} · " if step.splits > 1 else ""
        return (f"<div style='font-size:1.3rem' id='attn-step-label'><b>Step {step.index + 1} of {step.count}</b> · "
                f"{order}{program}Q<sub>{i}</sub> meets K<sub>{j}</sub>, V<sub>{j}</sub> · {what}</div>")
    return (f"<div style='font-size:1.2rem' id='attn-step-label'><b>Step {step.index + 1} of {step.count}</b> · "
            f"{order}{program}Q<sub>{i}</sub> (rows {step.rows.start}–{step.rows.stop - 1}) meets K<sub>{j}</sub>, "
            f"V<sub>{j}</sub> (keys {step.keys.start}–{step.keys.stop - 1}) · {what}</div>")
