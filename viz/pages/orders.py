"""FA1 vs FA2 loop order: the same config through both kernels, stepping together."""
import dataclasses

import streamlit as st

from kernels import backend, scenes, traffic
from viz import controls, sources, state, stepping, urlstate
from viz.figures import attention as fa
from viz.figures import orders as fo
from viz.figures.style import themed
from viz.stepper import stepper

ss = st.session_state
for key, value in {**controls.config_defaults("ord"), "ord.row_abs": 0, "ord.seq_len": 200 if backend.INTERPRET
                   else 256, "ord.causal": True}.items():
    ss.setdefault(key, value)
stepping.defaults("ord")
SPEC = {f: urlstate.CONFIG[f] for f in controls.CONFIG_FIELDS} | {k: urlstate.POSITION[k] for k in
                                                                  ("row", "step", "scene", "present")}


def scene_pairs() -> dict[str, tuple]:
    """{title: (fa2 scene, fa1 scene)}: shipped scenes recorded with the same config in both orders."""
    try:
        shipped, _ = scenes.read_manifest()
    except ValueError:
        return {}
    traces = {}
    for s in shipped:
        if s.page == "attention":
            try:
                traces[s.name] = (s, state.scene_trace(s.name).config)
            except ValueError:
                continue
    pairs = {}
    for s1, c1 in traces.values():
        if c1.loop_order != "fa1":
            continue
        for s2, c2 in traces.values():
            if c2.loop_order == "fa2" and c2.kv_splits == 1 and dict(c2.fields()) | {"loop_order": "fa1"} == dict(c1.fields()):
                pairs[s1.name] = (s2, s1)
    return pairs


PAIRS = scene_pairs()
sources.arrive("ord", "orders", SPEC, controls.CONFIG_FIELDS, {"row": "ord.row_abs"},
               lambda name: {} if name in PAIRS else None)  # a pair opens at the URL's step, else the first

stepping.page_style()
st.html("<style>[class*='st-key-ord-eq'] .katex {font-size: %s !important}</style>"
        % ("1.08em" if ss["app.present"] else "0.98em"))
names = ([controls.LIVE] if controls.live_possible() else []) + list(PAIRS)
if not names:
    st.markdown("#### FlashAttention-1 against FlashAttention-2")
    st.info(controls.NO_TRITON + " No scene pair (the same config recorded in both orders) ships with this copy.")
    st.stop()
if ss.get("ord.source") not in names:
    ss["ord.source"] = names[0] if names else controls.LIVE
with st.sidebar:
    st.selectbox("Scenes", names, key="ord.source", on_change=lambda: stepping.restart("ord"), persist_state="session",
                 format_func=lambda n: n if n == controls.LIVE else PAIRS[n][1].title.replace("'s loop order", "")
                 + " + FA2, recorded")
    if not controls.live_possible():
        st.caption(controls.NO_TRITON)
    live = ss["ord.source"] == controls.LIVE
    if live:
        with st.expander("Kernel config", expanded=True):
            controls.config_sidebar("ord", lambda: stepping.restart("ord"))

sources.show_url_problems("ord")
if live:
    cfg, err = controls.config_from_state("ord")
    if err:
        st.error(err)
        st.stop()
    cfg1 = dataclasses.replace(cfg, loop_order="fa1")
    with st.spinner(f"Running both kernels with TRACE on ({backend.describe()}){state.busy_note()}…"):
        try:
            t2, t1 = state.capture(cfg.fields()), state.capture(cfg1.fields())
        except Exception as e:  # a kernel failure is shown, never a traceback
            controls.show_kernel_failure(e)
else:
    s2, s1 = PAIRS[ss["ord.source"]]
    t2, t1 = state.scene_trace(s2.name), state.scene_trace(s1.name)
c = t2.config
if t2.tile_slot(0) is None or len(t2.tile_q_blocks) < c.n_q_blocks or len(t1.tile_q_blocks) < c.n_q_blocks:
    st.error("This comparison needs every tile of both traces; this config is too large for them: "
             "choose a shorter sequence or larger blocks.")
    st.stop()
n = len(fo.walk(t2))

with st.sidebar:
    row_abs = controls.follow_slider("row", "ord.row_abs", c.seq_len, help="the row whose updates both orders show")
    stepping.play_controls("ord")


