"""Presenter view's screens: each stepping page's step as one 1280 x 720 projector screen, large,
ending on the chapter's punchline, with the speaker's words under the figures.

FlashAttention: the tile grid, the running state, α, the update with the kernel's numbers, the
bytes moved so far (FlashAttention against standard attention), and at the end `out = acc / ℓ`
against float64 or split-KV's merge. Softmax: the passes, the online state up to the chunk read,
and the overflow values (NaN, inf) next to safe and online. Backward and FA1 vs FA2 likewise.
Figures get presenter type (style.big: ticks 18 px, legends 16 px) in sections.chart.

Not for: the normal view (the pages draw it) or the words themselves (viz/words.py).
"""
import html

import numpy as np
import streamlit as st

from kernels import softmax_trace, steps
from viz import sections, words
from viz.figures import attention as fa
from viz.figures import backward as fb
from viz.figures import grid, memory, split
from viz.figures import softmax as fsm
from viz.figures.attention import tex_num, tex_vec
from viz.figures.style import GREY, ORANGE
from viz.sections import chart

PANELS = {"acc": "accumulator", "source": "kernel source", "rules": "published rules"}


def say(text: str) -> None:
    """The speaker's sentence for this step, large, under the figures."""
    st.html(f"<div id='fa-words' class='fa-words'>{html.escape(text)}</div>")


def bytes_bar(trace, walk: list, k: int) -> None:
    """Bytes moved so far by the followed program (derived from the kernel's walk) against standard
    attention for the same rows (model); the whole run's kernel count under them."""
    b = memory.bytes_so_far(trace, walk, k)
    top = max(b["standard"], b["program"])
    who = "FlashAttention so far, every q-block" if b["whole_program"] else \
        f"FlashAttention so far, Q{walk[k].q_block}'s program"

    def line(label, value, color, note):
        return (f"<div class='fa-bar'><span class='fa-bar-label'>{label} <span class='fa-dim'>({note})</span></span>"
                f"<span class='fa-bar-track'><span style='background:{color};width:{100 * value / top:.1f}%'></span>"
                f"</span><b>{memory.nice_bytes(value)}</b></div>")

    standard = f"standard attention, the same {b['rows']} rows"
    st.html(f"<div id='fa-bytes' class='fa-bytes'>{line(who, b['so_far'], ORANGE, 'derived')}"
            f"{line(standard, b['standard'], GREY, 'model')}"
            f"<div class='fa-dim'>whole run: FlashAttention {memory.nice_bytes(b['whole_flash'])}, the kernel's count · "
            f"standard {memory.nice_bytes(b['whole_standard'])}, S and P through memory</div></div>")


def out_tex(trace, step, row: int, n: int = 2) -> str:
    """out = acc / ℓ after the q-block's last tile, with the kernel's numbers, and the float64 check."""
    o = steps.output_row(trace, step.q_block, row)
    first = (r"O_\text{last} &= " + tex_vec(o["acc_over_l"], n) if trace.config.loop_order == "fa1" else
             r"\mathrm{out} &= \mathrm{acc} / \ell = " + tex_vec(o["acc_over_l"] * o["l"], n) + f" / {tex_num(o['l'])}"
             + " = " + tex_vec(o["acc_over_l"], n))
    return (r"\begin{aligned}" + first + r" \\[4pt] \text{kernel's out} &= " + tex_vec(o["out"], n)
            + r" \\[4pt] \text{float64} &= " + tex_vec(o["ref"], n) + r",\ \ \max|\Delta| = " + tex_num(o["err"], 2)
            + r"\end{aligned}")


