"""Softmax: naive, safe, online, single pass and split-row. One row through the real softmax
kernels, pass by pass; overflow in float32 and in float16 arithmetic; 3 -> 2 -> 1 passes."""
import streamlit as st

from kernels import inputs, limits, softmax_trace, steps
from viz import controls, hierarchy_sections, page, screens, softmax_sections, specs, stepping, urlstate, words
from viz.figures import softmax as fsm
from viz.sections import chart
from viz.stepping import PRESENT

ss = st.session_state


def row_widgets(spec, on_change) -> None:
    persist = dict(on_change=on_change, disabled=not controls.live_possible(), persist_state="session")
    st.slider("row length", 1, softmax_trace.MAX_LENGTH, key=SPEC.key("length"), **persist)
    st.select_slider("chunk (BLOCK)", softmax_trace.BLOCKS, key=SPEC.key("block"), **persist,
                     help="columns each streaming kernel loads at a time; the split-row kernel's slice")
    st.selectbox("input", limits.SCENARIOS, key=SPEC.key("scenario"), **persist,
                 format_func=lambda s: f"{s}: {inputs.SOFTMAX_SCENARIO_HELP[s]}")
    st.number_input("seed", 0, 2**31 - 1, step=1, key=SPEC.key("seed"), **persist)


SPEC = specs.SOFTMAX

src = page.resolve(SPEC)
HERE = src.stop()
page.sidebar_end(SPEC)
page.stop_if_error(src)
trace = page.load(src)
c = trace.config
length, block, chunks = c.length, c.block, c.n_chunks
n = steps.softmax_step_count(length, block)
counts = {v: trace.variant_counts(v) for v in softmax_trace.VARIANTS}


def step_label(k: int) -> str:
    p, ch = steps.softmax_position(length, block, k)
    return (f"<div style='font-size:1.2rem' id='sm-step-label'><b>Step {k + 1} of {n}</b> · pass {p + 1}, chunk "
            f"{ch + 1} of {chunks} (elements {ch * block}–{min((ch + 1) * block, length) - 1}) · {length} elements "
            f"in chunks of {block}</div>")


def online_panel(k: int, height: int) -> None:
    p, ch = steps.softmax_position(length, block, k)
    chart(fsm.online_state_figure(trace.x, trace.m, trace.d, block, ch if p == 0 else None, trace.ref_m, trace.ref_d,
                                  height=height, done=ch if p == 0 else None), SPEC.key("online"))


def online_text() -> str:
    rescales = fsm.online_rescales(trace.m)
    return (f"The online kernel wrote its running max m and sum d after each of its {chunks} chunk"
            f"{'s' if chunks != 1 else ''} (TRACE on). When a chunk holds a new max, d is multiplied by "
            f"e<sup>m_old − m_new</sup> before the chunk is added: <b>{len(rescales)} rescale"
            f"{'s' if len(rescales) != 1 else ''}</b> on this row.")


def draw(k: int) -> None:
    urlstate.write(src.url({"step": k + 1}))
    page.step_header(SPEC, n, k, step_label(k), HERE)
    if ss[PRESENT]:
        screens.softmax(SPEC, trace, k, counts, src.scene)
        return
    screens.say(words.softmax(trace, k, src.scene))
    chart(fsm.passes_figure(length, block, k, counts=counts), SPEC.key("passes"))
    st.caption("Blue: read; green: read and y written; orange: the chunk on chip now; grey: still to come. Each "
               "streaming kernel reads the row chunk by chunk, one pass after another: safe needs a third pass, "
               "online folds the max into the sum. Single pass holds the row on chip; split-row holds it in slices "
               "across programs and merges their (m, ℓ). /elem: loads + stores per element, counted by the kernels.")
    o1, o2 = st.columns([1.5, 1])
    with o1:
        online_panel(k, 460)
    g5 = st.column_config.NumberColumn(format="%.5g")
    o2.dataframe(fsm.online_table(trace.m, trace.d, trace.ref_m, trace.ref_d), hide_index=True,
                 key=SPEC.key("online_table"), width="stretch", placeholder="",
                 column_config={"chunk": st.column_config.NumberColumn(width="small"),
                                **{name: g5 for name in ("m", "d", "d ×", "m (f64)", "d (f64)")}})
    o2.caption("m, d: what the kernel wrote after each chunk. d ×: the rescale e^(m_old − m_new) where m grew "
               "(derived from the kernel's m). f64: the float64 reference, as a check.")


if not ss[PRESENT]:
    st.markdown("#### Softmax: naive, safe, online, one pass, split-row")
    st.markdown(online_text(), unsafe_allow_html=True)
stepping.step_fragment(SPEC.prefix, n, draw, HERE)
if not ss[PRESENT]:
    softmax_sections.overflow(trace)
    softmax_sections.split_row(trace)
    softmax_sections.ladder(counts, length)
    softmax_sections.accesses(trace, counts, src.note)
    hierarchy_sections.section(trace.device)