def label(k: int) -> str:
    (i2, j2), (i1, j1) = fo.walk(t2)[k], fo.walk(t1)[k]
    return (f"<div style='font-size:1.15rem' id='ord-step-label'><b>Step {k + 1} of {n}</b> · the same "
            f"{c.n_q_blocks}×{c.n_kv_blocks} tiles in both orders · FA2 at Q<sub>{i2}</sub>K<sub>{j2}</sub>, "
            f"FA1 at Q<sub>{i1}</sub>K<sub>{j1}</sub> · following row {row_abs}</div>")


def side(trace, k: int, dark: bool, compact: bool) -> None:
    order = trace.config.loop_order
    i = row_abs // c.block_m
    r = row_abs - i * c.block_m
    st.plotly_chart(themed(fo.order_grid_figure(trace, k, height=250 if compact else 300), dark), width="stretch",
                    key=f"ord.grid.{order}", theme=None)
    so_far, total = fo.traffic_so_far(trace, k), fo.counted(trace)
    whole = "" if compact else (f" · whole run, counted by the kernel: {total['loads']:,} / {total['stores']:,}")
    st.markdown(f"<span style='font-size:1.05rem'>{(fo.ON_CHIP_SHORT if compact else fo.ON_CHIP)[order]}<br>moved "
                f"so far: <b>{so_far['loads']:,}</b> loads, <b>{so_far['stores']:,}</b> stores (derived from the "
                f"walk){whole}</span>", unsafe_allow_html=True)
    kk = fo.row_update(trace, k, i)
    with st.container(key=f"ord.eq.{order}"):
        if kk is None:
            st.markdown(f"Row {row_abs}'s q-block Q<sub>{i}</sub> is not reached yet.", unsafe_allow_html=True)
        else:
            st.latex(fa.update_equations(trace, i if order == "fa2" else 0, kk, r))
            if order == "fa1" and not compact:
                f = fo.fa1_forms(trace, kk, r)
                if not f["first"]:
                    st.latex(fo.fa1_forms_tex(f))


def draw(k: int) -> None:
    dark = ss["app.dark"]
    pos = {"row": row_abs, "step": k + 1, "present": ss["app.present"] or None}
    urlstate.write(({f: getattr(c, f) for f in controls.CONFIG_FIELDS} if live else {"scene": ss["ord.source"]})
                   | pos)
    top = st.columns([2.2, 3.4], vertical_alignment="center")
    with top[0]:
        stepper("ord", n)
        if ss["app.present"]:
            stepping.exit_presenter("ord")
    top[1].markdown(label(k), unsafe_allow_html=True)
    left, right = st.columns(2, gap="medium")
    for col, trace in ((left, t2), (right, t1)):
        with col:
            st.markdown(f"##### {fo.NAMES[trace.config.loop_order]}")
            side(trace, k, dark, ss["app.present"])


stepping.step_fragment("ord", n, draw)

if not ss["app.present"]:
    st.markdown("#### What the two orders move, whole run")
    rows = []
    for trace in (t2, t1):
        model = traffic.summed(trace.model_counters(), trace.config.counter_keys())
        got = fo.counted(trace)
        rows.append({"": fo.NAMES[trace.config.loop_order], "loads (model)": model["loads"],
                     "loads (counted by the kernel)": got["loads"], "stores (model)": model["stores"],
                     "stores (counted by the kernel)": got["stores"], "equal?": "✓" if got == model else "✗ differs",
                     "max |out − float64|": f"{trace.max_abs_err:.2e}"})
    st.dataframe(rows, hide_index=True, width="stretch", key="ord.table")
    st.caption("FA1 reads K and V once but moves Q, O, m and ℓ through memory at every tile; FA2 reads Q once and "
               "K, V once per q-block, and writes O once. FA1's update keeps O normalized: "
               "O⁽²⁾ = (ℓ₁/ℓ₂)·e^(m₁−m₂)·O⁽¹⁾ + P̃⁽²⁾V⁽²⁾. The FA2 review's line for it, copied from the FA2 paper, "
               "writes diag(ℓ₁/ℓ₂)⁻¹ and drops e^(m₁−m₂): the FA1 column shows both forms against the O the kernel "
               "wrote (P̃⁽²⁾V⁽²⁾ = pV/ℓ₂ from the kernel's own p, derived).")
    st.caption(f"FA2 traced on {t2.device}; FA1 traced on {t1.device}.")
