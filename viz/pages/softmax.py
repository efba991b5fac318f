"""Softmax: naive, safe, online, single pass and split-row. One row through the real softmax
kernels, pass by pass; overflow in float32 and in float16 arithmetic; 3 -> 2 -> 1 passes."""
import numpy as np
import streamlit as st

from kernels import backend, inputs, limits, softmax_trace, traffic
from viz import controls, sources, state, stepping, urlstate
from viz.figures import softmax as fsm
from viz.figures.style import themed
from viz.stepper import stepper

ss = st.session_state
for key, value in {"sm.length": 64, "sm.block": 16, "sm.scenario": "randn", "sm.seed": 0}.items():
    ss.setdefault(key, value)
sources.defaults("sm")
opening = sources.scene_opening("softmax", lambda s: {"sm.step": s.step - 1})  # one row: only the step
sources.arrive("sm", "softmax", {**urlstate.SOFTMAX, **{k: urlstate.POSITION[k] for k in ("step", "scene", "present")}},
               urlstate.SOFTMAX, {}, opening)
_new_source, _uploaded, _back_to_source = sources.callbacks("sm", "softmax", opening)


def _restart():
    stepping.restart("sm")


stepping.page_style()
with st.sidebar:
    scene = controls.source_picker("sm", "softmax", _new_source)
    if scene is not None and ss["sm.loaded"] is None:
        sources.scene_info(scene)
    if scene is None and ss["sm.loaded"] is None:
        with st.expander("One row", expanded=True):
            persist = dict(on_change=_restart, disabled=not controls.live_possible(), persist_state="session")
            st.slider("row length", 1, softmax_trace.MAX_LENGTH, key="sm.length", **persist)
            st.select_slider("chunk (BLOCK)", softmax_trace.BLOCKS, key="sm.block", **persist,
                             help="columns each streaming kernel loads at a time; the split-row kernel's slice")
            st.selectbox("input", limits.SCENARIOS, key="sm.scenario", **persist,
                         format_func=lambda s: f"{s}: {inputs.SOFTMAX_SCENARIO_HELP[s]}")
            st.number_input("seed", 0, 2**31 - 1, step=1, key="sm.seed", **persist)
    stepping.play_controls("sm")
    sources.upload_box("sm", "softmax", _uploaded, _back_to_source)

sources.show_url_problems("sm")
if ss["sm.loaded"] is not None:
    trace, note = ss["sm.loaded"]["trace"], f"the file {ss['sm.loaded']['name']}"
elif scene is not None:
    try:
        trace, note = state.scene_trace(scene.name), f"scene {scene.name}"
    except ValueError as e:
        st.error(f"The scene {scene.name} cannot be read: {e}")
        st.stop()
else:
    try:
        cfg = softmax_trace.SoftmaxConfig(length=int(ss["sm.length"]), block=int(ss["sm.block"]),
                                          scenario=ss["sm.scenario"], seed=int(ss["sm.seed"]))
    except ValueError as e:
        st.markdown("#### Softmax: naive, safe, online")
        st.error(str(e))
        st.stop()
    with st.spinner(f"Running the softmax kernels on this row ({backend.describe()}){state.busy_note()}…"):
        try:
            trace, note = state.softmax_capture(cfg.fields()), None
        except Exception as e:  # a kernel failure is shown, never a traceback
            controls.show_kernel_failure(e)
c = trace.config
length, block = c.length, c.block
n = fsm.softmax_steps(length, block)
chunks = c.n_chunks
counts = {v: trace.variant_counts(v) for v in softmax_trace.VARIANTS}


def step_label(k: int) -> str:
    p, ch = fsm.pass_position(length, block, k)
    return (f"<div style='font-size:1.2rem' id='sm-step-label'><b>Step {k + 1} of {n}</b> · pass {p + 1}, chunk "
            f"{ch + 1} of {chunks} (elements {ch * block}–{min((ch + 1) * block, length) - 1}) · {length} elements "
            f"in chunks of {block}</div>")


def chart(fig, key: str) -> None:
    st.plotly_chart(themed(fig, ss["app.dark"]), width="stretch", key=key, theme=None, config={"displaylogo": False})


def online_panel(k: int, height: int) -> None:
    p, ch = fsm.pass_position(length, block, k)
    chart(fsm.online_state_figure(trace.x, trace.m, trace.d, block, ch if p == 0 else None, trace.ref_m, trace.ref_d,
                                  height=height), "sm.online")


def draw(k: int) -> None:
    pos = {"step": k + 1, "present": ss["app.present"] or None}
    if ss["sm.loaded"] is not None:
        urlstate.write(pos)
    elif scene is not None:
        urlstate.write({"scene": scene.name} | pos)
    else:
        urlstate.write(dict(c.fields()) | pos)
    top = st.columns([2.2, 3.4], vertical_alignment="center")
    with top[0]:
        stepper("sm", n)
        if ss["app.present"]:
            stepping.exit_presenter("sm")
    top[1].markdown(step_label(k), unsafe_allow_html=True)
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


