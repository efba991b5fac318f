"""Sections of the Backward page around the dK/dV stepper: one row of the softmax backward two
ways, the source's worked example through the softmax-backward kernel, and the memory traffic.

Not for: the stepping itself (viz/pages/backward.py) or anything kernels/ computes.
"""
import numpy as np
import streamlit as st

from viz import controls, specs, state
from viz.figures import backward as fb
from viz.figures import memory
from viz.sections import chart

SPEC = specs.BACKWARD

BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def one_row(trace) -> None:
    """The softmax backward of one query row: the N x N Jacobian form against P o (dP - D)."""
    c = trace.config
    n = c.seq_len
    st.markdown("##### One row of the softmax backward, two ways")
    r1, r2 = st.columns([1, 2.1])
    with r1:
        row = controls.follow_slider("query row", SPEC.key("row"), n, help="the row of P whose backward is shown")
        parts = fb.backward_row_parts(trace, row)
        per = BYTES.get(c.dtype, 4)
        st.latex(r"dS = \underbrace{(\mathrm{diag}(P) - P P^\top)}_{N \times N}\, dP")
        st.markdown(f"needs **{memory.elements_text(n * n, per, c.dtype)}** per row")
        st.latex(r"dS = P \circ (dP - \underbrace{D}_{1})")
        st.markdown(f"needs **{memory.elements_text(n, per, c.dtype)}** per row, plus one number D",
                    help="D = rowsum(dO ∘ O) from the preprocess kernel: N numbers for the whole matrix")
    with r2:
        chart(fb.backward_row_figure(parts, row), SPEC.key("rowfig"))
    num = st.column_config.NumberColumn(format="%.6g")
    st.dataframe(fb.backward_row_table(parts), hide_index=True, key=SPEC.key("row_table"), width="stretch",
                 column_config={k: num for k in ("P", "dP", "(diag(P) − P Pᵀ) dP", "P ∘ (dP − D)", "difference")})
    where = ("P, dP (as the kernel computed it, masked keys included) and P ∘ (dP − D) are the kernel's own "
             "tiles; the Jacobian form is computed here from them (float64)." if parts["source"] == "kernel" else
             "This trace kept the tiles of only some kv-blocks, so this row's P and dP are recomputed in float64; "
             "D is the kernel's.")
    st.caption(f"Row {row}: max |difference| over its {parts['keys'].size} keys = **{parts['max_diff']:.2e}**. "
               f"D from the preprocess kernel = {parts['d']:.6g}; P · dP = {parts['d_pdp']:.6g}. {where}")


def worked_example() -> None:
    """The post's P = [0.1, 0.5, 0.4] through the softmax-backward kernel, and its sign slip."""
    st.markdown("##### The source's worked example: P = [0.1, 0.5, 0.4]")
    pc, dc = st.columns(3), st.columns(3)
    p_in = [pc[j].number_input(f"P[{j}]", 0.0, 1.0, fb.EXAMPLE_P[j], step=0.05, format="%.4f", key=SPEC.key(f"ex_p{j}"))
            for j in range(3)]
    dp_in = [dc[j].number_input(f"dP[{j}] = {'abc'[j]}", -1e6, 1e6, fb.EXAMPLE_DP[j], step=0.5, key=SPEC.key(f"ex_dp{j}"))
             for j in range(3)]
    busy = False
    try:
        try:
            kernel = state.softmax_backward_example(tuple(p_in), tuple(dp_in))
        except TimeoutError:  # another visitor's run holds the kernels: float64 only, no wait
            kernel, busy = None, True
        ex = fb.example_parts(p_in, dp_in, kernel)
    except ValueError as e:
        st.error(controls.plain(str(e)))
        return
    for block in fb.example_tex(ex):
        st.latex(block)
    st.latex(rf"D = P^\top dP = {ex['d']:.6g},\qquad P \circ (dP - D) = "
             rf"[{', '.join(f'{v:.6g}' for v in ex['ds_d'])}]")
    if "ds_kernel" in ex:
        st.markdown(f"The softmax-backward kernel (kernels/softmax_bwd.py) on this row: dS = "
                    f"[{', '.join(f'{v:.6g}' for v in ex['ds_kernel'])}], D = {ex['d_kernel']:.6g}; "
                    f"max |kernel − Jacobian form| = {np.max(np.abs(ex['ds_kernel'] - ex['ds_jacobian'])):.1e} "
                    "(float32).")
    elif busy:
        st.caption("Another visitor's kernel run holds the kernels: both forms above are float64 for now; the "
                   "softmax-backward kernel runs on the next rerun when the kernels are free.")
    else:
        st.caption("Triton is not installed here: both forms above are float64, no kernel ran.")
    st.markdown("The post's second form, the one the FlashAttention backward computes (no Jacobian):")
    st.latex(fb.example_second_form_tex(ex))
    try:
        flash = None if busy else state.flash_backward_example(tuple(p_in), tuple(dp_in))
    except TimeoutError:
        flash = None
    except ValueError as e:  # a P with a zero entry has no key whose score is ln 0
        st.caption(f"Not through the attention backward: {controls.plain(str(e))}")
        flash = None
    if flash is not None:
        err = float(np.max(np.abs(flash["ds"] - ex["ds_jacobian"])))
        st.markdown("Through attention's own backward (kernels/flash_bwd.py): one query q = e₀, keys k_j = ln(P_j) e₀ "
                    "(so softmax(q·k) = P), values v_j = dP_j e₀, dO = e₀, scale 1; the dK/dV kernel's dK_j = dS_j q, "
                    f"so dS = [{', '.join(f'{v:.6g}' for v in flash['ds'])}] read off its dK, D = dO · O = "
                    f"{flash['d']:.6g} (derived from the kernel's O); max |dK/dV kernel − Jacobian form| = {err:.1e} "
                    "(float32).")
    st.caption("The post writes the third entry of J dP as −0.04a − 0.2b − 0.24c: a sign slip. "
               "J's last row is (−0.04, −0.2, 0.24), so it is −0.04a − 0.2b + 0.24c, as above.")


def traffic(trace, note: str) -> None:
    """The standard backward against the FlashAttention-2 backward, per kernel, model and counted."""
    c = trace.config
    st.markdown("##### Memory traffic of the backward")
    rows = memory.bwd_memory_rows(trace)
    st.markdown(f"<div style='font-size:1.2rem'><b>{memory.bwd_headline(rows, c.seq_len)}</b></div>",
                unsafe_allow_html=True)
    t1, t2 = st.columns([1.1, 1])
    count = st.column_config.NumberColumn(format="localized")
    t1.dataframe(memory.memory_table(rows), hide_index=True, key=SPEC.key("mem_table"), width="stretch", placeholder="—",
                 column_config={"model": count, "counted by the kernel": count,
                                "equal?": st.column_config.TextColumn(width="small")})
    t1.caption("Elements loaded + stored (logical counts, not bytes that reached DRAM). Model: kernels/traffic.py. "
               "Counted: the three backward kernels' own loads and stores (COUNT on); the standard backward has no "
               "kernel here, so model only.")
    with t2:
        chart(memory.memory_figure(rows), SPEC.key("mem"))
    errs = trace.max_abs_errs()
    st.caption(f"Ran on **{controls.plain(trace.device)}** ({controls.plain(note) or 'live'}) · the traced backward "
               f"took {trace.seconds:.2f} s (compile included) · max |kernel − float64|: dQ {errs['dq']:.1e}, "
               f"dK {errs['dk']:.1e}, dV {errs['dv']:.1e}, D {errs['delta']:.1e}")
