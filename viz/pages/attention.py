"""FlashAttention tiles: step through the tiles of the real FlashAttention-2 kernel's trace."""
import streamlit as st

from kernels import backend, trace_io
from viz import controls, state
from viz.figures import attention as fa
from viz.figures import grid, memory

ss = st.session_state
PLAY_SECONDS = 1.0
CPU = backend.INTERPRET
DEFAULTS = {
    **controls.config_defaults("attn"),
    "attn.q_block": 3 if CPU else 8,
    "attn.row": 0,
    "attn.step": 0,  # 0-based step of the followed q-block; the step slider mirrors it
    "attn.playing": False,
    "attn.upload_n": 0,  # bumped to clear the file uploader
    "attn.loaded": None,  # {"name", "trace"} of a recorded trace being replayed
    "attn.load_error": None,
    "attn.count_ok": None,  # trace key for which the user asked for the (slow) softmax counts
}
for key, value in DEFAULTS.items():
    ss.setdefault(key, value)


# ---------------------------------------------------------------- callbacks
def _restart():
    ss["attn.step"] = 0
    ss["attn.playing"] = False


def _prev():
    ss["attn.step"] = max(0, ss["attn.step"] - 1)
    ss["attn.playing"] = False


def _next(n_steps: int):
    ss["attn.step"] = min(n_steps - 1, ss["attn.step"] + 1)
    ss["attn.playing"] = False


def _slider_moved():
    ss["attn.step"] = ss["attn.step_slider"] - 1
    ss["attn.playing"] = False


def _toggle_play(n_steps: int):
    if ss["attn.playing"]:
        ss["attn.playing"] = False
        return
    if ss["attn.step"] >= n_steps - 1:
        ss["attn.step"] = 0  # play again from the start
    ss["attn.playing"] = True


def _uploaded():
    f = ss.get(f"attn.upload.{ss['attn.upload_n']}")
    if f is None:
        return
    try:
        ss["attn.loaded"] = {"name": f.name, "trace": state.load_trace(f.getvalue(), f.name)}
        ss["attn.load_error"] = None
        _restart()
    except ValueError as e:
        ss["attn.load_error"] = str(e)


def _count_now(trace_key: tuple):
    ss["attn.count_ok"] = trace_key


def _back_to_live():
    ss["attn.loaded"] = None
    ss["attn.load_error"] = None
    ss["attn.upload_n"] += 1  # a fresh uploader: the old file is gone
    _restart()


# ---------------------------------------------------------------- sidebar: the config
loaded = ss["attn.loaded"]
with st.sidebar:
    controls.config_sidebar("attn", _restart, disabled=loaded is not None)

cfg_error = None
if loaded is None:
    cfg, cfg_error = controls.config_from_state("attn")
else:
    cfg = loaded["trace"].config

with st.sidebar:
    if cfg is not None:
        tq = cfg.n_q_blocks
        if ss["attn.q_block"] > tq - 1:
            ss["attn.q_block"] = tq - 1
        if tq > 1:
            st.slider("follow q-block", 0, tq - 1, key="attn.q_block", persist_state="session",
                      help="the program (one per q-block) whose tiles you step through")
        else:
            st.caption("one q-block: following q-block 0")
    with st.expander("Load a recorded trace (.npz)"):
        st.file_uploader("trace file", type=["npz"], key=f"attn.upload.{ss['attn.upload_n']}",
                         on_change=_uploaded, label_visibility="collapsed")
        if ss["attn.load_error"]:
            st.error(ss["attn.load_error"])
        if loaded is not None:
            st.button("Back to the live kernel", key="attn.back", on_click=_back_to_live)

# ---------------------------------------------------------------- header
st.markdown("#### FlashAttention-2, tile by tile")
if cfg_error:
    st.error(cfg_error)
    st.stop()
q_block = min(int(ss["attn.q_block"]), cfg.n_q_blocks - 1)

if loaded is not None:
    trace = loaded["trace"]
    st.info(f"Replaying **{loaded['name']}**, recorded on {trace.device}. The sidebar config is off until "
            f"you go back to the live kernel.", icon=":material/replay:")
    if trace.tile_slot(q_block) is None:
        kept = [int(i) for i in trace.tile_q_blocks]
        q_block = min(kept, key=lambda i: abs(i - q_block))
        st.warning(f"This recording kept the tiles of q-blocks {kept}; following q-block {q_block}.")
