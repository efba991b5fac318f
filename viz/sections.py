"""Sections of the FlashAttention page below the step: split-KV's merge and the memory accesses,
and `chart`, how every page puts a figure on screen (themed, stable key, no plotly logo).

Not for: the step itself (the page's draw) or anything kernels/ computes.
"""
import streamlit as st

from kernels import limits, results
from viz import state, stepping
from viz.figures import memory, split
from viz.figures.style import big, themed


def chart(fig, key: str) -> None:
    ss = st.session_state
    if ss.get(stepping.PRESENT):
        big(fig)
    st.plotly_chart(themed(fig, ss.get(stepping.DARK, False)), width="stretch", key=key, theme=None,
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


def memory_accesses(spec, trace, scene=None) -> None:
    """Naive / safe / online / single-pass softmax and standard attention against FlashAttention:
    the model next to the kernels' own counts (for a scene, counted when it was prepared: no wait;
    live, the softmax kernels run over this trace's scores when that is quick, else on a click),
    and DRAM bytes a GPU measured for this shape."""
    ss = st.session_state
    c = trace.config
    st.markdown("#### Memory accesses at this size")
    counts, count_note = None, None
    plan = limits.count_plan(c.seq_len, c.n_rows)
    prepared = state.scene_softmax_counts().get(scene.name) if scene is not None else None
    if prepared is not None:
        counts = prepared
        count_note = "Softmax rows: counted by the softmax kernels over this scene's scores when the scene was prepared."
    elif not plan.allowed:
        count_note = plan.refusal
    elif plan.seconds <= state.AUTO_COUNT_SECONDS or ss[spec.key("count_ok")] == c.fields():
        with st.spinner(f"Running the softmax kernels over the {c.n_rows} × {c.seq_len} scores with counting on…"):
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
                f"({2 * c.n_rows * c.seq_len:,} elements) never leave the chip.</div>", unsafe_allow_html=True)
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


# ---------------------------------------------------------------- the kernel's source, published rules, backends
def source_panel(trace, step, compact: bool = False) -> None:
    """The lines of the @triton.jit source that computed this step's m, alpha, p, l and acc (and out
    after the last tile), read from the kernel modules, for the branch of the tile update that ran."""
    import html

    from kernels import source_lines

    c = trace.config
    branch = source_lines.branch(trace, step)
    kernel = "fa1" if c.loop_order == "fa1" else "fa2"
    names = ["m", "alpha", "p", "l", "acc"] + (["out"] if step.last and c.kv_splits == 1 else [])
    rows = []
    for name in names:
        for line in source_lines.lines(name, kernel, branch):
            rows.append(f"<tr><td class='fa-src-q'>{html.escape(name)}</td><td class='fa-src-at'>"
                        f"{html.escape(line.file.removeprefix('kernels/'))}:{line.line}</td>"
                        f"<td class='fa-src-code'>{html.escape(line.code.strip())}</td></tr>")
    size = "0.9rem" if compact else "0.85rem"
    st.html(f"<style>.fa-src td{{padding:1px 8px 1px 0;font-size:{size};vertical-align:top}} .fa-src-q{{font-weight:600}}"
            f" .fa-src-at{{color:#6b7280;white-space:nowrap}} .fa-src-code{{font-family:monospace;white-space:pre-wrap;"
            f"word-break:break-word}}"
            f"</style><div id='attn-source'><div style='font-size:{size}'>The kernel's source for this step "
            f"({html.escape(branch)} tile: softmax_tile's {html.escape(branch)} branch), read from "
            f"kernels/ now:</div><table class='fa-src'>{''.join(rows)}</table></div>")


def rules_panel(spec, trace, step, row: int, compact: bool = False) -> None:
    """Published update rules evaluated on the kernel's numbers: this step's residual, and whether
    the rule holds at every step of the followed row's walk."""
    import math

    from kernels import rules

    res = rules.evaluate(trace, step.q_block, row)
    k = [s.index for s in _walk_of(trace, step)].index(step.index)
    table = []
    for r in res:
        now = r["residuals"][k]
        shown = "inf / NaN (÷ 0)" if not math.isfinite(now) else f"{now:.2e}"
        if compact:
            table.append({"rule": r["rule"].name, "": "✓" if r["rule"].correct else "✗ as printed", "residual": shown,
                          "now": "✓" if r["ok"][k] else "✗", "all steps": "✓" if r["holds"] else "✗"})
            continue
        table.append({"rule": r["rule"].name, "printed": "correct" if r["rule"].correct else "wrong",
                      "residual now": shown, "holds now": "✓" if r["ok"][k] else "✗",
                      "every step": "✓" if r["holds"] else "✗", "where": r["rule"].source})
    st.dataframe(table, hide_index=True, width="stretch", key=spec.key("rules"))
    if not compact:
        st.caption("Each rule is evaluated on this row's numbers as the kernel wrote them (m, ℓ, acc before and after, "
                   "p·V from the kernel's own p and V) and compared with the kernel's next acc (or O = acc / ℓ); "
                   "residual: max |rule − kernel| over head_dim. At a program's first tile α = 0 and ℓ_old = 0, so a "
                   "rule that divides by either gives inf or NaN; after it, the ^-1 of the printed lines misses "
                   "wherever the max grew (α < 1) and only there.")


