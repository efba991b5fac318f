"""Backward: the FlashAttention-2 backward's dS = P ∘ (dP − D), one row two ways, and the dK/dV
kernel tile by tile."""
import numpy as np
import streamlit as st

from kernels import backend
from viz import controls, sources, state, stepping, urlstate
from viz.figures import backward as fb
from viz.figures import grid, memory
from viz.figures.style import themed
from viz.stepper import stepper

ss = st.session_state
for key, value in {**controls.config_defaults("bwd"), "bwd.kv_block": 0, "bwd.row": 0}.items():
    ss.setdefault(key, value)
sources.defaults("bwd")
BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
# a scene opens at its kv-block's program, at its query row, at its step
opening = sources.scene_opening("backward", lambda s: {"bwd.kv_block": s.follow, "bwd.row": s.row,
                                                      "bwd.step": s.step - 1})
sources.arrive("bwd", "backward", {f: urlstate.CONFIG[f] for f in controls.CONFIG_FIELDS} | {
    k: urlstate.POSITION[k] for k in ("kv_block", "row", "step", "scene", "present")}, controls.CONFIG_FIELDS,
    {"kv_block": "bwd.kv_block", "row": "bwd.row"}, opening)
_new_source, _uploaded, _back_to_source = sources.callbacks("bwd", "backward", opening)


def _restart():
    stepping.restart("bwd")


stepping.page_style()
with st.sidebar:
    scene = controls.source_picker("bwd", "backward", _new_source)
    follow_box = st.container()  # the followed kv-block, above the config: in view at 720 px
    if scene is not None and ss["bwd.loaded"] is None:
        sources.scene_info(scene)
    if scene is None and ss["bwd.loaded"] is None:
        with st.expander("Kernel config", expanded=True):
            controls.config_sidebar("bwd", _restart, seed_help="q, k, v and dO",
                                    block_help=("rows of Q, dO per tile: what streams past each kv-block's program",
                                                "rows of K, V per tile: one program per kv-block"))

sources.show_url_problems("bwd")
trace, note = None, None
if ss["bwd.loaded"] is not None:
    trace = ss["bwd.loaded"]["trace"]
    note = f"replaying the file {ss['bwd.loaded']['name']}"
elif scene is not None:
    try:
        trace = state.scene_trace(scene.name)
        note = f"scene {scene.name}"
    except ValueError as e:
        st.error(f"The scene {scene.name} cannot be read: {e}")
        st.stop()
else:
    cfg, cfg_error = controls.config_from_state("bwd")
    if cfg_error:
        st.markdown("#### Backward: dS = P ∘ (dP − D), no N × N Jacobian")
        st.error(cfg_error)
        st.stop()
    kv = min(int(ss["bwd.kv_block"]), cfg.n_kv_blocks - 1)
    secs = state.backward_capture_seconds(cfg)
    with st.spinner(f"Running the FlashAttention-2 forward, then the backward with TRACE on ({backend.describe()})"
                    + state.busy_note() + (f", about {secs:.0f} s…" if secs >= 2 else "…")):
        try:
            trace = state.backward_trace_for(cfg, kv)
        except Exception as e:  # a kernel failure is shown, never a traceback
            controls.show_kernel_failure(e)
c = trace.config
n = c.seq_len

with follow_box:
    kv_block = controls.follow_slider("follow kv-block", "bwd.kv_block", c.n_kv_blocks, on_change=_restart,
                                      help="the dK/dV program (one per kv-block) whose tiles you step through")
    if trace.tile_slot(kv_block) is None:
        kept = [int(j) for j in trace.tile_kv_blocks]
        kv_block = min(kept, key=lambda j: abs(j - kv_block))
        st.caption(f"This recording kept the tiles of kv-blocks {kept}: following kv-block {kv_block}.")
with st.sidebar:
    stepping.play_controls("bwd")
    sources.upload_box("bwd", "backward", _uploaded, _back_to_source)
steps = grid.bwd_step_count(trace, kv_block)


def row_now() -> int:
    return min(max(0, int(ss["bwd.row"])), n - 1)


def step_label(k: int) -> str:
    i = grid.bwd_q_block(trace, kv_block, k)
    lo_c, hi_c = kv_block * c.block_n, kv_block * c.block_n + trace.cols(kv_block) - 1
    lo_r, hi_r = i * c.block_m, i * c.block_m + trace.rows(i) - 1
    return (f"<div style='font-size:1.2rem' id='bwd-step-label'><b>Step {k + 1} of {steps}</b> · "
            f"K<sub>{kv_block}</sub>, V<sub>{kv_block}</sub> (keys {lo_c}–{hi_c}) stay on chip · "
            f"Q<sub>{i}</sub>, dO<sub>{i}</sub>, lse, D (rows {lo_r}–{hi_r}) stream through</div>")