else:
    secs = state.capture_seconds(cfg)
    with st.spinner(f"Running the FlashAttention-2 kernel with TRACE on ({backend.describe()})"
                    + (f", about {secs:.0f} s…" if secs >= 2 else "…")):
        try:
            trace = state.trace_for(cfg, q_block)
        except Exception as e:  # a kernel failure is shown, never a traceback
            controls.show_kernel_failure(e)

c = trace.config
st.caption(
    f"{c.seq_len} × {c.seq_len} scores in {c.block_m} × {c.block_n} tiles "
    f"({c.n_q_blocks} × {c.n_kv_blocks}) · head_dim {c.head_dim} · {c.dtype} · "
    f"{'causal' if c.causal else 'no mask'} · input: {c.scenario} · one program per q-block streams K, V through"
)


# ---------------------------------------------------------------- stepping (a fragment: no full rerun)
def stepper(trace, q_block: int):
    playing = ss["attn.playing"]

    @st.fragment(run_every=PLAY_SECONDS if playing else None)
    def step_view():
        if ss["attn.playing"] != playing:
            st.rerun()  # whole app: start or stop the play timer
        n = grid.step_count(trace, q_block)
        rows = trace.rows(q_block)
        ss["attn.step"] = min(max(0, ss["attn.step"]), n - 1)
        if ss["attn.row"] > rows - 1:
            ss["attn.row"] = rows - 1
        if playing and ss["attn.playing"]:  # a tick of the play timer: one step forward
            ss["attn.step"] = min(n - 1, ss["attn.step"] + 1)
            if ss["attn.step"] >= n - 1:
                ss["attn.playing"] = False  # the next tick reruns the app without the timer
        k = ss["attn.step"]
        j = grid.kv_block(trace, q_block, k)

        b1, b2, b3, s1, s2 = st.columns([1, 1, 1, 2.8, 2.2], vertical_alignment="bottom")
        b1.button("Prev", icon=":material/chevron_left:", key="attn.prev", on_click=_prev, shortcut="Left",
                  disabled=k == 0, width="stretch")
        b2.button("Pause" if ss["attn.playing"] else "Play", key="attn.play", on_click=_toggle_play, args=(n,),
                  icon=":material/pause:" if ss["attn.playing"] else ":material/play_arrow:", type="primary",
                  shortcut="P", width="stretch")
        b3.button("Next", icon=":material/chevron_right:", icon_position="right", key="attn.next", on_click=_next,
                  args=(n,), shortcut="Right", disabled=k == n - 1, width="stretch")
        with s1:
            if n > 1:
                ss["attn.step_slider"] = k + 1
                st.slider("step", 1, n, key="attn.step_slider", on_change=_slider_moved)
            else:
                st.caption("this q-block computes a single tile")
        with s2:
            if rows > 1:
                st.slider("row of the q-block", 0, rows - 1, key="attn.row", persist_state="session",
                          help="the row whose numbers the equations and the accumulator show")
            else:
                st.caption("one row in this q-block")
        row = min(int(ss["attn.row"]), rows - 1)

        lo_r, hi_r = q_block * c.block_m, q_block * c.block_m + rows - 1
        lo_c, hi_c = j * c.block_n, min((j + 1) * c.block_n, c.seq_len) - 1
        grew = int(fa.rescaled_rows(trace, q_block, k).sum())
        st.markdown(
            f"<div style='font-size:1.2rem' id='attn-step-label'><b>Step {k + 1} of {n}</b> · "
            f"Q<sub>{q_block}</sub> (rows {lo_r}–{hi_r}) meets K<sub>{j}</sub>, V<sub>{j}</sub> "
            f"(cols {lo_c}–{hi_c}) · max grew in <b>{grew}</b> of {rows} rows · "
            f"<b>{fa.rescale_count(trace, q_block, k)}</b> rescales so far</div>",
            unsafe_allow_html=True,
        )

        g1, g2, g3 = st.columns([1.15, 1, 1])
        g1.plotly_chart(grid.tile_grid_figure(trace, q_block, k), width="stretch", key="attn.grid", theme=None)
        g2.plotly_chart(fa.tile_heatmap_figure(trace, q_block, k, "s", row), width="stretch", key="attn.s", theme=None)
        g3.plotly_chart(fa.tile_heatmap_figure(trace, q_block, k, "p", row), width="stretch", key="attn.p", theme=None)
        st.caption("Solid outline: Q_i on chip; dotted: K_j, V_j streaming through. Tile numbers: the step at which "
                   "this q-block's program computes the tile. Heatmap colors are fixed over all of this q-block's "
                   "tiles; grey cells are masked (−∞); the white outline is the selected row.")

        l1, l2 = st.columns([1.7, 1])
        l1.plotly_chart(fa.running_state_figure(trace, q_block, k, row), width="stretch", key="attn.ml", theme=None)
        l2.plotly_chart(fa.alpha_figure(trace, q_block, k, row), width="stretch", key="attn.alpha", theme=None)

        st.markdown(f"##### Row {lo_r + row} at this step: the update, with the kernel's numbers")
        st.latex(fa.update_equations(trace, q_block, k, row))
        st.plotly_chart(fa.accumulator_figure(trace, q_block, k, row), width="stretch", key="attn.acc", theme=None)
        st.caption("acc stays unnormalized (FlashAttention-2). p·V is what the kernel added at this step: "
                   "acc after − α × acc before, from the trace. Colors fixed over all steps of this row.")
        if k == n - 1:
            out = fa.output_parts(trace, q_block, row)
            st.markdown(f"##### After the last step: out = acc / ℓ, written once (ℓ = {out['l']:.5g})")
            st.plotly_chart(fa.output_figure(trace, q_block, row), width="stretch", key="attn.out", theme=None)
            st.caption(f"max |out − float64 reference| for this row: {out['err']:.2e} "
                       f"({c.dtype} inputs; whole output: {trace.max_abs_err:.2e})")
        else:
            st.caption("After the last step the kernel divides acc by ℓ once and writes out: step to the end to see it.")

    step_view()


