"""Cached calls into kernels/ for the pages, and the little session-state helpers they share.

Every kernel launch of the app goes through here: cached with st.cache_data keyed by the config
(bounded max_entries), serialized by one lock (st.cache_resource). Pages call these and draw.

Not for: drawing (viz/figures.py) or computing anything the kernels compute.
"""
import dataclasses
import hashlib
import io
import json
import math
import threading
from pathlib import Path

import numpy as np
import streamlit as st

from kernels import backend
from kernels import trace as ktrace

# scores_softmax_counts runs 4 softmax kernels over the N x N scores. In the interpreter that
# took 0.45 us per score (2 cores, measured 2026-11-22: N = 2048 in 1.9 s, 4096 in 7.1 s); above
# AUTO_COUNT_SECONDS the page asks before running it, so a large config never blocks on it.
COUNT_SECONDS_PER_SCORE_CPU = 4.5e-7
AUTO_COUNT_SECONDS = 5.0


@st.cache_resource
def kernel_lock() -> threading.Lock:
    """One lock for every kernel launch in this server: the GPU (or the interpreter) runs one at a time."""
    return threading.Lock()


def config_fields(cfg: ktrace.TraceConfig) -> tuple:
    """Hashable, plain-Python cache key for a TraceConfig."""
    return tuple((f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cfg))


def capture_seconds(cfg: ktrace.TraceConfig) -> float:
    """Rough time of one traced launch on this backend (the interpreter: per tile)."""
    return cfg.n_q_blocks * cfg.n_kv_blocks * ktrace.CPU_SECONDS_PER_TILE if backend.INTERPRET else 1.0


@st.cache_data(max_entries=6, show_spinner=False)
def capture(fields: tuple, q_blocks: tuple | None = None) -> ktrace.AttentionTrace:
    """capture_trace(TraceConfig(**fields)), once per config (and per q_blocks choice)."""
    cfg = ktrace.TraceConfig(**dict(fields))
    with kernel_lock():
        return ktrace.capture_trace(cfg, q_blocks=q_blocks)


def tile_blocks_for(cfg: ktrace.TraceConfig, q_block: int) -> tuple:
    """q-blocks to keep tiles for when the default capture lacks q_block: it and a neighbour.

    The neighbour is a workaround: compiled (not interpreted), the traced kernel fails to build
    with exactly one tile slot (Triton specializes the integer n_slots == 1 into a constant, and
    the kernel calls n_slots.to(...) on it). Asked of kernels/ to fix; one slot where two won't fit.
    """
    if cfg.n_q_blocks < 2 or 2 * ktrace.tile_bytes(cfg) > ktrace.TILE_BUDGET_BYTES:
        return (q_block,)
    return (q_block, q_block + 1 if q_block + 1 < cfg.n_q_blocks else q_block - 1)


def trace_for(fields: tuple, q_block: int) -> ktrace.AttentionTrace:
    """The cached trace, or (large configs) one that kept the tiles of q_block."""
    trace = capture(fields)
    if trace.tile_slot(q_block) is None:
        trace = capture(fields, tuple(sorted(tile_blocks_for(trace.config, q_block))))
    return trace


def trace_key(trace: ktrace.AttentionTrace) -> tuple:
    """Cache key of a trace's content: its config and a digest of q and k."""
    digest = hashlib.sha1(trace.q.tobytes() + trace.k.tobytes()).hexdigest()
    return config_fields(trace.config) + (("qk", digest),)


def count_seconds(seq_len: int) -> float:
    return seq_len * seq_len * COUNT_SECONDS_PER_SCORE_CPU if backend.INTERPRET else 0.5


@st.cache_data(max_entries=8, show_spinner=False)
def softmax_counts(key: tuple, _trace: ktrace.AttentionTrace) -> dict:
    """scores_softmax_counts(trace), once per trace content (key = trace_key(trace))."""
    with kernel_lock():
        return ktrace.scores_softmax_counts(_trace)