def chart(fig, key: str) -> None:
    st.plotly_chart(themed(fig, ss["app.dark"]), width="stretch", key=key, theme=None,
                    config={"displaylogo": False})


def url(k: int) -> None:
    pos = {"kv_block": kv_block, "row": row_now(), "step": k + 1, "present": ss["app.present"] or None}
    if ss["bwd.loaded"] is not None:
        urlstate.write(pos)
    elif scene is not None:
        urlstate.write({"scene": scene.name} | pos)
    else:
        urlstate.write({f: getattr(c, f) for f in controls.CONFIG_FIELDS} | pos)


def presenter(k: int) -> None:
    row = row_now()
    top = st.columns([2.2, 3.4], vertical_alignment="center")
    with top[0]:
        stepper("bwd", steps)
        stepping.exit_presenter("bwd")
    top[1].markdown(step_label(k), unsafe_allow_html=True)
    g1, g2, g3 = st.columns([1, 1, 1.5])
    with g1:
        chart(grid.bwd_tile_grid_figure(trace, kv_block, k, height=290), "bwd.grid")
    with g2:
        chart(fb.bwd_tile_heatmap_figure(trace, kv_block, k, "ds", row, height=290), "bwd.ds")
    with g3:
        chart(fb.bwd_acc_figure(trace, kv_block, k, height=270), "bwd.acc")
    parts = fb.backward_row_parts(trace, row)
    b1, b2 = st.columns([1.25, 1])
    with b1, st.container(key="bwd.eq"):
        st.markdown(f"**Row {row}, two ways:** the Jacobian needs {n}² numbers per row, P ∘ (dP − D) one")
        st.latex(fb.row_forms_tex(parts, row))
    with b2:
        chart(fb.row_forms_figure(parts, height=240), "bwd.rowfig")


def normal(k: int) -> None:
    row = row_now()
    i = grid.bwd_q_block(trace, kv_block, k)
    s1, s2 = st.columns([2.4, 3.6], vertical_alignment="center")
    with s1:
        stepper("bwd", steps)
    with s2:
        if steps > 1:
            # keyed by the step and read back, no on_change: a stale slider (a press that arrived
            # mid-rerun) then has nothing to undo; only a slider the visitor moved differs from k + 1
            moved = st.slider("step", 1, steps, value=k + 1, key=f"bwd.step_w.{k}", label_visibility="collapsed")
            if moved != k + 1:
                ss["bwd.step"], ss["bwd.playing"] = moved - 1, False
                st.rerun(scope="fragment")
    st.markdown(step_label(k), unsafe_allow_html=True)
    g1, g2, g3, g4 = st.columns([1.15, 1, 1, 1])
    with g1:
        chart(grid.bwd_tile_grid_figure(trace, kv_block, k), "bwd.grid")
    for col, name in ((g2, "p"), (g3, "dp"), (g4, "ds")):
        with col:
            chart(fb.bwd_tile_heatmap_figure(trace, kv_block, k, name, row if i * c.block_m <= row else None),
                  f"bwd.{name}")
    st.caption("Solid outline: K_j, V_j on chip (one program per kv-block); dotted: the q-block streaming through. "
               "Heatmap colours are fixed over this program's steps, clipped at the 99th percentile (hover for "
               "every value); grey cells are masked; the outlined row is the query row of the section above.")
    a1, a2 = st.columns([1, 1.6])
    with a1:
        chart(fb.delta_figure(trace, kv_block, k), "bwd.delta")
    with a2:
        chart(fb.bwd_acc_figure(trace, kv_block, k), "bwd.acc")
    st.caption("D comes from the preprocess kernel, one number per row. The accumulators stay on chip across the "
               "steps and are written once, after the last one, as this kv-block's rows of dK and dV.")


def draw(k: int) -> None:
    url(k)
    (presenter if ss["app.present"] else normal)(k)


