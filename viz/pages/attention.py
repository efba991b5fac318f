"""FlashAttention tiles: step through the tiles of the real FlashAttention kernel's trace."""
import streamlit as st

from kernels import backend, trace_io
from viz import controls, export, sources, state, stepping, urlstate
from viz.figures import attention as fa
from viz.figures import grid, memory, split
from viz.figures.style import themed
from viz.stepper import stepper

ss = st.session_state
CPU = backend.INTERPRET
DEFAULTS = {**controls.config_defaults("attn"), "attn.follow": 3 if CPU else 8, "attn.row": 0, "attn.count_ok": None}
for key, value in DEFAULTS.items():
    ss.setdefault(key, value)
sources.defaults("attn")
# a scene opens at its q-block, at its row within that q-block, at its step
opening = sources.scene_opening("attention", lambda s: {"attn.follow": s.follow, "attn.row_rel": s.row,
                                                       "attn.step": s.step - 1})
sources.arrive("attn", "attention", {**urlstate.CONFIG, **urlstate.POSITION}, urlstate.CONFIG,
               {"q_block": "attn.follow", "row": "attn.row_abs"}, opening)
_new_source, _uploaded, _back_to_source = sources.callbacks("attn", "forward", opening)


def _restart():
    stepping.restart("attn")


# ---------------------------------------------------------------- where the trace comes from
stepping.page_style()
with st.sidebar:
    scene = controls.source_picker("attn", "attention", _new_source)
    follow_box = st.container()  # the followed q-block and row, above the config: in view at 720 px
    live = scene is None and ss["attn.loaded"] is None
    if scene is not None:
        sources.scene_info(scene)
    if live:
        with st.expander("Kernel config", expanded=True):
            controls.config_sidebar("attn", _restart, orders=True)

sources.show_url_problems("attn")
trace, cfg_error, note = None, None, None
if ss["attn.loaded"] is not None:
    trace = ss["attn.loaded"]["trace"]
    note = f"Replaying the file {ss['attn.loaded']['name']}, recorded on: {trace.device}"
elif scene is not None:
    try:
        trace = state.scene_trace(scene.name)
        note = f"Scene recorded on {trace.device}"
    except ValueError as e:
        cfg_error = f"The scene {scene.name} cannot be read: {e}"
else:
    cfg, cfg_error = controls.config_from_state("attn", orders=True)

# ---------------------------------------------------------------- follow: q-block and row
with follow_box:
    c = trace.config if trace is not None else (cfg if cfg_error is None else None)
    if c is not None:
        follow = controls.follow_slider("follow q-block", "attn.follow", c.n_q_blocks, first=0, on_change=_restart,
                                        help="the program (one per q-block) whose tiles you step through")
        rows_here = min(c.block_m, c.seq_len - follow * c.block_m)
        if "attn.row_rel" in ss:  # a scene's row: the row within its q-block
            ss["attn.row"] = min(ss.pop("attn.row_rel"), rows_here - 1)
        if "attn.row_abs" in ss:  # a row number from the URL, the row of the sequence: it wins over the scene's
            ss["attn.row"] = min(max(0, ss.pop("attn.row_abs") - follow * c.block_m), rows_here - 1)
        first_row = follow * c.block_m
        ss["attn.row"] = min(max(0, int(ss["attn.row"])), rows_here - 1)  # within the q-block, kept across q-blocks
        ss["attn.row_in"] = first_row + ss["attn.row"]
        if rows_here > 1:
            controls.follow_slider("row", "attn.row_in", rows_here, first=first_row,
                                   on_change=lambda: ss.update({"attn.row": ss["attn.row_in"] - first_row}),
                                   help="the row whose numbers the equations and the accumulator show")
with st.sidebar:
    stepping.play_controls("attn")
    sources.upload_box("attn", "forward", _uploaded, _back_to_source)

if cfg_error:
    st.markdown("#### FlashAttention, tile by tile")
    st.error(cfg_error)
    st.stop()
