"""Backward: the FlashAttention-2 backward's dS = P ∘ (dP − D), one row and tile by tile."""
import streamlit as st

from kernels import backend
from viz import controls, state
from viz.figures import backward as fb
from viz.figures import grid, memory

ss = st.session_state
CPU = backend.INTERPRET
DEFAULTS = {
    **controls.config_defaults("bwd"),
    "bwd.kv_block": 0,
    "bwd.row": 0,  # a query row of the whole matrix
    "bwd.step": 0,  # 0-based step of the followed kv-block's program; the step slider mirrors it
}
for key, value in DEFAULTS.items():
    ss.setdefault(key, value)


# ---------------------------------------------------------------- callbacks
def _restart():
    ss["bwd.step"] = 0


def _prev():
    ss["bwd.step"] = max(0, ss["bwd.step"] - 1)


def _next(n_steps: int):
    ss["bwd.step"] = min(n_steps - 1, ss["bwd.step"] + 1)


def _slider_moved():
    ss["bwd.step"] = ss["bwd.step_slider"] - 1


# ---------------------------------------------------------------- sidebar: the config
with st.sidebar:
    controls.config_sidebar("bwd", _restart, seed_help="q, k, v and dO",
                            block_help=("rows of Q, dO per tile: what streams past each kv-block's program",
                                        "rows of K, V per tile: one program per kv-block"))
cfg, cfg_error = controls.config_from_state("bwd")

with st.sidebar:
    if cfg is not None:
        tk = cfg.n_kv_blocks
        if ss["bwd.kv_block"] > tk - 1:
            ss["bwd.kv_block"] = tk - 1
        if tk > 1:
            st.slider("follow kv-block", 0, tk - 1, key="bwd.kv_block", persist_state="session", on_change=_restart,
                      help="the dK/dV program (one per kv-block) whose tiles you step through")
        else:
            st.caption("one kv-block: following kv-block 0")

# ---------------------------------------------------------------- header
st.markdown("#### Backward: dS = P ∘ (dP − D), no N × N Jacobian")
if cfg_error:
    st.error(cfg_error)
    st.stop()
kv_block = min(int(ss["bwd.kv_block"]), cfg.n_kv_blocks - 1)
secs = state.backward_capture_seconds(cfg)
with st.spinner(f"Running the FlashAttention-2 forward, then the backward with TRACE on ({backend.describe()})"
                + (f", about {secs:.0f} s…" if secs >= 2 else "…")):
    try:
        trace = state.backward_trace_for(cfg, kv_block)
    except Exception as e:  # a kernel failure is shown, never a traceback
        controls.show_kernel_failure(e)

c = trace.config
n = c.seq_len
st.caption(
    f"{n} × {n} scores in {c.block_m} × {c.block_n} tiles ({c.n_q_blocks} × {c.n_kv_blocks}) · head_dim "
    f"{c.head_dim} · {c.dtype} · {'causal' if c.causal else 'no mask'} · input: {c.scenario} · dO ~ N(0, 1) · "
    f"the forward stored O and lse; the backward recomputes P from lse, tile by tile"
)

# ---------------------------------------------------------------- one row, two ways
st.markdown("##### One row of the softmax backward, two ways")
if ss["bwd.row"] > n - 1:
    ss["bwd.row"] = n - 1
r1, r2 = st.columns([1, 2.1])
with r1:
    if n > 1:
        st.slider("query row", 0, n - 1, key="bwd.row", persist_state="session",
                  help="the row of P whose softmax backward is shown both ways")
    else:
        st.caption("one query row: row 0")
    row = min(int(ss["bwd.row"]), n - 1)
    parts = fb.backward_row_parts(trace, row)
    st.latex(r"dS = \underbrace{(\mathrm{diag}(P) - P P^\top)}_{N \times N}\, dP")
    st.markdown(f"needs **{memory.elements_text(n * n)}** per row", help="the Jacobian of one row's softmax")
    st.latex(r"dS = P \circ (dP - \underbrace{D}_{1})")
    st.markdown(f"needs **{memory.elements_text(n)}** per row, plus one number D",
                help="D = rowsum(dO ∘ O) comes from the preprocess kernel: N numbers for the whole matrix")
with r2:
    st.plotly_chart(fb.backward_row_figure(parts, row), width="stretch", key="bwd.rowfig", theme=None)
num = st.column_config.NumberColumn(format="%.6g")
st.dataframe(fb.backward_row_table(parts), hide_index=True, key="bwd.row_table", width="stretch",
             column_config={k: num for k in ("P", "dP", "(diag(P) − P Pᵀ) dP", "P ∘ (dP − D)", "difference")})
where = ("P, dP and P ∘ (dP − D) are the kernel's own tiles; the Jacobian form is computed here from them "
         "(float64)." if parts["source"] == "kernel" else
         "This trace kept the tiles of only some kv-blocks, so this row's P and dP are recomputed in float64; "
         "D is the kernel's.")
