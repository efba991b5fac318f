"""Sections of the Ring attention page: its live config in the sidebar, one row's merge with its
numbers, every rank's state at the step, the load each rank carried and the check against float64.

Not for: the stepping (viz/pages/ring.py) or anything kernels/ computes (kernels/ring*.py).
"""
import numpy as np
import plotly.graph_objects as go
import streamlit as st

from kernels import backend, inputs, limits, ring_plan, ring_verify
from kernels.ring_plan import RingConfig
from viz import controls
from viz.figures import ring as fr
from viz.figures.style import BLUE, ORANGE, layout
from viz.sections import chart

FIRST_SCENE = "ring-zigzag"  # where the page opens: a scene, not four processes at first sight


def config_defaults() -> dict:
    """The live ring's first values: small in the interpreter."""
    cpu = backend.INTERPRET
    return {"world_size": 4, "seq_len": 256 if cpu else 4096, "head_dim": 32 if cpu else 64, "causal": True,
            "layout": "zigzag", "block_m": 16 if cpu else 64, "block_n": 16 if cpu else 64,
            "dtype": "float32" if cpu else "float16", "scenario": "randn", "seed": 0}


def config_sidebar(spec, on_change) -> None:
    """World size, layout, sequence, blocks, dtype and input of the live ring, under stable keys."""
    persist = dict(on_change=on_change, disabled=not controls.live_possible(), persist_state="session")
    c1, c2 = st.columns(2)
    c1.selectbox("ranks", list(range(ring_plan.MIN_WORLD, ring_plan.MAX_WORLD + 1)), key=spec.key("world_size"),
                 **persist, help="processes on this machine, one rank each")
    c2.selectbox("sharding", ring_plan.LAYOUTS, key=spec.key("layout"), **persist,
                 help="contiguous: rank r holds chunk r; zigzag: chunks r and 2P − 1 − r (balances the causal mask)")
    st.number_input("sequence length", 2, limits.max_seq_len(), step=8, key=spec.key("seq_len"), **persist,
                    help="a multiple of the ranks (contiguous) or of twice the ranks (zigzag): equal chunks")
    st.select_slider("head dim", limits.HEAD_DIMS, key=spec.key("head_dim"), **persist)
    c3, c4 = st.columns(2)
    c3.select_slider("block_m", limits.BLOCK_SIZES, key=spec.key("block_m"), **persist)
    c4.select_slider("block_n", limits.BLOCK_SIZES, key=spec.key("block_n"), **persist)
    c5, c6 = st.columns(2)
    c5.toggle("causal", key=spec.key("causal"), **persist)
    c6.selectbox("dtype", limits.dtypes(), key=spec.key("dtype"), **persist)
    st.selectbox("input", limits.SCENARIOS, key=spec.key("scenario"), **persist,
                 help="; ".join(f"{k}: {v}" for k, v in inputs.SCENARIO_HELP.items()))
    st.number_input("seed", 0, 2**31 - 1, step=1, key=spec.key("seed"), **persist)


def config_from_state(spec) -> RingConfig:
    g = spec.get
    return RingConfig(seq_len=int(g("seq_len")), head_dim=int(g("head_dim")), world_size=int(g("world_size")),
                      causal=bool(g("causal")), layout=g("layout"), block_m=int(g("block_m")),
                      block_n=int(g("block_n")), dtype=g("dtype"), scenario=g("scenario"), seed=int(g("seed")))


def step_label(trace, view, short: bool = False) -> str:
    """The step's label; short (presenter view): one line, without what every rank does."""
    c = trace.config
    t, p = view.step, c.world_size
    move = (f"while passing it on to rank {(view.rank + 1) % p}" if t < p - 1 else
            "the last step: nothing left to pass")
    if short:
        return (f"<div style='font-size:1.2rem' id='ring-step-label'><b>Step {t + 1} of {p}</b> · rank {view.rank} "
                f"(row {view.row}) holds rank {view.src}'s K/V, "
                + (f"passing it on to rank {(view.rank + 1) % p}" if t < p - 1 else "the last step") + "</div>")
    return (f"<div style='font-size:1.2rem' id='ring-step-label'><b>Step {t + 1} of {p}</b> · every rank runs the "
            f"kernel on its Q shard against the K/V shard it holds · rank {view.rank} (row {view.row}) holds rank "
            f"{view.src}'s, {move}</div>")