if trace is None:  # the live kernel
    follow = min(int(ss["attn.follow"]), cfg.n_q_blocks - 1)
    secs = state.capture_seconds(cfg)
    with st.spinner(f"Running the kernel with TRACE on ({backend.describe()})" + state.busy_note()
                    + (f", about {secs:.0f} s…" if secs >= 2 else "…")):
        try:
            trace = state.trace_for(cfg, follow)
        except Exception as e:  # a kernel failure is shown, never a traceback
            controls.show_kernel_failure(e)
c = trace.config
follow = min(int(ss["attn.follow"]), c.n_q_blocks - 1)
if trace.tile_slot(follow) is None:  # a recording keeps the tiles of some q-blocks only
    kept = [int(i) for i in trace.tile_q_blocks]
    follow = min(kept, key=lambda i: abs(i - follow))
    st.caption(f"This recording kept the tiles of q-blocks {kept}: following q-block {follow}.")


# ---------------------------------------------------------------- one step
def step_label(n: int, k: int, i: int, j: int) -> str:
    facts = fa.step_facts(trace, follow, k)
    rows = trace.rows(i)
    lo_r, lo_c = i * c.block_m, j * c.block_n
    what = (f"first tile of Q<sub>{i}</sub>: m starts at −∞, every row takes its first max (α = 0)" if facts["first"]
            else f"max grew in <b>{facts['grew']}</b> of {rows} rows · every row's acc × α "
                 f"({facts['multiplies_so_far']} row rescales so far, {facts['grew_so_far']} with α < 1)")
    order = "one program walks every tile · " if c.loop_order == "fa1" else ""
    return (f"<div style='font-size:1.2rem' id='attn-step-label'><b>Step {k + 1} of {n}</b> · {order}"
            f"Q<sub>{i}</sub> (rows {lo_r}–{lo_r + rows - 1}) meets K<sub>{j}</sub>, V<sub>{j}</sub> "
            f"(keys {lo_c}–{lo_c + trace.cols(j) - 1}) · {what}</div>")


export_at = ss.setdefault("attn.export_at", {})  # the step on screen, for the export buttons


def draw_step(k: int) -> None:
    n = grid.step_count(trace, follow)
    i, j, _ = fa.where(trace, follow, k)
    row = min(int(ss["attn.row"]), trace.rows(i) - 1)
    export_at.update(step=k, row=min(int(ss["attn.row"]), trace.rows(follow) - 1))
    dark = ss["app.dark"]
    urlstate.write(url_values(k, i, row))
    if ss["app.present"]:
        presenter_screen(n, k, i, j, row, dark)
    else:
        normal_screen(n, k, i, j, row, dark)


def url_values(k: int, i: int, row: int) -> dict:
    pos = {"q_block": follow, "row": i * c.block_m + row, "step": k + 1, "present": ss["app.present"] or None}
    if scene is not None and ss["attn.loaded"] is None:
        return {"scene": scene.name, **pos}
    if ss["attn.loaded"] is not None:
        return pos
    return {f: getattr(c, f) for f in urlstate.CONFIG} | pos


def chart(fig, key: str, dark: bool) -> None:
    st.plotly_chart(themed(fig, dark), width="stretch", key=key, theme=None,
                    config={"displaylogo": False, "toImageButtonOptions": {"scale": 3}})


def presenter_screen(n, k, i, j, row, dark):
    top = st.columns([2.2, 3.4], vertical_alignment="center")
    with top[0]:
        stepper("attn", n)
        stepping.exit_presenter("attn")
    top[1].markdown(step_label(n, k, i, j), unsafe_allow_html=True)
    a1, a2, a3 = st.columns([1.05, 1.9, 1.35])
    with a1:
        chart(grid.tile_grid_figure(trace, follow, k, height=300, title="tiles of S"), "attn.grid", dark)
    with a2:
        chart(fa.running_state_figure(trace, follow, k, row, height=280), "attn.ml", dark)
    with a3:
        chart(fa.alpha_figure(trace, follow, k, row, height=280), "attn.alpha", dark)
    b1, b2 = st.columns([1.3, 1])
    with b1, st.container(key="attn.eq"):
        st.markdown(f"**Row {i * c.block_m + row}**, this step, with the kernel's numbers")
        st.latex(fa.update_equations(trace, follow, k, row))
    with b2:
        chart(fa.accumulator_figure(trace, follow, k, row, height=250), "attn.acc", dark)


