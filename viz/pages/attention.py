"""FlashAttention tiles: step through the tiles of the real FlashAttention kernel's trace."""
import streamlit as st

from kernels import steps
from viz import controls, export, hand, page, screens, sections, specs, standard_sections, stepping, urlstate, words
from viz.figures import attention as fa
from viz.figures import grid
from viz.sections import chart
from viz.stepping import PRESENT

ss = st.session_state
SPEC = specs.ATTENTION

with st.sidebar:
    hand.toggle()
if hand.wanted():  # your own Q, K, V (viz/hand.py) instead of a scene or a generated input
    hand.show()
    st.stop()
src = page.resolve(SPEC)
HERE = src.stop()
config = src.trace.config if src.trace is not None else src.config
if config is not None:
    with src.follow_box:
        controls.follow_q_block(SPEC, config, on_change=lambda: stepping.restart(SPEC.prefix))
page.sidebar_end(SPEC)
page.stop_if_error(src)
trace = page.load(src, q_block=min(int(SPEC.get("follow")), config.n_q_blocks - 1))
c = trace.config
follow = min(int(SPEC.get("follow")), c.n_q_blocks - 1)
if trace.tile_slot(follow) is None:  # a recording keeps the tiles of some q-blocks only
    kept = [int(i) for i in trace.tile_q_blocks]
    follow = min(kept, key=lambda i: abs(i - follow))
    st.caption(f"This recording kept the tiles of q-blocks {kept}: following q-block {follow}.")
if SPEC.get("std"):  # ?std=1: the three kernels of standard attention as this page's steps
    standard_sections.stepped(SPEC, src, trace, follow, HERE)
    st.stop()
WALK = steps.steps(trace, follow)
export_at = ss.setdefault(SPEC.key("export_at"), {})  # the step on screen, for the export buttons
if not ss[PRESENT]:
    with st.sidebar, st.expander("Export for slides"):
        export.download_buttons(SPEC.prefix, trace, follow, export_at, trace_file=src.live)


def row_of(step) -> int:
    return min(int(SPEC.get("row")), len(step.rows) - 1)


def draw(k: int) -> None:
    step = WALK[k]
    row = row_of(step)
    export_at.update(step=k, row=row_of(WALK[0]))
    urlstate.write(src.url({"q_block": follow, "row": step.rows.start + row, "step": k + 1}))
    page.step_header(SPEC, len(WALK), k, here=HERE, label_html=fa.step_label(trace, step, short=ss[PRESENT]))
    if ss[PRESENT]:
        screens.attention(SPEC, trace, WALK, k, row, src.scene)
        return
    screens.say(words.attention(trace, step, row, src.scene))
    g1, g2, g3 = st.columns([1.15, 1, 1])
    with g1:
        chart(grid.tile_grid_figure(trace, step), SPEC.key("grid"))
    with g2:
        chart(fa.tile_heatmap_figure(trace, step, "s", row), SPEC.key("s"))
    with g3:
        chart(fa.tile_heatmap_figure(trace, step, "p", row), SPEC.key("p"))
    st.caption("Solid outline: Q_i on chip; dotted: K_j, V_j streaming through. Tile numbers: the step at which "
               "the walk reaches the tile" + (" (split by split: each split is its own program)" if c.kv_splits > 1
                                              else "") + ". Heatmap colours are fixed over all of this q-block's "
               "tiles; masked cells (s = −∞, p = 0) are grey; the white outline is the row you follow."
               + (" A corner mark: the kernel ran the tile masked." if trace.tile_kind is not None else ""))
    if not c.masks().default:
        what = c.masks().describe()
        st.markdown(f"**{what[0].upper() + what[1:]}.** {grid.mask_line(trace)}")
    l1, l2 = st.columns([1.7, 1])
    with l1:
        chart(fa.running_state_figure(trace, step, row), SPEC.key("ml"))
    with l2:
        chart(fa.alpha_figure(trace, step, row), SPEC.key("alpha"))
    with st.container(key=SPEC.key("eq")):  # the whole width: the numbers are never cut
        st.markdown(f"##### Row {step.rows.start + row}: the update, with the kernel's numbers")
        st.latex(fa.update_equations(trace, step, row))
    e1, e2 = st.columns([1.1, 1])
    with e1:
        sections.source_panel(trace, step)
    with e2:
        chart(fa.accumulator_figure(trace, step, row), SPEC.key("acc"))
        st.caption("FlashAttention-1 keeps O normalized in memory; its middle rows are derived from the trace."
                   if c.loop_order == "fa1" else
                   "acc stays unnormalized (FlashAttention-2). The middle rows are derived: α × acc before, and p·V "
                   "from the kernel's own p (rounded to the input dtype, as the kernel does) and V. Colours fixed "
                   "over all steps.")
    finish(step, row)
    with st.expander("Published update rules, checked on the kernel's numbers at this step"):
        sections.rules_panel(SPEC, trace, step, row)


def finish(step, row: int) -> None:
    """After the program's last tile: out = acc / l against float64, or a split's partial state and the merge."""
    if c.kv_splits > 1:
        if step.last_of_walk:
            sections.split_merge(trace, step.rows.start + row, SPEC.key("split"))
        elif step.last:
            st.caption(f"Split {step.split} is done: its partial (m, ℓ, O = acc / ℓ) is written for the merge; the "
                       f"next step starts split {step.split + 1} from m = −∞, ℓ = 0.")
        return
    if not step.last:
        st.caption("After the q-block's last tile the kernel divides acc by ℓ once and writes out: step to the end.")
        return
    out = steps.output_row(trace, step.q_block, row)
    st.markdown(f"##### After Q<sub>{step.q_block}</sub>'s last tile: out = acc / ℓ, written once "
                f"(ℓ = {out['l']:.5g})", unsafe_allow_html=True)
    chart(fa.output_figure(trace, step.q_block, row), SPEC.key("out"))
    st.caption(f"max |out − float64 reference| for this row: {out['err']:.2e} ({c.dtype} inputs; whole output: "
               f"{trace.max_abs_err:.2e})")


stepping.step_fragment(SPEC.prefix, len(WALK), draw, HERE)
if not ss[PRESENT]:
    sections.consistency(SPEC, trace)
    sections.memory_accesses(SPEC, trace, scene=src.scene)
    standard_sections.section(SPEC, trace, follow)
    sections.footer(trace, src.note)