class NamedBytes(io.BytesIO):
    """An uploaded file for AttentionTrace.load: its messages then name the file, not a buffer."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name = name

    def __str__(self) -> str:
        return self.name


def load_trace(data: bytes, name: str) -> ktrace.AttentionTrace:
    return ktrace.AttentionTrace.load(NamedBytes(data, name))


def trace_bytes(trace: ktrace.AttentionTrace) -> bytes:
    buf = io.BytesIO()
    trace.save(buf)
    return buf.getvalue()


# ---------------------------------------------------------------- softmax page
SOFTMAX_SCENARIOS = ("randn", "large", "increasing", "decreasing")
SOFTMAX_SCENARIO_HELP = {
    "randn": "x ~ N(0, 1)",
    "large": "x ~ N(0, 1) × 100: e^x overflows without the max subtracted",
    "increasing": "sorted ascending: every chunk holds a new max, so d is rescaled every chunk",
    "decreasing": "sorted descending: the max is in the first chunk, no rescale after it",
}


def softmax_input(length: int, scenario: str, seed: int) -> np.ndarray:
    """The row the softmax page feeds the kernels, float32 (length,)."""
    x = np.random.default_rng(seed).standard_normal(length)
    if scenario == "large":
        x = x * 100.0
    elif scenario == "increasing":
        x = np.sort(x)
    elif scenario == "decreasing":
        x = np.sort(x)[::-1]
    return np.ascontiguousarray(x, dtype=np.float32)


@st.cache_data(max_entries=16, show_spinner=False)
def softmax_run(length: int, block: int, scenario: str, seed: int) -> dict:
    """The online kernel's (m, d) per chunk and every variant's counted loads/stores on one row."""
    import torch

    from kernels import reference
    from kernels import softmax as ksm

    x = softmax_input(length, scenario, seed)
    xt = torch.from_numpy(x)[None, :]  # (1, length)
    with kernel_lock():
        m, d = ksm.online_trajectory(x, block)
        counts = {}
        for variant in ksm.VARIANTS:
            if variant == "single_pass" and length > ksm.SINGLE_PASS_MAX_COLS:
                continue
            _, counts[variant] = ksm.softmax(xt, variant, block=None if variant == "single_pass" else block,
                                             return_counts=True)
    ref = reference.softmax_online(x[None, :].astype(np.float64), block)
    return {"x": x, "m": m, "d": d, "counts": counts, "ref_m": ref["m_traj"][0], "ref_d": ref["d_traj"][0]}


@st.cache_data(max_entries=16, show_spinner=False)
def overflow_run(length: int, block: int, seed: int) -> dict:
    """naive, safe and online kernels on a float16 row of N(0, 1) x 100, and the float64 reference."""
    import torch

    from kernels import reference
    from kernels import softmax as ksm

    x16 = torch.from_numpy(softmax_input(length, "large", seed)).to(torch.float16)[None, :]  # (1, length)
    outputs = {}
    with kernel_lock():
        for variant in ("naive", "safe", "online"):
            outputs[variant] = ksm.softmax(x16, variant, block=block).float().cpu().numpy()[0]
    return {"x": x16.float().numpy()[0], "outputs": outputs, "ref": reference.softmax_safe(x16)["y"][0]}


def n_chunks(length: int, block: int) -> int:
    return math.ceil(length / block)


# ---------------------------------------------------------------- benchmarks page
RESULTS_DIR = Path(__file__).resolve().parents[1] / "kernels" / "results"


def recorded_results() -> dict[str, dict]:
    """{file name: result} of every `python -m kernels.bench` JSON committed under kernels/results."""
    out = {}
    for path in sorted(RESULTS_DIR.glob("*.json"), reverse=True):
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(result, dict) and "env" in result and any(k in result for k in ("attention", "softmax", "backward")):
            out[path.name] = result
    return out


def live_benchmark(progress) -> dict:
    """kernels.bench.small_run on this GPU, holding the kernel lock: the same functions as the CLI."""
    from kernels import bench

    with kernel_lock():
        return bench.small_run(progress)


# ---------------------------------------------------------------- backward page
@st.cache_data(max_entries=6, show_spinner=False)
def capture_backward(fields: tuple, kv_blocks: tuple | None = None):
    """capture_backward_trace(TraceConfig(**fields)), once per config (and per kv_blocks choice)."""
    from kernels import trace_backward

    cfg = ktrace.TraceConfig(**dict(fields))
    with kernel_lock():
        return trace_backward.capture_backward_trace(cfg, kv_blocks=kv_blocks)


def backward_trace_for(fields: tuple, kv_block: int):
    """The cached backward trace, or (large configs) one that kept the tiles of kv_block."""
    trace = capture_backward(fields)
    if trace.tile_slot(kv_block) is None:
        trace = capture_backward(fields, (kv_block,))
    return trace


def backward_capture_seconds(cfg: ktrace.TraceConfig) -> float:
    from kernels import trace_backward

    return trace_backward.capture_seconds(cfg)
