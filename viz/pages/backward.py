"""Backward: the FlashAttention-2 backward's dS = P ∘ (dP − D), one row two ways, and the dK/dV
kernel tile by tile."""
import streamlit as st

from kernels import steps
from viz import backward_sections, controls, page, screens, specs, stepping, urlstate, words
from viz.figures import backward as fb
from viz.figures import grid
from viz.sections import chart
from viz.stepping import PRESENT

ss = st.session_state
BLOCK_HELP = ("rows of Q, dO per tile: what streams past each kv-block's program",
              "rows of K, V per tile: one program per kv-block")
SPEC = specs.BACKWARD

src = page.resolve(SPEC)
HERE = src.stop()
config = src.trace.config if src.trace is not None else src.config
if config is not None:
    with src.follow_box:
        controls.follow_slider("follow kv-block", SPEC.key("kv_block"), config.n_kv_blocks,
                               on_change=lambda: stepping.restart(SPEC.prefix),
                               help="the dK/dV program (one per kv-block) whose tiles you step through")
page.sidebar_end(SPEC)
page.stop_if_error(src)
trace = page.load(src, kv_block=min(int(SPEC.get("kv_block")), config.n_kv_blocks - 1))
c = trace.config
kv_block = min(int(SPEC.get("kv_block")), c.n_kv_blocks - 1)
if trace.tile_slot(kv_block) is None:  # a recording keeps the tiles of some kv-blocks only
    kept = [int(j) for j in trace.tile_kv_blocks]
    kv_block = min(kept, key=lambda j: abs(j - kv_block))
    st.caption(f"This recording kept the tiles of kv-blocks {kept}: following kv-block {kv_block}.")
WALK = steps.backward_steps(trace, kv_block)


def row_now() -> int:
    return min(max(0, int(SPEC.get("row"))), c.seq_len - 1)


def step_label(b) -> str:
    if ss[PRESENT]:
        return (f"<div style='font-size:1.3rem' id='bwd-step-label'><b>Step {b.index + 1} of {b.count}</b> · "
                f"K<sub>{b.kv_block}</sub>, V<sub>{b.kv_block}</sub> on chip · Q<sub>{b.q_block}</sub>, dO<sub>"
                f"{b.q_block}</sub> stream through</div>")
    return (f"<div style='font-size:1.2rem' id='bwd-step-label'><b>Step {b.index + 1} of {b.count}</b> · "
            f"K<sub>{b.kv_block}</sub>, V<sub>{b.kv_block}</sub> (keys {b.keys.start}–{b.keys.stop - 1}) stay on "
            f"chip · Q<sub>{b.q_block}</sub>, dO<sub>{b.q_block}</sub>, lse, D (rows {b.rows.start}–"
            f"{b.rows.stop - 1}) stream through</div>")


def draw(k: int) -> None:
    b, row = WALK[k], row_now()
    urlstate.write(src.url({"kv_block": kv_block, "row": row, "step": k + 1}))
    page.step_header(SPEC, len(WALK), k, here=HERE, label_html=step_label(b))
    if ss[PRESENT]:
        screens.backward(SPEC, trace, WALK, k, row, src.scene)
        return
    screens.say(words.backward(trace, b, row, src.scene))
    g1, g2, g3, g4 = st.columns([1.15, 1, 1, 1])
    with g1:
        chart(grid.bwd_tile_grid_figure(trace, b), SPEC.key("grid"))
    for col, name in ((g2, "p"), (g3, "dp"), (g4, "ds")):
        with col:
            chart(fb.bwd_tile_heatmap_figure(trace, b, name, row if b.rows.start <= row else None), SPEC.key(f"{name}"))
    st.caption("Solid outline: K_j, V_j on chip (one program per kv-block); dotted: the q-block streaming through. "
               "Heatmap colours are fixed over this program's steps, clipped at the 99th percentile (hover for "
               "every value); grey cells are masked; the outlined row is the query row of the section above.")
    a1, a2 = st.columns([1, 1.6])
    with a1:
        chart(fb.delta_figure(trace, b), SPEC.key("delta"))
    with a2:
        chart(fb.bwd_acc_figure(trace, b), SPEC.key("acc"))
    st.caption("D comes from the preprocess kernel, one number per row. The accumulators stay on chip across the "
               "steps and are written once, after the last one, as this kv-block's rows of dK and dV.")


if not ss[PRESENT]:
    st.markdown(f"#### {SPEC.title}")
    st.caption(f"{c.seq_len} × {c.seq_len} scores in {c.block_m} × {c.block_n} tiles ({c.n_q_blocks} × "
               f"{c.n_kv_blocks}) · head_dim {c.head_dim} · {c.dtype} · {'causal' if c.causal else 'no mask'} · input: "
               f"{c.scenario} · dO ~ N(0, 1) · the forward stored O and lse; the backward recomputes P from lse")
    st.fragment(backward_sections.one_row)(trace)  # its own fragment: moving the row reruns only this
    st.markdown("##### The dK/dV kernel, tile by tile")
stepping.step_fragment(SPEC.prefix, len(WALK), draw, HERE)
if not ss[PRESENT]:
    backward_sections.worked_example()
    backward_sections.traffic(trace, src.note)