def _walk_of(trace, step):
    from kernels import steps

    return [s for s in steps.steps(trace, step.q_block) if s.q_block == step.q_block]


def consistency_panel(spec, trace, interpreter_trace, note: str) -> None:
    """The GPU's numbers, the interpreter's for the same source and config, and float64, tile by
    tile: the largest differences in ulps, and what each operation adds by itself."""
    from kernels import consistency

    a_name = "GPU" if "interpreter" not in trace.device.lower() else "interpreter"
    b_name = None if interpreter_trace is None else "interpreter"
    rows = consistency.compare(trace, interpreter_trace)
    st.dataframe(consistency.table(a_name, b_name, rows), hide_index=True, width="stretch", key=spec.key("cons"),
                 column_config={c: st.column_config.NumberColumn(format="%.1f") for c in
                                (f"{a_name} vs float64", f"{b_name} vs float64", f"{a_name} vs {b_name}")})
    own = consistency.own_errors(trace)
    mine = consistency.own_errors(interpreter_trace) if interpreter_trace is not None else None
    where = [{"operation": k, f"{a_name}: ulps it adds": own[k]} | (
        {"interpreter: ulps it adds": mine[k]} if mine else {}) | {"what": consistency.WHERE[k]} for k in own]
    st.dataframe(where, hide_index=True, width="stretch", key=spec.key("cons_where"),
                 column_config={c: st.column_config.NumberColumn(format="%.1f") for c in
                                (f"{a_name}: ulps it adds", "interpreter: ulps it adds")})
    st.caption("ulps of float32 at the magnitude each value was summed from (m: |q|·|k|·scale, ℓ: ℓ, acc: Σ e^(s−m)|v|), "
               "and of the input dtype for out. m, ℓ and acc are float32 in the kernel; float64 is the same walk "
               "recomputed from the trace's own inputs. " + note)


def consistency(spec, trace) -> None:
    """The consistency panel in an expander: a recording against the interpreter's run of the same
    config (on a click: it runs the kernel) and float64; a live interpreter trace against float64."""
    from kernels import backend

    ss = st.session_state
    with st.expander("GPU, interpreter and float64, tile by tile: where they differ, by how many ulps"):
        recorded = "interpreter" not in trace.device.lower()
        twin, note = None, ""
        if not recorded:
            note = "This trace is the interpreter's own: it is compared with float64 only (a GPU scene adds the GPU)."
        elif trace.config.dtype == "bfloat16":
            note = "The interpreter has no bfloat16 arithmetic: this recording is compared with float64 only."
        elif not backend.HAVE_TRITON:
            note = "Triton is not installed here: the recording is compared with float64 only."
        elif ss.get(spec.key("twin")) == trace.config.fields():
            with st.spinner("Tracing the same config in the interpreter" + state.busy_note() + "…"):
                try:
                    twin = state.interpreter_twin(trace.config.fields(), tuple(int(i) for i in trace.tile_q_blocks))
                except (ValueError, TimeoutError) as e:
                    note = f"The interpreter could not run it here: {e}"
        else:
            st.button("Run the same config in the interpreter and compare", key=spec.key("twin_go"),
                      on_click=lambda: ss.update({spec.key("twin"): trace.config.fields()}))
            note = "Until then: the recording against float64."
        consistency_panel(spec, trace, twin, note)


def footer(trace, note: str) -> None:
    """Where the trace ran and how it compares with float64 (device and note are text from a file)."""
    from viz import controls

    st.caption(f"Ran on {controls.plain(trace.device)} · the traced launch took {trace.seconds:.2f} s (compile "
               f"included) · max |out − float64 reference| = {trace.max_abs_err:.2e}"
               + (f" · {controls.plain(note)}" if note else ""))