def merge(trace, view, compact: bool = False) -> None:
    """The row's partial states at this step and their merge into its running state, with the numbers."""
    cl = trace.config.chunk_len
    skipped = [p for p in view.parts if p.kind == ring_plan.SKIPPED]
    gone = ", ".join(f"K{p.chunk} (keys {p.chunk * cl}–{(p.chunk + 1) * cl - 1})" for p in skipped)
    if compact:
        st.markdown(f"**Row {view.row} on rank {view.rank}**, merged into its running state"
                    + (" · skipped (its future): " + ", ".join(f"K{p.chunk}" for p in skipped) if skipped else "")
                    + ("" if view.live else " · nothing to merge"))
    else:
        st.markdown(f"**Row {view.row} on rank {view.rank}**: the kernel's partial (m, ℓ, O) against each key chunk "
                    f"it holds, merged into the running state (the split-KV merge)")
        if skipped:
            st.caption(f"Skipped: {gone}; every key lies after row {view.row}, so the kernel never runs on it.")
        if not view.live:
            st.caption("Nothing to merge at this step: the state stays as it was.")
    st.latex(fr.merge_tex(view, compact))
    off = f"{abs(view.m - view.m64):.1e} and {abs(view.l - view.l64) / max(view.l64, 1e-30):.1e} relative"
    if not compact:  # the presenter's words below say the float64 M and L
        st.caption(f"float64 over the {len(view.keys)} keys row {view.row} has seen: M = {view.m64:.7g}, L = "
                   f"{view.l64:.7g} (from the trace's q and k); the ranks' float32 state differs by {off}.")
    if view.step == trace.config.world_size - 1 and not compact:
        final(trace, view)


def final(trace, view, compact: bool = False) -> None:
    """After the last step: the row's lse and out, against float64."""
    st.markdown(f"**After the last step** (row {view.row}): lse = M + log L" if compact else
                f"**After the last step**: row {view.row}'s out = O in {trace.config.dtype}")
    st.latex(fr.final_tex(trace, view, compact))


def ranks_table(spec, trace, step: int, local: int, compact: bool = False) -> None:
    rows = fr.ranks_rows(trace, step, local)
    if compact:
        rows = [{k: r[k] for k in ("rank", "holds K/V of", "pairs", "M after", "L after")} for r in rows]
    num = st.column_config.NumberColumn(format="%.5g")
    st.dataframe(rows, hide_index=True, width="stretch", key=spec.key(f"ranks.{int(compact)}"),
                 column_config={k: num for k in ("M after", "L after", "compute ms", "waited ms")})


def balance_figure(trace, height: int = 260) -> go.Figure:
    """Per rank over the whole ring: elements of K its kernel loaded (its own counter) and seconds
    it computed and waited: contiguous shards with a causal mask load rank P - 1 most."""
    c = trace.config
    ranks = [f"rank {r}" for r in range(c.world_size)]
    fig = go.Figure([go.Bar(x=ranks, y=trace.k_loads.sum(axis=1), name="K elements loaded", marker_color=BLUE,
                            offsetgroup=0, hovertemplate="%{x}: %{y} K elements<extra></extra>")])
    fig.add_trace(go.Bar(x=ranks, y=1e3 * trace.wait_seconds.sum(axis=1), name="ms waiting for a shard",
                         marker_color=ORANGE, yaxis="y2", offsetgroup=1,
                         hovertemplate="%{x}: %{y:.1f} ms waiting<extra></extra>"))
    fig.update_layout(barmode="group", yaxis=dict(title="K elements loaded"),
                      yaxis2=dict(title="ms waiting", overlaying="y", side="right", showgrid=False),
                      title=dict(text="each rank's load over the ring (the kernel's counter) and its wait", x=0,
                                 font=dict(size=15)))
    return layout(fig, height, t=44, legend=dict(orientation="h", y=-0.15, x=0))


def check(trace, key: str) -> None:
    """The whole output against float64, the load per rank, and what ran it."""
    c = trace.config
    st.markdown("##### The gathered output against float64")
    scale = max(1.0, float(np.abs(trace.ref_out).max()))
    lse_err = float(np.max(np.abs(trace.lse.astype(np.float64) - trace.ref_lse)))
    st.markdown(f"max |out − float64| over all {c.seq_len} rows = **{trace.max_abs_err:.2e}** (a {c.dtype} ring stays "
                f"within {ring_verify.bound(c) * scale:.1e}: the single-device kernel's bound plus the float32 rounding "
                f"of {c.world_size} merges); max |lse − float64| = {lse_err:.1e}.")
    chart(balance_figure(trace), key)
    sent = int(trace.sent_bytes.sum())
    st.caption(f"{c.world_size} ranks · {c.layout} shards of {c.rows_per_rank} rows ({c.chunks_per_rank} chunk"
               f"{'s' * (c.chunks_per_rank > 1)} of {c.chunk_len}) · {'causal' if c.causal else 'no mask'} · "
               f"{c.head_dim}-dim heads · {c.block_m} × {c.block_n} kernel blocks · {sent} bytes sent over the ring. "
               f"Ran on {controls.plain(trace.device)} · {controls.plain(trace.transport)}.")