def attention(spec, trace, walk: list, k: int, row: int, scene) -> None:
    step = walk[k]
    a1, a2, a3 = st.columns([1.25, 1.5, 1.0])
    with a1:
        ran = f" · {int(trace.visited.sum())} of {trace.visited.size} ran" if not trace.config.masks().default else ""
        chart(grid.tile_grid_figure(trace, step, height=262, title="tiles of S" + ran, legend_right=True),
              spec.key("grid"))
    with a2:
        chart(fa.running_state_figure(trace, step, row, height=255), spec.key("ml"))
    with a3:
        chart(fa.alpha_figure(trace, step, row, height=255), spec.key("alpha"))
    end = words.attention_facts(trace, step, row)["end"]
    b1, b2 = st.columns([1.55, 1])
    with b1:
        if end == "merge":  # the chapter's point: the splits' partial states, merged
            with st.container(key=spec.key("merge")):
                parts = split.merge_parts(trace, step.rows.start + row)
                st.latex(split.merge_equations(parts, terms=2))
        elif end == "out":  # the point: one division at the end, checked against float64
            with st.container(key=spec.key("out")):
                st.latex(out_tex(trace, step, row, n=1))
        else:
            with st.container(key=spec.key("eq")):
                st.latex(fa.update_equations(trace, step, row, n_vec=1, gap="0pt"))
        bytes_bar(trace, walk, k)
    with b2:
        if end == "merge":
            chart(split.partials_figure(trace, step.rows.start + row, height=250, short=True), spec.key("split"))
        else:
            panel = st.segmented_control("panel", list(PANELS), format_func=PANELS.get, key=spec.key("panel"),
                                         label_visibility="collapsed") or "acc"
            if panel == "source":
                sections.source_panel(trace, step, compact=True)
            elif panel == "rules":
                sections.rules_panel(spec, trace, step, row, compact=True)
            else:
                chart(fa.accumulator_figure(trace, step, row, height=215), spec.key("acc"))
    say(words.attention(trace, step, row, scene))


def overflow_strip(trace, n: int = 6) -> None:
    """The row × 100 through naive, safe and online softmax in float32: their outputs where the row
    is largest (naive's NaN and 0 where e^x overflowed), float64 under them."""
    idx = np.argsort(trace.x100)[::-1][:n]
    rows = [(v, trace.out100[i]) for i, v in enumerate(softmax_trace.OVERFLOW_VARIANTS)] + [("float64", trace.ref100)]
    cells = "".join(f"<th>x = {trace.x100[i]:.4g}</th>" for i in idx)
    body = ""
    for name, y in rows:
        bad = int((~np.isfinite(y)).sum())
        tds = "".join(f"<td class='{'fa-bad' if not np.isfinite(y[i]) else ''}'>{words.num(y[i], 3)}</td>" for i in idx)
        body += f"<tr><th>{name}</th>{tds}<td class='fa-dim'>{bad} NaN/inf of {y.size}</td></tr>"
    st.html(f"<div class='fa-overflow' id='fa-overflow'><b>The row × 100, softmax in float32</b> (the largest x):"
            f"<table><tr><th></th>{cells}<th></th></tr>{body}</table></div>")


def softmax(spec, trace, k: int, counts: dict, scene) -> None:
    c = trace.config
    p, ch = steps.softmax_position(c.length, c.block, k)
    a1, a2 = st.columns([1.3, 1])
    with a1:
        chart(fsm.passes_figure(c.length, c.block, k, counts=counts, height=330), spec.key("passes"))
    with a2:
        chart(fsm.online_state_figure(trace.x, trace.m, trace.d, c.block, ch if p == 0 else None, trace.ref_m,
                                      trace.ref_d, height=330, done=ch if p == 0 else None), spec.key("online"))
    overflow_strip(trace)
    say(words.softmax(trace, k, scene))


def softmax_by_hand(spec, trace, k: int, counts: dict, scene) -> None:
    """A short row in presenter view: the passes, every number of the row and this step's equation."""
    from viz import softmax_hand

    c = trace.config
    chart(fsm.passes_figure(c.length, c.block, k, counts=counts, height=250), spec.key("passes"))
    softmax_hand.hand_section(spec, trace, k, compact=True)
    say(words.softmax(trace, k, scene))


def backward(spec, trace, walk: list, k: int, row: int, scene) -> None:
    b = walk[k]
    g1, g2, g3 = st.columns([1.25, 1, 1.45])
    with g1:
        chart(grid.bwd_tile_grid_figure(trace, b, height=290, legend_right=True), spec.key("grid"))
    with g2:
        chart(fb.bwd_tile_heatmap_figure(trace, b, "ds", row, height=300), spec.key("ds"))
    with g3:
        chart(fb.bwd_acc_figure(trace, b, height=290), spec.key("acc"))
    parts = fb.backward_row_parts(trace, row)
    b1, b2 = st.columns([1.3, 1])
    with b1, st.container(key=spec.key("eq")):
        st.markdown(f"**Row {row}, two ways:** the Jacobian needs {trace.config.seq_len}² numbers per row, "
                    "P ∘ (dP − D) one")
        st.latex(fb.row_forms_tex(parts, row, n_show=1))
    with b2:
        chart(fb.row_forms_figure(parts, height=220), spec.key("rowfig"))
    say(words.backward(trace, b, row, scene))