def normal_screen(n, k, i, j, row, dark):
    s1, s2 = st.columns([2.4, 3.6], vertical_alignment="center")
    with s1:
        stepper("attn", n)
    with s2:
        if n > 1:
            # keyed by the step and read back, no on_change: a stale slider (a press that arrived
            # mid-rerun) then has nothing to undo; only a slider the visitor moved differs from k + 1
            moved = st.slider("step", 1, n, value=k + 1, key=f"attn.step_w.{k}", label_visibility="collapsed")
            if moved != k + 1:
                ss["attn.step"], ss["attn.playing"] = moved - 1, False
                st.rerun(scope="fragment")
    st.markdown(step_label(n, k, i, j), unsafe_allow_html=True)
    g1, g2, g3 = st.columns([1.15, 1, 1])
    with g1:
        chart(grid.tile_grid_figure(trace, follow, k), "attn.grid", dark)
    with g2:
        chart(fa.tile_heatmap_figure(trace, follow, k, "s", row), "attn.s", dark)
    with g3:
        chart(fa.tile_heatmap_figure(trace, follow, k, "p", row), "attn.p", dark)
    st.caption("Solid outline: Q_i on chip; dotted: K_j, V_j streaming through. Tile numbers: the step at which "
               "the program computes the tile. Heatmap colours are fixed over all of this q-block's tiles; masked "
               "cells (s = −∞, p = 0) are grey; the white outline is the row you follow.")
    l1, l2 = st.columns([1.7, 1])
    with l1:
        chart(fa.running_state_figure(trace, follow, k, row), "attn.ml", dark)
    with l2:
        chart(fa.alpha_figure(trace, follow, k, row), "attn.alpha", dark)
    e1, e2 = st.columns([1.1, 1])
    with e1, st.container(key="attn.eq"):
        st.markdown(f"##### Row {i * c.block_m + row}: the update, with the kernel's numbers")
        st.latex(fa.update_equations(trace, follow, k, row))
    with e2:
        chart(fa.accumulator_figure(trace, follow, k, row), "attn.acc", dark)
        st.caption("FlashAttention-1 keeps O normalized in memory; its middle rows are derived from the trace."
                   if c.loop_order == "fa1" else
                   "acc stays unnormalized (FlashAttention-2). The middle rows are derived from the trace: α × acc "
                   "before, and what the kernel added, acc after − α × acc before. Colours fixed over all steps.")
    last = trace.steps(i)[-1] == j
    if last:
        out = fa.output_parts(trace, i, row)
        st.markdown(f"##### After Q<sub>{i}</sub>'s last tile: out = acc / ℓ, written once (ℓ = {out['l']:.5g})",
                    unsafe_allow_html=True)
        chart(fa.output_figure(trace, i, row), "attn.out", dark)
        st.caption(f"max |out − float64 reference| for this row: {out['err']:.2e} ({c.dtype} inputs; whole output: "
                   f"{trace.max_abs_err:.2e})")
    else:
        st.caption("After the q-block's last tile the kernel divides acc by ℓ once and writes out: step to the end.")


stepping.step_fragment("attn", grid.step_count(trace, follow), draw_step)

# ---------------------------------------------------------------- split-KV: the partial states and the merge
if c.kv_splits > 1 and not ss["app.present"]:
    st.markdown("#### Split-KV: each program's partial state, and the merge")
    split_row = follow * c.block_m + min(int(ss["attn.row"]), trace.rows(follow) - 1)
    parts = split.merge_parts(trace, split_row)
    st.plotly_chart(themed(split.partials_figure(trace, split_row), ss["app.dark"]), width="stretch",
                    key="attn.split", theme=None)
    st.latex(split.merge_equations(parts))
    st.caption(f"Row {split_row}: the merged row against the unsplit float64 reference: max |difference| "
               f"{parts['err_ref']:.2e}; the kernel's merged out against the formula on its own partials: "
               f"{parts['err_formula']:.2e}. The same merge combines the partial results of flash-decoding and of "
               "attention across several GPUs.")

