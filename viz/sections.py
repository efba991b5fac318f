"""Sections of the FlashAttention page below the step: split-KV's merge and the memory accesses,
and `chart`, how every page puts a figure on screen (themed, stable key, no plotly logo).

Not for: the step itself (the page's draw) or anything kernels/ computes.
"""
import streamlit as st

from kernels import limits, results
from viz import state
from viz.figures import memory, split
from viz.figures.style import themed


def chart(fig, key: str) -> None:
    st.plotly_chart(themed(fig, st.session_state["app.dark"]), width="stretch", key=key, theme=None,
                    config={"displaylogo": False, "toImageButtonOptions": {"scale": 3}})


def split_merge(trace, row: int, key: str, compact: bool = False) -> None:
    """Each split's partial (m, l) of sequence row `row` and their merge, with the numbers."""
    parts = split.merge_parts(trace, row)
    if not compact:
        st.markdown("#### Split-KV: each program's partial state, and the merge")
        chart(split.partials_figure(trace, row), key)
    st.latex(split.merge_equations(parts))
    st.caption(f"Row {row}: the merged row against the unsplit float64 reference: max |difference| "
               f"{parts['err_ref']:.2e}; the kernel's merged out against the formula on its own partials: "
               f"{parts['err_formula']:.2e}." + ("" if compact else " The same merge combines the partial results of "
                                                 "flash-decoding and of attention across several GPUs."))


def memory_accesses(spec, trace) -> None:
    """Naive / safe / online / single-pass softmax and standard attention against FlashAttention:
    the model next to the kernels' own counts (the softmax kernels run over this trace's scores
    when that is quick, else on a click), and DRAM bytes a GPU measured for this shape."""
    ss = st.session_state
    c = trace.config
    st.markdown("#### Memory accesses at this size")
    counts, count_note = None, None
    plan = limits.count_plan(c.seq_len)
    if not plan.allowed:
        count_note = plan.refusal
    elif plan.seconds <= state.AUTO_COUNT_SECONDS or ss[spec.key("count_ok")] == c.fields():
        with st.spinner(f"Running the softmax kernels over the {c.seq_len} × {c.seq_len} scores with counting on…"):
            try:
                counts = state.softmax_counts(c.fields(), trace)
            except Exception as e:  # model only, and why
                count_note = f"The softmax kernels could not count here ({type(e).__name__}: {e}); model only."
    else:
        st.button(f"Count the softmax accesses with the kernels (about {plan.seconds:.0f} s on this backend)",
                  key=spec.key("count"), on_click=lambda: ss.update({spec.key("count_ok"): c.fields()}))
        count_note = "Softmax rows show the model until the kernels have counted them."
    measured = results.measured_bytes(c)
    rows = memory.memory_rows(trace, counts, measured)
    st.markdown(f"<div style='font-size:1.2rem'><b>{memory.flash_headline(rows)}</b> S and P "
                f"({2 * c.seq_len * c.seq_len:,} elements) never leave the chip.</div>", unsafe_allow_html=True)
    t1, t2 = st.columns([1.15, 1])
    t1.dataframe(memory.memory_table(rows, measured), hide_index=True, key=spec.key("mem_table"), width="stretch",
                 placeholder="—", column_config={"equal?": st.column_config.TextColumn(width="small"),
                                                 **{k: st.column_config.NumberColumn(format="localized")
                                                    for k in ("model", "counted by the kernel")}})
    if count_note:
        t1.caption(count_note)
    t1.caption(memory.memory_note(c, rows, measured))
    with t2:
        chart(memory.memory_figure(rows), spec.key("mem"))
    dram = results.dram_bytes()
    if dram is not None and measured is None:
        with st.expander(f"DRAM bytes measured on the {dram['env'].get('gpu', 'GPU')} (Nsight Compute), for the "
                         "configs it measured"):
            st.dataframe(memory.measured_cases_table(dram), hide_index=True, width="stretch", key=spec.key("dram"))
            st.caption("Model: the elements the kernel loads and stores times the dtype's size; measured: "
                       "dram__bytes_read.sum + dram__bytes_write.sum, caches flushed before each kernel. The memory "
                       "table above adds this column when the config is one of these (N 4096 or 16384, head_dim "
                       "64, 64 x 64 blocks, float16). FlashAttention's K, V re-reads mostly hit the L2 cache, and O "
                       "can still sit in L2 when the kernel ends, so its measured bytes are a few percent of the "
                       "model; standard attention's S and P do not fit and reach DRAM.")
