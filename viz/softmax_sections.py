"""Sections of the Softmax page below the stepper: overflow in the dtype the kernel computes in,
split-row's merge of partial (m, l), three passes to one, and accesses per element.

Not for: the stepping itself (viz/pages/softmax.py) or anything kernels/ computes.
"""
import numpy as np
import streamlit as st

from kernels import softmax_trace, traffic
from viz import controls, specs, state
from viz.figures import softmax as fsm
from viz.sections import chart

SPEC = specs.SOFTMAX


def overflow(trace) -> None:
    length = trace.config.length
    st.markdown("#### Overflow, in the dtype the kernel computes in")
    v1, v2 = st.columns(2)
    with v1:
        st.markdown("**float32 arithmetic, the row × 100** (the source's example): e<sup>x</sup> overflows "
                    "float32 once x > 88.72, so naive softmax gives inf / inf = NaN and 0; safe and online subtract "
                    "the max first.", unsafe_allow_html=True)
        outs = {v: trace.out100[i] for i, v in enumerate(softmax_trace.OVERFLOW_VARIANTS)}
        chart(fsm.overflow_figure(trace.x100, outs, trace.ref100, height=280), SPEC.key("overflow32"))
    with v2:
        st.markdown("**float16 arithmetic, a float16 row around 8 ± 4**: e<sup>x</sup> overflows float16's "
                    "65504 once x > 11.09. The same row through the float32 kernels stays finite: what overflows "
                    "is the arithmetic, not the input.", unsafe_allow_html=True)
        outs = {v: trace.out16[i] for i, v in enumerate(softmax_trace.OVERFLOW_VARIANTS)}
        chart(fsm.overflow_figure(trace.x16, outs, trace.ref16, height=280), SPEC.key("overflow16"))
        bad32 = int((~np.isfinite(trace.out16_fp32)).sum())
        st.caption(f"Naive softmax of this float16 row computing in float32: {bad32} NaN/inf of {length}, max error "
                   f"{np.nanmax(np.abs(trace.out16_fp32 - trace.ref16)):.1e}.")


def split_row(trace) -> None:
    st.markdown("#### Split-row: the row's slices in parallel programs, their (m, ℓ) merged")
    parts = fsm.split_row_parts(trace)
    s1, s2 = st.columns([1.6, 1])
    with s1:
        chart(fsm.split_row_figure(trace), SPEC.key("split"))
    s2.latex(rf"\begin{{aligned}} M &= \max_s m_s = {parts['M']:.6g}\\ L &= \sum_s \ell_s e^{{m_s - M}} = "
             rf"{parts['L']:.6g}\end{{aligned}}")
    s2.caption(f"The float64 row: max {parts['ref_M']:.6g}, sum e^(x − max) {parts['ref_L']:.6g}. The kernel ran "
               f"{int(parts['live'].sum())} slices of {trace.config.block} ({parts['path']}): on a GPU one cooperative "
               "launch reads and writes each element once, like single pass, for rows too long for one program; the "
               "interpreter runs programs one after another, so there it takes two launches and reads twice. The "
               "same merge combines split-KV's partial states on the FlashAttention page.")


def ladder(counts: dict, length: int) -> None:
    st.markdown("#### Three passes, two passes, one pass")
    first_look = state.scene_by_name("first-look")
    rows = [{"": "safe softmax", "reads of each element of the row": counts["safe"]["loads"] / length,
             "writes": counts["safe"]["stores"] / length, "how": "max; sum e^(x − m); write"},
            {"": "online softmax", "reads of each element of the row": counts["online"]["loads"] / length,
             "writes": counts["online"]["stores"] / length, "how": "running (m, d); write"}]
    link_note = ""
    if first_look is not None:
        fl = state.scene_trace(first_look.name)
        fc = fl.config
        reads = fl.counters["k_loads"] / (fc.seq_len * fc.head_dim)
        rows.append({"": "FlashAttention (scores)", "reads of each element of the row": 0.0, "writes": 0.0,
                     "how": f"S and P never leave the chip; each K, V element is read {reads:g}× (once per q-block)"})
        link_note = (f" FlashAttention row: the counters of the scene “{controls.plain(first_look.title)}” "
                     f"(N = {fc.seq_len}, block_m = {fc.block_m}, {controls.plain(fl.device)}).")
    st.dataframe(rows, hide_index=True, width="stretch", key=SPEC.key("ladder"))
    st.caption("Counted by the kernels on this row. FlashAttention folds online softmax's second pass into P V: "
               "the output is accumulated in the same pass that finds the max and the sum." + link_note)
    st.page_link("viz/pages/attention.py", label="See it tile by tile: the FlashAttention page",
                 icon=":material/grid_on:", query_params={"scene": "first-look"} if first_look else None)


def accesses(trace, counts: dict, note: str) -> None:
    length = trace.config.length
    st.markdown("#### Accesses per element: model and counted")
    st.dataframe(fsm.softmax_access_rows(length, counts, trace.split_path), hide_index=True, key=SPEC.key("access"),
                 width="stretch", placeholder="—")
    st.caption(f"Model: kernels/traffic.py. Counted: the kernels' own loads and stores on this row "
               f"({traffic.total(counts['online']):,} for online). Ran on {controls.plain(trace.device)}"
               + (f" · {controls.plain(note)}" if note else "") + f" · max |online y − float64| = "
               f"{np.max(np.abs(trace.y - trace.ref_y)):.1e}.")
