"""The kernel-config sidebar that the FlashAttention and Backward pages share.

Widgets only: each page keeps its own keys (`attn.*`, `bwd.*`) so the two configs stay apart.
Not for: anything that launches a kernel (viz/state.py) or draws a figure (viz/figures.py).
"""
import streamlit as st

from kernels import backend, inputs, limits
from kernels import trace as ktrace

CONFIG_FIELDS = ("seq_len", "head_dim", "block_m", "block_n", "causal", "dtype", "seed", "scenario")


def config_defaults(prefix: str) -> dict:
    """Session-state defaults of the config widgets: small on the CPU interpreter, larger on a GPU."""
    return {
        f"{prefix}.seq_len": 256 if backend.INTERPRET else 1024,
        f"{prefix}.head_dim": 64,
        f"{prefix}.block_m": 64,
        f"{prefix}.block_n": 64,
        f"{prefix}.causal": False,
        f"{prefix}.dtype": "float32",
        f"{prefix}.scenario": "randn",
        f"{prefix}.seed": 0,
    }


def config_sidebar(prefix: str, on_change, disabled: bool = False,
                   block_help=("rows of Q per tile", "rows of K, V per tile"), seed_help=None) -> None:
    """Sequence length, head dim, blocks, causal, dtype, scenario and seed, under stable keys."""
    ss = st.session_state
    persist = dict(persist_state="session", on_change=on_change, disabled=disabled)
    st.subheader("Kernel config")
    st.slider("sequence length", 1, limits.max_seq_len(), key=f"{prefix}.seq_len", **persist,
              help=f"1 to {limits.max_seq_len()} on this backend" + (
                  f"; the interpreter runs at most {limits.MAX_TILES_CPU} tiles" if backend.INTERPRET else ""))
    st.select_slider("head dim", limits.HEAD_DIMS, key=f"{prefix}.head_dim", **persist)
    c1, c2 = st.columns(2)
    c1.select_slider("block_m", limits.BLOCK_SIZES, key=f"{prefix}.block_m", **persist, help=block_help[0])
    c2.select_slider("block_n", limits.BLOCK_SIZES, key=f"{prefix}.block_n", **persist, help=block_help[1])
    st.toggle("causal mask", key=f"{prefix}.causal", **persist)
    if ss[f"{prefix}.dtype"] not in limits.dtypes():
        ss[f"{prefix}.dtype"] = "float32"
    st.segmented_control("dtype", limits.dtypes(), key=f"{prefix}.dtype", required=True, **persist,
                         help="the dtypes this backend runs (the interpreter has no bfloat16)")
    st.selectbox("input scenario", limits.SCENARIOS, key=f"{prefix}.scenario", **persist,
                 format_func=lambda s: f"{s}: {inputs.SCENARIO_HELP[s]}")
    st.number_input("seed", 0, 2**31 - 1, step=1, key=f"{prefix}.seed", **persist, help=seed_help)


def config_from_state(prefix: str) -> tuple:
    """(TraceConfig, None), or (None, the ValueError's message naming the allowed values)."""
    ss = st.session_state
    try:
        return ktrace.TraceConfig(
            seq_len=int(ss[f"{prefix}.seq_len"]), head_dim=int(ss[f"{prefix}.head_dim"]),
            block_m=int(ss[f"{prefix}.block_m"]), block_n=int(ss[f"{prefix}.block_n"]),
            causal=bool(ss[f"{prefix}.causal"]), dtype=ss[f"{prefix}.dtype"],
            seed=int(ss[f"{prefix}.seed"]), scenario=ss[f"{prefix}.scenario"],
        ), None
    except ValueError as e:
        return None, str(e)


def show_kernel_failure(e: Exception) -> None:
    """A kernel that failed on a config: its root cause as an error, never a traceback; stops the page."""
    root = e
    while root.__cause__ is not None:  # a Triton CompilationError wraps the real reason
        root = root.__cause__
    st.error(f"The kernel failed on this config: {type(root).__name__}: {root}")
    with st.expander("Details"):
        st.code(f"{type(e).__name__}: {e}", language=None)
    st.stop()
