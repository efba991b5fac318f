"""The sidebar the stepping pages share: where the trace comes from (a scene, the live kernel, a
file), the kernel config, and the block and row to follow; each page keeps its own keys
(`attn.*`, `bwd.*`) so the configs stay apart. Canonical values live in session_state under plain
keys; widgets whose range changes with the config are keyed by that range and copy back, so a
followed block never jumps when the sequence length or the blocks change.

Not for: anything that launches a kernel (viz/state.py) or draws a figure (viz/figures/).
"""
import re

import streamlit as st

from kernels import backend, inputs, limits, scenes
from kernels import trace as ktrace

CONFIG_FIELDS = ("seq_len", "head_dim", "block_m", "block_n", "causal", "dtype", "scenario", "seed")
LIVE = "Run the kernel live"
NO_TRITON = ("Triton is not installed here (it ships for Linux only), so the kernels cannot run: "
             "replay a scene recorded on a GPU, or load a trace file.")


def config_defaults() -> dict:
    """The config widgets' first values (session keys without the page's prefix): small on the CPU
    interpreter, larger on a GPU (float16 there: float32 compiles at ieee precision, which takes
    the first page ~10 s)."""
    return {"seq_len": 256 if backend.INTERPRET else 1024, "head_dim": 64, "block_m": 64, "block_n": 64,
            "causal": False, "dtype": "float32" if backend.INTERPRET else "float16", "scenario": "randn", "seed": 0,
            "loop_order": "fa2", "kv_splits": 1, **MASK_DEFAULTS}


MASK_FIELDS = ("window_left", "window_right", "documents", "group", "q_len")
MASK_DEFAULTS = {"window_left": -1, "window_right": -1, "documents": 1, "group": 1, "q_len": 0}


def live_possible() -> bool:
    return backend.HAVE_TRITON


def source_picker(prefix: str, page: str, on_change) -> scenes.Scene | None:
    """The Scenes control: a scene recorded on a GPU, or the live kernel. Returns the scene chosen."""
    ss = st.session_state
    try:
        shipped, recorded, notes = scenes.read_manifest_notes()
    except ValueError as e:
        st.error(f"The shipped scenes cannot be read: {plain(str(e))}")
        shipped, recorded, notes = [], {}, []
    for note in notes[:3]:
        st.caption(plain(note))
    mine = [s for s in shipped if s.page == page]
    names = ([LIVE] if live_possible() else []) + [s.name for s in mine]
    titles = {s.name: s.title for s in mine} | {LIVE: LIVE}
    key = f"{prefix}.source"
    if ss.get(key) not in names:
        ss[key] = names[0] if names else LIVE
    own = sorted({s.recorded for s in mine if s.recorded})  # scenes that say what recorded them
    if mine and all(s.recorded for s in mine):
        help_text = plain("Traces recorded on " + "; ".join(own) + ", replayed here")
    elif recorded:
        help_text = plain(f"Traces recorded on {recorded.get('gpu', 'a GPU')} with torch {recorded.get('torch', '?')}, "
                          f"triton {recorded.get('triton', '?')} ({recorded.get('date', '?')[:10]}), replayed here")
    else:
        help_text = "No scenes ship with this copy of the app."
    st.selectbox("Scenes", names, key=key, format_func=titles.get, on_change=on_change, persist_state="session",
                 help=help_text)
    if not live_possible():
        st.caption(NO_TRITON)
    return next((s for s in mine if s.name == ss[key]), None)


