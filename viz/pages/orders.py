"""FA1 vs FA2 loop order: the same config through both kernels, stepping together."""
import dataclasses

import streamlit as st

from kernels import backend, traffic
from viz import controls, page, screens, specs, state, stepping, talk, urlstate, words
from viz.figures import attention as fa
from viz.figures import orders as fo
from viz.sections import chart
from viz.stepping import PRESENT

ss = st.session_state
PAIRS = state.scene_pairs()  # {fa1 scene name: (fa2 scene, fa1 scene)}: one config recorded in both orders
SPEC = specs.ORDERS

page.defaults(SPEC)
page.arrive(SPEC, opening=lambda name: SPEC.keyed(step=0) if name in PAIRS else None)  # a pair opens at step 1
stepping.page_style()
st.html("<style>[class*='st-key-ord-eq'] .katex {font-size: %s !important}</style>"
        % ("26px" if ss[PRESENT] else "0.98em"))
names = ([controls.LIVE] if controls.live_possible() else []) + list(PAIRS)
if not names:
    st.markdown(f"#### {SPEC.title}")
    st.info(controls.NO_TRITON + " No scene pair (the same config recorded in both orders) ships with this copy.")
    st.stop()
if ss.get(SPEC.key("source")) not in names:
    ss[SPEC.key("source")] = names[0]
with st.sidebar:
    st.selectbox("Scenes", names, key=SPEC.key("source"), on_change=lambda: stepping.restart(SPEC.prefix),
                 persist_state="session", format_func=lambda n: n if n == controls.LIVE else
                 PAIRS[n][1].title.replace("'s loop order", "") + " + FA2, recorded")
    if not controls.live_possible():
        st.caption(controls.NO_TRITON)
    live = SPEC.get("source") == controls.LIVE
    if live:
        with st.expander("Kernel config", expanded=True):
            controls.config_sidebar(SPEC.prefix, lambda: stepping.restart(SPEC.prefix))
page.show_url_problems(SPEC)
if live:
    try:
        cfg = controls.config_from_state(SPEC.prefix)
    except ValueError as e:
        page.stop_with(SPEC, str(e))
    cfg1 = dataclasses.replace(cfg, loop_order="fa1")
    with st.spinner(f"Running both kernels with TRACE on ({backend.describe()}){state.busy_note()}…"):
        try:
            t2, t1 = state.capture(cfg.fields()), state.capture(cfg1.fields())
        except Exception as e:  # a kernel failure is shown, never a traceback
            controls.show_kernel_failure(e)
else:
    s2, s1 = PAIRS[SPEC.get("source")]
    t2, t1 = state.scene_trace(s2.name), state.scene_trace(s1.name)
c = t2.config
if len(t2.tile_q_blocks) < c.n_q_blocks or len(t1.tile_q_blocks) < c.n_q_blocks:
    page.stop_with(SPEC, "This comparison needs every tile of both traces; this config is too large for them: "
                         "choose a shorter sequence or larger blocks.")
W2, W1 = fo.walk(t2), fo.walk(t1)
n = len(W2)
HERE = None if live else talk.stop_of(SPEC.file, SPEC.get("source"))
with st.sidebar:
    row_abs = controls.follow_slider("row", SPEC.key("row_abs"), c.seq_len, help="the row whose updates both orders show")
    stepping.play_controls(SPEC.prefix)


def label(k: int) -> str:
    a, b = W2[k], W1[k]
    same = "" if ss[PRESENT] else f"the same {c.n_q_blocks}×{c.n_kv_blocks} tiles in both orders · "
    return (f"<div style='font-size:1.15rem' id='ord-step-label'><b>Step {k + 1} of {n}</b> · {same}FA2 at Q<sub>"
            f"{a.q_block}</sub>K<sub>{a.kv_block}</sub>, FA1 at Q<sub>{b.q_block}</sub>K<sub>{b.kv_block}</sub> · "
            f"following row {row_abs}</div>")


def side(trace, k: int, compact: bool) -> None:
    order = trace.config.loop_order
    i = row_abs // c.block_m
    r = row_abs - i * c.block_m
    chart(fo.order_grid_figure(trace, k, height=250 if compact else 300), SPEC.key(f"grid.{order}"))
    so_far, total = fo.traffic_so_far(trace, k), fo.counted(trace)
    whole = "" if compact else (f" · whole run, counted by the kernel: {total['loads']:,} / {total['stores']:,}")
    st.markdown(f"<span style='font-size:1.05rem'>{(fo.ON_CHIP_SHORT if compact else fo.ON_CHIP)[order]}<br>moved "
                f"so far: <b>{so_far['loads']:,}</b> loads, <b>{so_far['stores']:,}</b> stores (derived from the "
                f"walk){whole}</span>", unsafe_allow_html=True)
    step = fo.row_update(trace, k, i)
    with st.container(key=SPEC.key(f"eq.{order}")):
        if step is None:
            st.markdown(f"Row {row_abs}'s q-block Q<sub>{i}</sub> is not reached yet.", unsafe_allow_html=True)
        else:
            st.latex(fa.update_equations(trace, step, r, n_vec=1 if compact else 2, gap="0pt" if compact else "4pt",
                                         terse=compact))
            if order == "fa1" and not compact and not step.first:
                st.latex(fo.fa1_forms_tex(fo.fa1_forms(trace, step, r)))


def draw(k: int) -> None:
    urlstate.write(({f: getattr(c, f) for f in controls.CONFIG_FIELDS} if live else {"scene": SPEC.get("source")})
                   | {"row": row_abs, "step": k + 1, "present": ss[PRESENT] or None})
    page.step_header(SPEC, n, k, label(k), HERE)
    left, right = st.columns(2, gap="medium")
    for col, trace in ((left, t2), (right, t1)):
        with col:
            st.markdown(f"##### {fo.NAMES[trace.config.loop_order]}")
            side(trace, k, ss[PRESENT])
    screens.say(words.orders(t2, t1, k, W2, W1))


stepping.step_fragment(SPEC.prefix, n, draw, HERE)
if not ss[PRESENT]:
    st.markdown("#### What the two orders move, whole run")
    rows = []
    for trace in (t2, t1):
        model = traffic.summed(trace.model_counters(), trace.config.counter_keys())
        got = fo.counted(trace)
        rows.append({"": fo.NAMES[trace.config.loop_order], "loads (model)": model["loads"],
                     "loads (counted by the kernel)": got["loads"], "stores (model)": model["stores"],
                     "stores (counted by the kernel)": got["stores"], "equal?": "✓" if got == model else "✗ differs",
                     "max |out − float64|": f"{trace.max_abs_err:.2e}"})
    st.dataframe(rows, hide_index=True, width="stretch", key=SPEC.key("table"))
    st.caption("FA1 reads K and V once but moves Q, O, m and ℓ through memory at every tile; FA2 reads Q once and "
               "K, V once per q-block, and writes O once. FA1's update keeps O normalized: "
               "O⁽²⁾ = (ℓ₁/ℓ₂)·e^(m₁−m₂)·O⁽¹⁾ + P̃⁽²⁾V⁽²⁾. The FA2 review's line for it, copied from the FA2 paper, "
               "writes diag(ℓ₁/ℓ₂)⁻¹ and drops e^(m₁−m₂): the FA1 column shows both forms against the O the kernel "
               "wrote (P̃⁽²⁾V⁽²⁾ = pV/ℓ₂ from the kernel's own p, derived).")
    st.caption(f"FA2 traced on {controls.plain(t2.device)}; FA1 traced on {controls.plain(t1.device)}.")