# ---------------------------------------------------------------- memory accesses
if not ss["app.present"]:
    st.markdown("#### Memory accesses at this size")
    counts, count_note = None, None
    est = state.count_seconds(c.seq_len)
    if not state.count_allowed(c.seq_len):
        count_note = state.count_refusal(c.seq_len)
    elif est <= state.AUTO_COUNT_SECONDS or ss["attn.count_ok"] == c.fields():
        with st.spinner(f"Running the softmax kernels over the {c.seq_len} × {c.seq_len} scores with counting on…"):
            try:
                counts = state.softmax_counts(c.fields(), trace)
            except Exception as e:  # model only, and why
                count_note = f"The softmax kernels could not count here ({type(e).__name__}: {e}); model only."
    else:
        st.button(f"Count the softmax accesses with the kernels (about {est:.0f} s on this backend)",
                  key="attn.count", on_click=lambda: ss.update({"attn.count_ok": c.fields()}))
        count_note = "Softmax rows show the model until the kernels have counted them."
    measured = state.measured_bytes(c)
    rows = memory.memory_rows(trace, counts, measured)
    st.markdown(f"<div style='font-size:1.2rem'><b>{memory.flash_headline(rows)}</b> S and P "
                f"({2 * c.seq_len * c.seq_len:,} elements) never leave the chip.</div>", unsafe_allow_html=True)
    t1, t2 = st.columns([1.15, 1])
    t1.dataframe(memory.memory_table(rows, measured), hide_index=True, key="attn.mem_table", width="stretch",
                 placeholder="—", column_config={"equal?": st.column_config.TextColumn(width="small"),
                                                 **{k: st.column_config.NumberColumn(format="localized")
                                                    for k in ("model", "counted by the kernel")}})
    if count_note:
        t1.caption(count_note)
    t1.caption(memory.memory_note(c, rows, measured))
    with t2:
        st.plotly_chart(themed(memory.memory_figure(rows), ss["app.dark"]), width="stretch", key="attn.mem", theme=None)

    dram = state.dram_measurements()
    if dram is not None and measured is None:
        with st.expander(f"DRAM bytes measured on the {dram['env'].get('gpu', 'GPU')} (Nsight Compute), for the "
                         "configs it measured"):
            st.dataframe(memory.measured_cases_table(dram), hide_index=True, width="stretch", key="attn.dram")
            st.caption("Model: the elements the kernel loads and stores times the dtype's size; measured: "
                       "dram__bytes_read.sum + dram__bytes_write.sum, caches flushed before each kernel. The memory "
                       "table above adds this column when the config is one of these (N 4096 or 16384, head_dim "
                       "64, 64 x 64 blocks, float16). FlashAttention's K, V re-reads mostly hit the L2 cache, and O "
                       "can still sit in L2 when the kernel ends, so its measured bytes are a few percent of the "
                       "model; standard attention's S and P do not fit and reach DRAM.")
    st.caption(f"Ran on {trace.device} · the traced launch took {trace.seconds:.2f} s (compile included) · "
               f"max |out − float64 reference| = {trace.max_abs_err:.2e}" + (f" · {note}" if note else ""))
    with st.sidebar.expander("Export for slides"):
        export.download_buttons("attn", trace, follow, export_at)
        if scene is None and ss["attn.loaded"] is None:
            st.download_button("Trace file (.npz)", data=lambda: trace_io.to_bytes(trace),
                               file_name=f"trace_{c.seq_len}_{c.block_m}x{c.block_n}{'_causal' if c.causal else ''}.npz",
                               mime="application/octet-stream", key="attn.download")