def config_sidebar(prefix: str, on_change, orders: bool = False, seed_help=None,
                   block_help=("rows of Q per tile", "rows of K, V per tile")) -> None:
    """Sequence length, head dim, blocks, causal, dtype, scenario and seed (and the loop order and
    split-KV for the forward), under stable keys."""
    ss = st.session_state
    persist = dict(on_change=on_change, disabled=not live_possible(), persist_state="session")
    st.slider("sequence length", 1, limits.max_seq_len(), key=f"{prefix}.seq_len", **persist,
              help=f"1 to {limits.max_seq_len()} on this backend" + (
                  f"; the interpreter runs at most {limits.MAX_TILES_CPU} tiles" if backend.INTERPRET else ""))
    st.select_slider("head dim", limits.HEAD_DIMS, key=f"{prefix}.head_dim", **persist)
    c1, c2 = st.columns(2)
    c1.select_slider("block_m", limits.BLOCK_SIZES, key=f"{prefix}.block_m", **persist, help=block_help[0])
    c2.select_slider("block_n", limits.BLOCK_SIZES, key=f"{prefix}.block_n", **persist, help=block_help[1])
    c3, c4 = st.columns(2)
    c3.toggle("causal", key=f"{prefix}.causal", **persist)
    if ss[f"{prefix}.dtype"] not in limits.dtypes():
        ss[f"{prefix}.dtype"] = limits.dtypes()[0]
    c4.selectbox("dtype", limits.dtypes(), key=f"{prefix}.dtype", **persist,
                 help="the dtypes this backend runs (the interpreter has no bfloat16)")
    st.selectbox("input", limits.SCENARIOS, key=f"{prefix}.scenario", **persist,
                 help="; ".join(f"{k}: {v}" for k, v in inputs.SCENARIO_HELP.items()))
    st.number_input("seed", 0, 2**31 - 1, step=1, key=f"{prefix}.seed", **persist, help=seed_help)
    if orders:
        c5, c6 = st.columns(2)
        c5.selectbox("loop order", limits.LOOP_ORDERS, key=f"{prefix}.loop_order", **persist,
                     format_func={"fa2": "FlashAttention-2", "fa1": "FlashAttention-1"}.get,
                     help="FA2: q-blocks outside, one program each; FA1: one program, kv-blocks outside, O, m, l "
                          "through memory")
        c6.number_input("kv splits", 1, limits.MAX_KV_SPLITS, step=1, key=f"{prefix}.kv_splits", **persist,
                        help="split-KV: each q-block's keys in this many programs, their (m, l, O) merged (FA2 only)")
        mask_sidebar(prefix, persist)


def mask_sidebar(prefix: str, persist: dict) -> None:
    """The masks as models run attention (FA2's order): a sliding window, packed documents, query
    heads per K/V head (GQA), decode's queries; -1 and 0 mean off."""
    st.caption("Masks and heads (FlashAttention-2's order): the tiles a mask leaves out are never loaded")
    m1, m2 = st.columns(2)
    m1.number_input("window left", -1, limits.MAX_SEQ_LEN_GPU, step=1, key=f"{prefix}.window_left", **persist,
                    help="sliding window: a query sees keys at most this far before it (-1: no limit)")
    m2.number_input("window right", -1, limits.MAX_SEQ_LEN_GPU, step=1, key=f"{prefix}.window_right", **persist,
                    help="... and at most this far after it (-1: no limit; causal cuts it at 0)")
    m3, m4, m5 = st.columns(3)
    m3.number_input("documents", 1, limits.MAX_DOCUMENTS, step=1, key=f"{prefix}.documents", **persist,
                    help="packed documents of random lengths from the seed (cu_seqlens): a query sees only its own")
    m4.number_input("heads per K/V", 1, limits.MAX_GROUP, step=1, key=f"{prefix}.group", **persist,
                    help="GQA: this many query heads share one K/V head; their queries are packed into the rows, "
                         "head after head, so each K/V tile is loaded once for the group")
    m5.number_input("queries", 0, limits.max_seq_len(), step=1, key=f"{prefix}.q_len", **persist,
                    help="decode: this many queries, the last positions of the keys (0: as many as keys)")


def softmax_row_sidebar(spec, on_change) -> None:
    """The softmax page's live row: length, chunk, input and seed."""
    from kernels import softmax_hand, softmax_trace

    persist = dict(on_change=on_change, disabled=not live_possible(), persist_state="session")
    ss = st.session_state
    st.selectbox("input", softmax_trace.SCENARIOS, key=spec.key("scenario"), **persist,
                 format_func=lambda s: ("typed: your own numbers" if s == "typed"
                                        else f"{s}: {inputs.SOFTMAX_SCENARIO_HELP[s]}"))
    typed = ss[spec.key("scenario")] == "typed"
    if typed:
        st.text_input("row", key=spec.key("values"), max_chars=softmax_hand.MAX_TEXT, **persist,
                      help=f"1 to {softmax_hand.MAX_VALUES} numbers, separated by commas or spaces, e.g. 3, 1, 4, 1, 5")
    else:
        most = softmax_trace.max_length(int(ss[spec.key("block")]))  # the split-row kernel's slices at this chunk
        if int(ss[spec.key("length")]) > most:
            ss[spec.key("length")] = most
        st.slider("row length", 1, most, key=spec.key("length"), **persist,
                  help=f"up to {most} at chunk {ss[spec.key('block')]}: the split-row kernel runs at most "
                       f"{softmax_trace.MAX_SLICES} slices (a larger chunk allows a longer row, up to "
                       f"{softmax_trace.MAX_LENGTH})")
    st.number_input("chunk (BLOCK)", 1, softmax_trace.MAX_BLOCK, step=1, key=spec.key("block"), **persist,
                    help="columns each streaming kernel loads at a time (from 1: the kernels' tile stays at least "
                         f"{softmax_trace.MIN_TILE} lanes, the rest masked); the split-row kernel's slice")
    if not typed:
        st.number_input("seed", 0, 2**31 - 1, step=1, key=spec.key("seed"), **persist)