if not ss["app.present"]:
    st.markdown("#### Backward: dS = P ∘ (dP − D), no N × N Jacobian")
    st.caption(f"{n} × {n} scores in {c.block_m} × {c.block_n} tiles ({c.n_q_blocks} × {c.n_kv_blocks}) · head_dim "
               f"{c.head_dim} · {c.dtype} · {'causal' if c.causal else 'no mask'} · input: {c.scenario} · "
               "dO ~ N(0, 1) · the forward stored O and lse; the backward recomputes P from lse, tile by tile")

    @st.fragment
    def row_section():  # its own fragment: moving the row reruns only this
        st.markdown("##### One row of the softmax backward, two ways")
        r1, r2 = st.columns([1, 2.1])
        with r1:
            row = controls.follow_slider("query row", "bwd.row", n, help="the row of P whose backward is shown")
            parts = fb.backward_row_parts(trace, row)
            per = BYTES.get(c.dtype, 4)
            st.latex(r"dS = \underbrace{(\mathrm{diag}(P) - P P^\top)}_{N \times N}\, dP")
            st.markdown(f"needs **{memory.elements_text(n * n, per, c.dtype)}** per row")
            st.latex(r"dS = P \circ (dP - \underbrace{D}_{1})")
            st.markdown(f"needs **{memory.elements_text(n, per, c.dtype)}** per row, plus one number D",
                        help="D = rowsum(dO ∘ O) from the preprocess kernel: N numbers for the whole matrix")
        with r2:
            chart(fb.backward_row_figure(parts, row), "bwd.rowfig")
        num = st.column_config.NumberColumn(format="%.6g")
        st.dataframe(fb.backward_row_table(parts), hide_index=True, key="bwd.row_table", width="stretch",
                     column_config={k: num for k in ("P", "dP", "(diag(P) − P Pᵀ) dP", "P ∘ (dP − D)", "difference")})
        where = ("P, dP (as the kernel computed it, masked keys included) and P ∘ (dP − D) are the kernel's own "
                 "tiles; the Jacobian form is computed here from them (float64)." if parts["source"] == "kernel" else
                 "This trace kept the tiles of only some kv-blocks, so this row's P and dP are recomputed in float64; "
                 "D is the kernel's.")
        st.caption(f"Row {row}: max |difference| over its {parts['keys'].size} keys = **{parts['max_diff']:.2e}**. "
                   f"D from the preprocess kernel = {parts['d']:.6g}; P · dP = {parts['d_pdp']:.6g}. {where}")

    row_section()
    st.markdown("##### The dK/dV kernel, tile by tile")

stepping.step_fragment("bwd", steps, draw)

if not ss["app.present"]:
    st.markdown("##### The source's worked example: P = [0.1, 0.5, 0.4]")
    pc, dc = st.columns(3), st.columns(3)
    p_in = [pc[j].number_input(f"P[{j}]", 0.0, 1.0, fb.EXAMPLE_P[j], step=0.05, format="%.4f", key=f"bwd.ex_p{j}")
            for j in range(3)]
    dp_in = [dc[j].number_input(f"dP[{j}] = {'abc'[j]}", -1e6, 1e6, fb.EXAMPLE_DP[j], step=0.5, key=f"bwd.ex_dp{j}")
             for j in range(3)]
    with st.container():
        try:
            kernel = state.softmax_backward_example(tuple(p_in), tuple(dp_in))
            ex = fb.example_parts(p_in, dp_in, kernel)
        except ValueError as e:
            st.error(str(e))
        else:
            for block in fb.example_tex(ex):
                st.latex(block)
            st.latex(rf"D = P^\top dP = {ex['d']:.6g},\qquad P \circ (dP - D) = "
                     rf"[{', '.join(f'{v:.6g}' for v in ex['ds_d'])}]")
            if "ds_kernel" in ex:
                st.markdown(f"The softmax-backward kernel (kernels/softmax_bwd.py) on this row: dS = "
                            f"[{', '.join(f'{v:.6g}' for v in ex['ds_kernel'])}], D = {ex['d_kernel']:.6g}; "
                            f"max |kernel − Jacobian form| = {np.max(np.abs(ex['ds_kernel'] - ex['ds_jacobian'])):.1e} "
                            "(float32).")
            else:
                st.caption("Triton is not installed here: both forms above are float64, no kernel ran.")
            st.caption("The post writes the third entry of J dP as −0.04a − 0.2b − 0.24c: a sign slip. "
                       "J's last row is (−0.04, −0.2, 0.24), so it is −0.04a − 0.2b + 0.24c, as above.")

    st.markdown("##### Memory traffic of the backward")
    rows = memory.bwd_memory_rows(trace)
    st.markdown(f"<div style='font-size:1.2rem'><b>{memory.bwd_headline(rows, n)}</b></div>", unsafe_allow_html=True)
    t1, t2 = st.columns([1.1, 1])
    count = st.column_config.NumberColumn(format="localized")
    t1.dataframe(memory.memory_table(rows), hide_index=True, key="bwd.mem_table", width="stretch", placeholder="—",
                 column_config={"model": count, "counted by the kernel": count,
                                "equal?": st.column_config.TextColumn(width="small")})
    t1.caption("Elements loaded + stored (logical counts, not bytes that reached DRAM). Model: kernels/traffic.py. "
               "Counted: the three backward kernels' own loads and stores (COUNT on); the standard backward has no "
               "kernel here, so model only.")
    with t2:
        chart(memory.memory_figure(rows), "bwd.mem")
    errs = trace.max_abs_errs()
    st.caption(f"Ran on **{trace.device}** ({note or 'live'}) · the traced backward took {trace.seconds:.2f} s "
               f"(compile included) · max |kernel − float64|: dQ {errs['dq']:.1e}, dK {errs['dk']:.1e}, "
               f"dV {errs['dv']:.1e}, D {errs['delta']:.1e}")