def online_text() -> str:
    rescales = fsm.online_rescales(trace.m)
    return (f"The online kernel wrote its running max m and sum d after each of its {chunks} chunk"
            f"{'s' if chunks != 1 else ''} (TRACE on). When a chunk holds a new max, d is multiplied by "
            f"e<sup>m_old − m_new</sup> before the chunk is added: <b>{len(rescales)} rescale"
            f"{'s' if len(rescales) != 1 else ''}</b> on this row.")


if not ss["app.present"]:
    st.markdown("#### Softmax: naive, safe, online, one pass, split-row")
    st.markdown(online_text(), unsafe_allow_html=True)
stepping.step_fragment("sm", n, draw)

if not ss["app.present"]:
    st.markdown("#### Overflow, in the dtype the kernel computes in")
    v1, v2 = st.columns(2)
    with v1:
        st.markdown("**float32 arithmetic, the row × 100** (the source's example): e<sup>x</sup> overflows "
                    "float32 once x > 88.72, so naive softmax gives inf / inf = NaN and 0; safe and online subtract "
                    "the max first.", unsafe_allow_html=True)
        outs = {v: trace.out100[i] for i, v in enumerate(softmax_trace.OVERFLOW_VARIANTS)}
        chart(fsm.overflow_figure(trace.x100, outs, trace.ref100, height=280), "sm.overflow32")
    with v2:
        st.markdown("**float16 arithmetic, a float16 row around 8 ± 4**: e<sup>x</sup> overflows float16's "
                    "65504 once x > 11.09. The same row through the float32 kernels stays finite: what overflows "
                    "is the arithmetic, not the input.", unsafe_allow_html=True)
        outs = {v: trace.out16[i] for i, v in enumerate(softmax_trace.OVERFLOW_VARIANTS)}
        chart(fsm.overflow_figure(trace.x16, outs, trace.ref16, height=280), "sm.overflow16")
        bad32 = int((~np.isfinite(trace.out16_fp32)).sum())
        st.caption(f"Naive softmax of this float16 row computing in float32: {bad32} NaN/inf of {length}, max error "
                   f"{np.nanmax(np.abs(trace.out16_fp32 - trace.ref16)):.1e}.")

    st.markdown("#### Split-row: the row's slices in parallel programs, their (m, ℓ) merged")
    parts = fsm.split_row_parts(trace)
    s1, s2 = st.columns([1.6, 1])
    with s1:
        chart(fsm.split_row_figure(trace), "sm.split")
    s2.latex(rf"\begin{{aligned}} M &= \max_s m_s = {parts['M']:.6g}\\ L &= \sum_s \ell_s e^{{m_s - M}} = "
             rf"{parts['L']:.6g}\end{{aligned}}")
    s2.caption(f"The float64 row: max {parts['ref_M']:.6g}, sum e^(x − max) {parts['ref_L']:.6g}. The kernel ran "
               f"{int(parts['live'].sum())} slices of {block} ({parts['path']}): on a GPU one cooperative launch "
               "reads and writes each element once, like single pass, for rows too long for one program; the "
               "interpreter runs programs one after another, so there it takes two launches and reads twice. The "
               "same merge combines split-KV's partial states on the FlashAttention page.")

    st.markdown("#### Three passes, two passes, one pass")
    first_look = state.scene_by_name("first-look")
    ladder = [
        {"": "safe softmax", "reads of each element of the row": counts["safe"]["loads"] / length,
         "writes": counts["safe"]["stores"] / length, "how": "max; sum e^(x − m); write"},
        {"": "online softmax", "reads of each element of the row": counts["online"]["loads"] / length,
         "writes": counts["online"]["stores"] / length, "how": "running (m, d); write"},
    ]
    link_note = ""
    if first_look is not None:
        fl = state.scene_trace(first_look.name)
        fc = fl.config
        reads = fl.counters["k_loads"] / (fc.seq_len * fc.head_dim)
        ladder.append({"": "FlashAttention (scores)", "reads of each element of the row": 0.0, "writes": 0.0,
                       "how": f"S and P never leave the chip; each K, V element is read {reads:g}× (once per q-block)"})
        link_note = (f" FlashAttention row: the counters of the scene “{first_look.title}” (N = {fc.seq_len}, "
                     f"block_m = {fc.block_m}, {fl.device}).")
    st.dataframe(ladder, hide_index=True, width="stretch", key="sm.ladder")
    st.caption("Counted by the kernels on this row. FlashAttention folds online softmax's second pass into P V: "
               "the output is accumulated in the same pass that finds the max and the sum." + link_note)
    st.page_link("viz/pages/attention.py", label="See it tile by tile: the FlashAttention page",
                 icon=":material/grid_on:", query_params={"scene": "first-look"} if first_look else None)

    st.markdown("#### Accesses per element: model and counted")
    st.dataframe(fsm.softmax_access_rows(length, counts, trace.split_path), hide_index=True, key="sm.access", width="stretch",
                 placeholder="—")
    st.caption(f"Model: kernels/traffic.py. Counted: the kernels' own loads and stores on this row "
               f"({traffic.total(counts['online']):,} for online). Ran on {trace.device}"
               + (f" · {note}" if note else "") + f" · max |online y − float64| = "
               f"{np.max(np.abs(trace.y - trace.ref_y)):.1e}.")