def config_from_state(prefix: str, orders: bool = False) -> ktrace.TraceConfig:
    """The TraceConfig the widgets hold; ValueError naming what is not allowed."""
    ss = st.session_state
    extra = {"loop_order": ss[f"{prefix}.loop_order"], "kv_splits": int(ss[f"{prefix}.kv_splits"]),
             **{f: int(ss[f"{prefix}.{f}"]) for f in MASK_FIELDS}} if orders else {}
    return ktrace.TraceConfig(
        seq_len=int(ss[f"{prefix}.seq_len"]), head_dim=int(ss[f"{prefix}.head_dim"]),
        block_m=int(ss[f"{prefix}.block_m"]), block_n=int(ss[f"{prefix}.block_n"]),
        causal=bool(ss[f"{prefix}.causal"]), dtype=ss[f"{prefix}.dtype"],
        seed=int(ss[f"{prefix}.seed"]), scenario=ss[f"{prefix}.scenario"], **extra)


def follow_slider(label: str, key: str, n: int, help: str, first: int = 0, on_change=None) -> int:
    """A slider over first .. first + n - 1 for the canonical session_state[key] (clamped, never reset)."""
    ss = st.session_state
    value = min(max(first, int(ss.get(key, first))), first + n - 1)
    ss[key] = value
    if n <= 1:
        return value
    wkey = f"{key}.w{first}.{n}"  # a new range is a new widget, started at the canonical value

    def copy_back():
        ss[key] = ss[wkey]
        if on_change:
            on_change()

    if ss.get(wkey) != value:
        ss[wkey] = value
    st.slider(label, first, first + n - 1, key=wkey, on_change=copy_back, help=help)
    return value


def show_kernel_failure(e: Exception) -> None:
    """A kernel that failed on a config: its root cause as an error, never a traceback; stops the page."""
    if isinstance(e, TimeoutError):  # other visitors' runs held the kernels: a wait, not a failure
        st.warning(f"Not run: {plain(str(e))}")
        st.stop()
    if isinstance(e, MemoryError):
        st.error("The float64 reference ran out of memory for this config: choose a shorter sequence.")
        st.stop()
    root = e
    while root.__cause__ is not None:  # a Triton CompilationError wraps the real reason
        root = root.__cause__
    st.error(f"The kernel failed on this config: {type(root).__name__}: {plain(str(root)[:400])}")
    with st.expander("Details"):
        st.code(f"{type(e).__name__}: {e}", language=None)
    st.stop()


MARKUP = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$=&])")


def plain(text: str) -> str:
    """Text from a file, the URL or the manifest, made safe to put into markdown: every character
    markdown, HTML or Streamlit's directives (:red[...], :material/...:) could act on is escaped,
    so it shows as the characters it is and nothing else (no link, image, colour or tag)."""
    return MARKUP.sub(r"\\\1", str(text))


def scene_info(scene) -> None:
    """The chosen scene's title and narration, in the sidebar, as plain text."""
    st.info(f"**{plain(scene.title)}**. {plain(scene.narration)}" + (f"  \nRecorded on {plain(scene.recorded)}."
                                                                      if scene.recorded else ""),
            icon=":material/movie:")


def follow_q_block(spec, c, on_change) -> tuple[int, int]:
    """The followed q-block and its row (0-based within the q-block) for config c, in the sidebar.
    A scene's row arrives as the row within its q-block (`row_rel`), a URL's as the row of the
    sequence (`row_abs`, which wins); the row is kept within the q-block across q-blocks."""
    ss = st.session_state
    follow = follow_slider("follow q-block", spec.key("follow"), c.n_q_blocks, first=0, on_change=on_change,
                           help="the program (one per q-block) whose tiles you step through")
    rows_here = len(c.rows(follow))
    first_row = c.rows(follow).start
    if spec.key("row_rel") in ss:
        ss[spec.key("row")] = min(ss.pop(spec.key("row_rel")), rows_here - 1)
    if spec.key("row_abs") in ss:
        ss[spec.key("row")] = min(max(0, ss.pop(spec.key("row_abs")) - first_row), rows_here - 1)
    ss[spec.key("row")] = min(max(0, int(ss[spec.key("row")])), rows_here - 1)
    ss[spec.key("row_in")] = first_row + ss[spec.key("row")]
    if rows_here > 1:
        follow_slider("row", spec.key("row_in"), rows_here, first=first_row,
                      on_change=lambda: ss.update({spec.key("row"): ss[spec.key("row_in")] - first_row}),
                      help="the row whose numbers the equations and the accumulator show")
    return follow, ss[spec.key("row")]
