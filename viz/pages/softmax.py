"""Softmax: naive, safe, online, single pass and split-row. One row through the real softmax
kernels, pass by pass; overflow in float32 and in float16 arithmetic; 3 -> 2 -> 1 passes."""
import streamlit as st

from kernels import inputs, limits, softmax_trace, steps
from viz import controls, page, softmax_sections, state, stepping, urlstate
from viz.figures import softmax as fsm
from viz.sections import chart

ss = st.session_state


def row_widgets(spec, on_change) -> None:
    persist = dict(on_change=on_change, disabled=not controls.live_possible(), persist_state="session")
    st.slider("row length", 1, softmax_trace.MAX_LENGTH, key="sm.length", **persist)
    st.select_slider("chunk (BLOCK)", softmax_trace.BLOCKS, key="sm.block", **persist,
                     help="columns each streaming kernel loads at a time; the split-row kernel's slice")
    st.selectbox("input", limits.SCENARIOS, key="sm.scenario", **persist,
                 format_func=lambda s: f"{s}: {inputs.SOFTMAX_SCENARIO_HELP[s]}")
    st.number_input("seed", 0, 2**31 - 1, step=1, key="sm.seed", **persist)


SPEC = page.PageSpec(
    prefix="sm", page="softmax", title="Softmax: naive, safe, online", kind="softmax", config=urlstate.SOFTMAX,
    positions={}, defaults={"length": 64, "block": 16, "scenario": "randn", "seed": 0},
    opening=lambda s: {"step": s.step - 1}, config_widgets=row_widgets,
    make_config=lambda spec: softmax_trace.SoftmaxConfig(length=int(ss["sm.length"]), block=int(ss["sm.block"]),
                                                         scenario=ss["sm.scenario"], seed=int(ss["sm.seed"])),
    capture=lambda cfg: state.softmax_capture(cfg.fields()),
    capture_what=lambda cfg: "Running the softmax kernels on this row", config_label="One row")

src = page.resolve(SPEC)
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
                                  height=height), "sm.online")


def online_text() -> str:
    rescales = fsm.online_rescales(trace.m)
    return (f"The online kernel wrote its running max m and sum d after each of its {chunks} chunk"
            f"{'s' if chunks != 1 else ''} (TRACE on). When a chunk holds a new max, d is multiplied by "
            f"e<sup>m_old − m_new</sup> before the chunk is added: <b>{len(rescales)} rescale"
            f"{'s' if len(rescales) != 1 else ''}</b> on this row.")


def draw(k: int) -> None:
    urlstate.write(src.url({"step": k + 1}))
    page.step_header(SPEC, n, k, step_label(k))
    if ss["app.present"]:
        a1, a2 = st.columns([1.35, 1])
        with a1:
            chart(fsm.passes_figure(length, block, k, counts=counts, height=420), "sm.passes")
        with a2:
            online_panel(k, 420)
        st.markdown(f"<div style='font-size:1.15rem'>{online_text()}</div>", unsafe_allow_html=True)
        return
    chart(fsm.passes_figure(length, block, k, counts=counts), "sm.passes")
    st.caption("Blue: read; green: read and y written; orange: the chunk on chip now; grey: still to come. Each "
               "streaming kernel reads the row chunk by chunk, one pass after another: safe needs a third pass, "
               "online folds the max into the sum. Single pass holds the row on chip; split-row holds it in slices "
               "across programs and merges their (m, ℓ). /elem: loads + stores per element, counted by the kernels.")
    o1, o2 = st.columns([1.5, 1])
    with o1:
        online_panel(k, 460)
    g5 = st.column_config.NumberColumn(format="%.5g")
    o2.dataframe(fsm.online_table(trace.m, trace.d, trace.ref_m, trace.ref_d), hide_index=True,
                 key="sm.online_table", width="stretch", placeholder="",
                 column_config={"chunk": st.column_config.NumberColumn(width="small"),
                                **{name: g5 for name in ("m", "d", "d ×", "m (f64)", "d (f64)")}})
    o2.caption("m, d: what the kernel wrote after each chunk. d ×: the rescale e^(m_old − m_new) where m grew "
               "(derived from the kernel's m). f64: the float64 reference, as a check.")


if not ss["app.present"]:
    st.markdown("#### Softmax: naive, safe, online, one pass, split-row")
    st.markdown(online_text(), unsafe_allow_html=True)
stepping.step_fragment("sm", n, draw)
if not ss["app.present"]:
    softmax_sections.overflow(trace)
    softmax_sections.split_row(trace)
    softmax_sections.ladder(counts, length)
    softmax_sections.accesses(trace, counts, src.note)
