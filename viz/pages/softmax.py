"""Softmax: naive, safe, online. One row through the real softmax kernels, pass by pass."""
import streamlit as st

from kernels import inputs, limits
from viz import state
from viz.figures import softmax as fsm

ss = st.session_state
BLOCKS = (16, 32, 64, 128, 256, 512, 1024)
DEFAULTS = {"sm.length": 64, "sm.block": 16, "sm.scenario": "randn", "sm.seed": 0, "sm.step": 0}
for key, value in DEFAULTS.items():
    ss.setdefault(key, value)


def _restart():
    ss["sm.step"] = 0


def _prev():
    ss["sm.step"] = max(0, ss["sm.step"] - 1)


def _next(n_steps: int):
    ss["sm.step"] = min(n_steps - 1, ss["sm.step"] + 1)


def _slider_moved():
    ss["sm.step"] = ss["sm.step_slider"] - 1


with st.sidebar:
    st.subheader("One row")
    persist = dict(persist_state="session", on_change=_restart)
    st.slider("row length", 1, 1024, key="sm.length", **persist)
    st.select_slider("chunk (BLOCK)", BLOCKS, key="sm.block", **persist,
                     help="columns each streaming kernel loads at a time")
    st.selectbox("input", limits.SCENARIOS, key="sm.scenario", **persist,
                 format_func=lambda s: f"{s}: {inputs.SOFTMAX_SCENARIO_HELP[s]}")
    st.number_input("seed", 0, 2**31 - 1, step=1, key="sm.seed", **persist)

length, block = int(ss["sm.length"]), int(ss["sm.block"])
scenario, seed = ss["sm.scenario"], int(ss["sm.seed"])

st.markdown("#### Softmax: naive, safe, online")
with st.spinner("Running the softmax kernels on this row…"):
    try:
        run = state.softmax_run(length, block, scenario, seed)
    except Exception as e:  # a kernel failure is shown, never a traceback
        st.error(f"The softmax kernels failed on this row: {type(e).__name__}: {e}")
        st.stop()

n = fsm.softmax_steps(length, block)
chunks = state.n_chunks(length, block)
ss["sm.step"] = min(ss["sm.step"], n - 1)
k = ss["sm.step"]
p, ch = fsm.pass_position(length, block, k)

b1, b2, s1 = st.columns([1, 1, 5], vertical_alignment="bottom")
b1.button("Prev", icon=":material/chevron_left:", key="sm.prev", on_click=_prev, shortcut="Left", disabled=k == 0,
          width="stretch")
b2.button("Next", icon=":material/chevron_right:", icon_position="right", key="sm.next", on_click=_next, args=(n,),
          shortcut="Right", disabled=k == n - 1, width="stretch")
with s1:
    ss["sm.step_slider"] = k + 1
    st.slider("step (one chunk read by each kernel)", 1, n, key="sm.step_slider", on_change=_slider_moved)
st.markdown(f"<div style='font-size:1.25rem' id='sm-step-label'><b>Step {k + 1} of {n}</b> · pass {p + 1}, "
            f"chunk {ch + 1} of {chunks} (elements {ch * block}–{min((ch + 1) * block, length) - 1}) · "
            f"{length} elements in chunks of {block}</div>", unsafe_allow_html=True)

for variant in fsm.PASSES:
    st.plotly_chart(fsm.softmax_passes_figure(variant, length, block, k), width="stretch",
                    key=f"sm.passes.{variant}", theme=None)
st.caption("Blue: read; green: read and y written; orange: the chunk on chip now; grey: still to come. "
           "Each kernel streams the row chunk by chunk, one pass after another, so safe needs a third pass.")

st.markdown("#### Online softmax: the running (m, d), chunk by chunk")
m, d = run["m"], run["d"]
rescales = fsm.online_rescales(m)
st.markdown(
    f"The online kernel wrote its running max m and sum d after each of its {chunks} chunks (TRACE on). "
    f"When a chunk holds a new max, d is multiplied by e<sup>m_old − m_new</sup> before the chunk is added: "
    f"**{len(rescales)} rescale{'s' if len(rescales) != 1 else ''}** on this row.", unsafe_allow_html=True)
o1, o2 = st.columns([1.5, 1])
o1.plotly_chart(fsm.online_state_figure(run["x"], m, d, block, ch if p == 0 else None, run["ref_m"], run["ref_d"]),
                width="stretch", key="sm.online", theme=None)
g5 = st.column_config.NumberColumn(format="%.5g")
o2.dataframe(fsm.online_table(m, d, run["ref_m"], run["ref_d"]), hide_index=True, key="sm.online_table",
             width="stretch", placeholder="", column_config={k: g5 for k in ("m", "d", "d ×", "m (f64)", "d (f64)")})
o2.caption("m, d: what the kernel wrote after each chunk. d ×: the rescale e^(m_old − m_new) where m grew. "
           "f64: the float64 reference (kernels/reference.py), as a check.")

st.markdown("#### Overflow: float16 input × 100")
over = state.overflow_run(length, block, seed)
st.markdown("The same kernels on a row of N(0, 1) × 100 in float16. Naive softmax sums e<sup>x</sup> "
            "without subtracting the max: e<sup>x</sup> overflows to inf once x > 88, and inf / inf is NaN. "
            "Safe and online subtract the max and stay finite.", unsafe_allow_html=True)
st.plotly_chart(fsm.overflow_figure(over["x"], over["outputs"], over["ref"]), width="stretch",
                key="sm.overflow", theme=None)

st.markdown("#### Accesses per element: model and counted")
st.dataframe(fsm.softmax_access_rows(length, run["counts"]), hide_index=True, key="sm.access", width="stretch",
             placeholder="—")
st.caption("Model: kernels/traffic.py. Counted: the kernels' own loads and stores on this row "
           "(softmax(..., return_counts=True)). single pass holds the whole row on chip: 1 read + 1 write.")
