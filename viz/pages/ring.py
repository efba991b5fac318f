"""Ring attention: P ranks on torch.distributed, each keeping a shard of Q while the K/V shards go
round the ring; every rank merges the kernel's partial (m, ℓ, O) into its own state, one ring step
at a time, as split-KV merges its splits."""
import streamlit as st

from kernels import ring_trace
from viz import controls, page, ring_sections, screens, specs, stepping, urlstate, words
from viz.figures import ring as fr
from viz.sections import chart
from viz.stepping import PRESENT

ss = st.session_state
SPEC = specs.RING

src = page.resolve(SPEC)
HERE = src.stop()
config = src.trace.config if src.trace is not None else src.config
if config is not None:
    with src.follow_box:
        controls.follow_slider("follow row", SPEC.key("row"), config.seq_len,
                               help="the query row whose partial states and merge the equations show")
page.sidebar_end(SPEC)
page.stop_if_error(src)
trace = page.load(src)
c = trace.config
asked = min(max(0, int(SPEC.get("row"))), c.seq_len - 1)
row = trace.nearest_row(asked)
if row != asked:  # a large recording keeps O of some rows only
    st.caption(f"This recording kept the O of {len(trace.rows)} rows: following row {row}, the nearest to {asked}.")
rank, local = c.owner(row)


def draw(t: int) -> None:
    view = ring_trace.step_view(trace, t, row)
    urlstate.write(src.url({"row": row, "step": t + 1}))
    page.step_header(SPEC, c.world_size, t, ring_sections.step_label(trace, view, short=ss[PRESENT]), HERE)
    if ss[PRESENT]:
        g1, g2 = st.columns([1.2, 1])
        with g1:
            chart(fr.lanes_figure(trace, t, height=250), SPEC.key("lanes"))
        with g2:
            chart(fr.pairs_figure(trace, t, row, height=250), SPEC.key("pairs"))
        b1, b2 = st.columns([1.45, 1])
        with b1, st.container(key=SPEC.key("eq")):
            ring_sections.merge(trace, view, compact=True)
        with b2:
            ring_sections.ranks_table(SPEC, trace, t, local, compact=True)
            if t == c.world_size - 1:
                ring_sections.final(trace, view, compact=True)
        screens.say(words.ring(trace, t, row))
        return
    screens.say(words.ring(trace, t, row))
    g1, g2 = st.columns([1.25, 1])
    with g1:
        chart(fr.lanes_figure(trace, t), SPEC.key("lanes"))
    with g2:
        chart(fr.pairs_figure(trace, t, row), SPEC.key("pairs"))
    st.caption("Left: each rank's lane; the cell at a step names the K/V shard it holds there (KV₂: rank 2's) and "
               "how many of its (query chunk, key chunk) pairs the kernel computed, coloured by what it did; the "
               "arrows are this step's transfers, in flight while the kernel runs. Right: the sequence in chunks, each "
               "pair numbered with the step at which its query chunk's rank computes it; white triangles: the causal "
               "mask inside a diagonal pair; blank: every key in the future of every query, skipped.")
    with st.container(key=SPEC.key("eq")):
        ring_sections.merge(trace, view)
    st.markdown(f"**Every rank at step {t + 1}**, at its row {local} of {c.rows_per_rank} (row {row}'s place in "
                f"rank {rank}'s shard)")
    ring_sections.ranks_table(SPEC, trace, t, local)
    st.caption("partial m, ℓ: the kernel's own state after its last tile, one per key chunk it computed; M, L: the "
               "running state after the merge. K loaded: the kernel's own counter. Seconds are wall time.")


if not ss[PRESENT]:
    st.markdown(f"#### {SPEC.title}")
    st.caption(f"{c.seq_len} rows on {c.world_size} ranks ({c.layout} shards) · head_dim {c.head_dim} · {c.dtype} · "
               f"{'causal' if c.causal else 'no mask'} · ran on {controls.plain(trace.device)} · "
               f"{controls.plain(trace.transport)} · {controls.plain(src.note)}")
stepping.step_fragment(SPEC.prefix, c.world_size, draw, HERE)
if not ss[PRESENT]:
    ring_sections.check(trace, SPEC.key("balance"))
