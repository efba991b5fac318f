"""Softmax: naive, safe, online, single pass and split-row. One row through the real softmax
kernels, pass by pass; overflow in float32 and in float16 arithmetic; 3 -> 2 -> 1 passes."""
import streamlit as st

from kernels import softmax_trace, steps
from viz import hierarchy_sections, page, screens, softmax_hand, softmax_sections, specs, stepping, urlstate, words
from viz.figures import softmax as fsm
from viz.sections import chart
from viz.stepping import PRESENT

ss = st.session_state


SPEC = specs.SOFTMAX

src = page.resolve(SPEC)
HERE = src.stop()
page.sidebar_end(SPEC)
page.stop_if_error(src)
trace = page.load(src)
if SPEC.get("memory"):  # ?memory=1: the memory hierarchy as one screen
    hierarchy_sections.screen(src, trace.device)
    st.stop()
c = trace.config
length, block, chunks = c.length, c.block, c.n_chunks
n = steps.softmax_step_count(length, block)
counts = {v: trace.variant_counts(v) for v in softmax_trace.VARIANTS}
TYPED = specs.typed_row(SPEC) if src.live else None  # the row as typed (the trace holds it in float32)


def span(ch: int) -> str:
    lo, hi = ch * block, min((ch + 1) * block, length) - 1
    return f"element {lo}" if lo == hi else f"elements {lo}–{hi}"


def step_label(k: int) -> str:
    p, ch = steps.softmax_position(length, block, k)
    return (f"<div style='font-size:1.2rem' id='sm-step-label'><b>Step {k + 1} of {n}</b> · pass {p + 1}, chunk "
            f"{ch + 1} of {chunks} ({span(ch)}) · {length} elements "
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
    urlstate.write(src.url({"step": k + 1, **softmax_hand.typed_url(TYPED)}))
    page.step_header(SPEC, n, k, step_label(k), HERE)
    if ss[PRESENT]:
        by_hand = length <= softmax_hand.SHOW_ALL
        (screens.softmax_by_hand if by_hand else screens.softmax)(SPEC, trace, k, counts, src.scene)
        return
    screens.say(words.softmax(trace, k, src.scene))
    softmax_hand.hand_section(SPEC, trace, k)
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
    softmax_hand.preset_links(SPEC)
    softmax_hand.preset_notes(trace, TYPED, counts)
stepping.step_fragment(SPEC.prefix, n, draw, HERE)
if not ss[PRESENT]:
    softmax_sections.overflow(trace)
    softmax_hand.underflow(SPEC, trace)
    softmax_sections.split_row(trace)
    softmax_sections.ladder(counts, length)
    softmax_sections.accesses(trace, counts, src.note)
    hierarchy_sections.section(trace.device)