st.caption(f"Row {row}: max |difference| over all {n} entries = **{parts['max_diff']:.2e}**. D from the "
           f"preprocess kernel = {parts['d']:.6g}; P · dP = {parts['d_pdp']:.6g}. {where} For all {n} rows the "
           f"Jacobians would take {memory.elements_text(n ** 3)}.")


# ---------------------------------------------------------------- the dK/dV loop, step by step
@st.fragment
def step_view():
    steps = grid.bwd_step_count(trace, kv_block)
    ss["bwd.step"] = min(max(0, ss["bwd.step"]), steps - 1)
    k = ss["bwd.step"]
    i = grid.bwd_q_block(trace, kv_block, k)
    st.markdown("##### The dK/dV kernel, tile by tile")
    b1, b2, s1 = st.columns([1, 1, 5], vertical_alignment="bottom")
    b1.button("Prev", icon=":material/chevron_left:", key="bwd.prev", on_click=_prev, shortcut="Left",
              disabled=k == 0, width="stretch")
    b2.button("Next", icon=":material/chevron_right:", icon_position="right", key="bwd.next", on_click=_next,
              args=(steps,), shortcut="Right", disabled=k == steps - 1, width="stretch")
    with s1:
        if steps > 1:
            ss["bwd.step_slider"] = k + 1
            st.slider("step (one q-block through this kv-block's program)", 1, steps, key="bwd.step_slider",
                      on_change=_slider_moved)
        else:
            st.caption("this kv-block's program visits a single q-block")
    lo_c, hi_c = kv_block * c.block_n, kv_block * c.block_n + trace.cols(kv_block) - 1
    lo_r, hi_r = i * c.block_m, i * c.block_m + trace.rows(i) - 1
    st.markdown(
        f"<div style='font-size:1.2rem' id='bwd-step-label'><b>Step {k + 1} of {steps}</b> · "
        f"K<sub>{kv_block}</sub>, V<sub>{kv_block}</sub> (rows {lo_c}–{hi_c}) stay on chip · "
        f"Q<sub>{i}</sub>, dO<sub>{i}</sub>, lse, D (rows {lo_r}–{hi_r}) stream through</div>",
        unsafe_allow_html=True,
    )
    g1, g2, g3, g4 = st.columns([1.15, 1, 1, 1])
    g1.plotly_chart(grid.bwd_tile_grid_figure(trace, kv_block, k), width="stretch", key="bwd.grid", theme=None)
    for col, name in ((g2, "p"), (g3, "dp"), (g4, "ds")):
        col.plotly_chart(fb.bwd_tile_heatmap_figure(trace, kv_block, k, name, row), width="stretch",
                         key=f"bwd.{name}", theme=None)
    st.caption("Solid outline: K_j, V_j on chip (one program per kv-block); dotted: the q-block streaming through. "
               "Tile numbers: the step at which this program computes the tile. Heatmap colors are fixed over all of "
               "this program's steps; grey cells are masked; the outlined row is the query row above.")
    a1, a2 = st.columns([1, 1.6])
    a1.plotly_chart(fb.delta_figure(trace, kv_block, k), width="stretch", key="bwd.delta", theme=None)
    a2.plotly_chart(fb.bwd_acc_figure(trace, kv_block, k), width="stretch", key="bwd.acc", theme=None)
    st.caption("D comes from the preprocess kernel, one number per row. The accumulators stay on chip across the "
               "steps and are written once, after the last one, as this kv-block's rows of dK and dV.")


step_view()

# ---------------------------------------------------------------- memory traffic
st.markdown("##### Memory traffic of the backward")
rows = memory.bwd_memory_rows(trace)
st.markdown(f"<div style='font-size:1.2rem'><b>{memory.bwd_headline(rows, n)}</b></div>", unsafe_allow_html=True)
t1, t2 = st.columns([1.1, 1])
count = st.column_config.NumberColumn(format="localized")
t1.dataframe(memory.memory_table(rows), hide_index=True, key="bwd.mem_table", width="stretch", placeholder="—",
             column_config={"model": count, "counted by the kernel": count,
                            "equal?": st.column_config.TextColumn(width="small")})
t1.caption("Elements loaded + stored (not bytes). Model: kernels/traffic.py. Counted: the three backward kernels' "
           "own loads and stores (COUNT on); the standard backward has no kernel here, so model only.")
t2.plotly_chart(memory.memory_figure(rows), width="stretch", key="bwd.mem", theme=None)

errs = trace.max_abs_errs()
st.caption(f"Ran on **{trace.device}** · the traced backward took {trace.seconds:.2f} s (compile included) · "
           f"max |kernel − float64|: dQ {errs['dq']:.1e}, dK {errs['dk']:.1e}, dV {errs['dv']:.1e}, "
           f"D {errs['delta']:.1e}")