stepper(trace, q_block)

# ---------------------------------------------------------------- memory accesses
st.markdown("#### Memory accesses at this size")
key = c.fields()
est = state.count_seconds(c.seq_len)
counts, count_note = None, None
if est <= state.AUTO_COUNT_SECONDS or ss["attn.count_ok"] == key:
    with st.spinner(f"Running the softmax kernels over the {c.seq_len} × {c.seq_len} scores with counting on…"):
        try:
            counts = state.softmax_counts(key, trace)
        except Exception as e:
            count_note = f"The softmax kernels could not run here ({type(e).__name__}: {e}); model only."
else:
    st.button(f"Count the softmax accesses with the kernels (about {est:.0f} s on this backend)",
              key="attn.count", on_click=_count_now, args=(key,))
    count_note = "Softmax rows show the model until the kernels have counted them."
rows = memory.memory_rows(trace, counts)
st.markdown(f"<div style='font-size:1.2rem'><b>{memory.flash_headline(rows)}</b> S and P "
            f"({2 * c.seq_len * c.seq_len:,} elements) never leave the chip.</div>", unsafe_allow_html=True)
t1, t2 = st.columns([1, 1.1])
num = st.column_config.NumberColumn(format="localized")
t1.dataframe(memory.memory_table(rows), hide_index=True, key="attn.mem_table", width="stretch", placeholder="—",
             column_config={"model": num, "counted by the kernel": num, "equal?": st.column_config.TextColumn(width="small")})
if count_note:
    t1.caption(count_note)
t1.caption("Elements loaded + stored (not bytes). Model: kernels/traffic.py. Counted: the kernels' own loads "
           "and stores; standard attention has no kernel here, so model only. Bars split loads and stores.")
t2.plotly_chart(memory.memory_figure(rows), width="stretch", key="attn.mem", theme=None)

# ---------------------------------------------------------------- where it ran
st.caption(f"Ran on **{trace.device}** · the traced launch took {trace.seconds:.2f} s (compile included) · "
           f"max |out − float64 reference| = {trace.max_abs_err:.2e}")
if loaded is None:
    with st.sidebar.expander("Save this trace (.npz)"):
        st.download_button("Download trace", data=lambda: trace_io.to_bytes(trace),
                           file_name=f"trace_{c.seq_len}_{c.block_m}x{c.block_n}{'_causal' if c.causal else ''}.npz",
                           mime="application/octet-stream", key="attn.download")
