"""Start: what this app is, and the story of the source documents in order, each chapter a link
to the page (and the recorded scene) that tells it."""
import streamlit as st

from kernels import backend, scenes
from viz.controls import plain

ATTN, SOFTMAX, BWD, ORDERS, BENCH, RING = ("viz/pages/attention.py", "viz/pages/softmax.py", "viz/pages/backward.py",
                                           "viz/pages/orders.py", "viz/pages/benchmarks.py", "viz/pages/ring.py")
# (chapter, what it shows, page, scene names in the order a talk takes them)
STORY = (
    ("1 · Softmax three ways", "Naive softmax overflows; safe softmax reads the row three times; online softmax "
     "keeps a running max and sum and reads it twice.", SOFTMAX, ("softmax-overflow", "softmax-rescales")),
    ("2 · One q-block, tile by tile", "FlashAttention folds the second pass into P V: each K, V tile is read once "
     "per q-block, the running max, sum and accumulator rescaled as it goes.", ATTN,
     ("first-look", "every-step-rescales", "max-in-first-block", "scores-x100")),
    ("3 · Masks and edges", "Causal attention skips whole tiles and masks the diagonal ones; a ragged last "
     "block; bfloat16 at 4096.", ATTN, ("causal", "ragged", "bf16-long")),
    ("4 · FlashAttention-1 against FlashAttention-2", "The same tiles in both loop orders, stepping together: "
     "what each keeps on chip, and what each sends back to memory.", ORDERS, ("fa1-order",)),
    ("5 · Merging partial states", "Split-KV: each program's (m, ℓ, O) over part of the keys, merged; the "
     "merge of flash-decoding and of attention across GPUs.", ATTN, ("split-kv",)),
    ("6 · Beyond one GPU", "Ring attention: each rank keeps a shard of Q while the K/V shards go round the "
     "ring, and merges the kernel's partial states as split-KV does (recorded on CPU: four gloo processes).", RING,
     ("ring-zigzag", "ring-contiguous")),
    ("7 · The backward", "dS = P ∘ (dP − D): the softmax Jacobian never built, one kv-block's program at a time.",
     BWD, ("backward",)),
    ("8 · How fast", "The same kernel against PyTorch's FlashAttention-2 and cuDNN, measured on the H200.",
     BENCH, ()),
)

st.markdown("## FlashAttention, tile by tile")
st.markdown("Step through the tiles of a **real Triton FlashAttention kernel**: the running max, running sum "
            "and rescaled accumulator it computed, checked against float64, next to the memory accesses of "
            f"naive, safe and online softmax. Kernels here: **{backend.describe()}**"
            + ("" if backend.HAVE_TRITON else " — every scene below replays a trace a GPU recorded") + ".")
try:
    shipped, recorded = scenes.read_manifest()
except ValueError as e:
    st.error(f"The shipped scenes cannot be read: {plain(str(e))}")
    shipped, recorded = [], {}
by_name = {s.name: s for s in shipped}
if recorded:
    elsewhere = [s.name for s in shipped if s.recorded]  # scenes that say what recorded them
    st.caption(plain(f"Scenes recorded on {recorded.get('gpu')} (torch {recorded.get('torch')}, triton "
                     f"{recorded.get('triton')}, {recorded.get('date', '')[:10]})"
                     + (f", except {', '.join(elsewhere)}: each says where it was recorded." if elsewhere else "."))
               + " Keys on every stepping page: ← → "
               "(or a clicker's PgUp / PgDn) step, Space plays, P switches to presenter view.")
left, right = st.columns(2, gap="large")
for k, (title, what, page, names) in enumerate(STORY):
    with (left if k < 4 else right).container(border=True):
        st.markdown(f"**{title}**  \n{what}")
        links = [by_name[n] for n in names if n in by_name]
        for s in links:
            st.page_link(page, label=plain(s.title), icon=":material/play_circle:", query_params={"scene": s.name})
        if not links:
            st.page_link(page, label="open the page", icon=":material/arrow_forward:")
