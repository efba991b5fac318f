"""Every call the pages make into kernels/: cached, and launches serialized.

Kernel launches go through here: cached with st.cache_data keyed by the config (bounded
max_entries), serialized by one lock (st.cache_resource). Pages call these and draw.

Not for: drawing (viz/figures/) or computing anything the kernels compute.
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import streamlit as st

from kernels import backend, inputs, results, trace_io
from kernels import trace as ktrace

# scores_softmax_counts runs 4 softmax kernels over the N x N scores. In the interpreter that
# takes about 0.45 us per score; above AUTO_COUNT_SECONDS the page asks before running it.
COUNT_SECONDS_PER_SCORE_CPU = 4.5e-7
AUTO_COUNT_SECONDS = 5.0
ROOT = Path(__file__).resolve().parents[1]


@st.cache_resource
def kernel_lock() -> threading.Lock:
    """One lock for every kernel launch in this server: the GPU (or the interpreter) runs one at a time."""
    return threading.Lock()


@st.cache_data(max_entries=6, show_spinner=False)
def capture(fields: tuple, q_blocks: tuple | None = None) -> ktrace.AttentionTrace:
    """capture_trace(TraceConfig(**fields)), once per config (and per q_blocks choice)."""
    cfg = ktrace.TraceConfig(**dict(fields))
    with kernel_lock():
        return ktrace.capture_trace(cfg, q_blocks=q_blocks)


def trace_for(cfg: ktrace.TraceConfig, q_block: int) -> ktrace.AttentionTrace:
    """The cached trace, or (large configs) one that kept the tiles of q_block."""
    trace = capture(cfg.fields())
    if trace.tile_slot(q_block) is None:
        trace = capture(cfg.fields(), (q_block,))
    return trace


def count_seconds(seq_len: int) -> float:
    return seq_len * seq_len * COUNT_SECONDS_PER_SCORE_CPU if backend.INTERPRET else 0.5


@st.cache_data(max_entries=8, show_spinner=False)
def softmax_counts(fields: tuple, _trace: ktrace.AttentionTrace) -> dict:
    """scores_softmax_counts(trace), once per trace config."""
    with kernel_lock():
        return ktrace.scores_softmax_counts(_trace)


def load_trace(data: bytes, name: str):
    """A forward or backward trace from uploaded bytes (trace_io.load checks everything)."""
    import io

    return trace_io.load(io.BytesIO(data), name)


# ---------------------------------------------------------------- softmax page
@st.cache_data(max_entries=16, show_spinner=False)
def softmax_run(length: int, block: int, scenario: str, seed: int) -> dict:
    """The online kernel's (m, d) per chunk and every variant's counted loads/stores on one row."""
    import torch

    from kernels import reference
    from kernels import softmax as ksm

    x = inputs.softmax_row(length, scenario, seed)
    xt = torch.from_numpy(x)[None, :]  # (1, length)
    with kernel_lock():
        m, d = ksm.online_trajectory(x, block)
        counts = {v: ksm.softmax(xt, v, block=None if v == "single_pass" else block, return_counts=True)[1]
                  for v in ksm.variants_for(length)}
    ref = reference.softmax_online(x[None, :].astype(np.float64), block)
    return {"x": x, "m": m, "d": d, "counts": counts, "ref_m": ref["m_traj"][0], "ref_d": ref["d_traj"][0]}


@st.cache_data(max_entries=16, show_spinner=False)
def overflow_run(length: int, block: int, seed: int) -> dict:
    """naive, safe and online kernels on a float16 row of N(0, 1) x 100, and the float64 reference."""
    import torch

    from kernels import reference
    from kernels import softmax as ksm

    x16 = torch.from_numpy(inputs.softmax_row(length, "large", seed)).to(torch.float16)[None, :]  # (1, length)
    with kernel_lock():
        outputs = {v: ksm.softmax(x16, v, block=block).float().cpu().numpy()[0] for v in ("naive", "safe", "online")}
    return {"x": x16.float().numpy()[0], "outputs": outputs, "ref": reference.softmax_safe(x16)["y"][0]}


def n_chunks(length: int, block: int) -> int:
    return math.ceil(length / block)


# ---------------------------------------------------------------- benchmarks page
def recorded_results() -> dict[str, dict]:
    return results.recorded()


def live_benchmark(progress) -> dict:
    """`python -m bench --small` in a child process (the benchmark CLI stays out of the app's
    imports), holding the kernel lock; progress(fraction, message) from its stderr."""
    with kernel_lock(), tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "small.json")
        proc = subprocess.Popen([sys.executable, "-m", "bench", "--small", "--json", path], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        tail = []
        for line in proc.stderr:
            if line.startswith("progress "):
                _, frac, msg = line.rstrip("\n").split(" ", 2)
                progress(float(frac), msg)
            tail = (tail + [line])[-5:]
        if proc.wait() != 0:
            raise RuntimeError("the benchmark failed: " + "".join(tail)[-400:])
        with open(path) as f:
            return json.load(f)


# ---------------------------------------------------------------- backward page
@st.cache_data(max_entries=6, show_spinner=False)
def capture_backward(fields: tuple, kv_blocks: tuple | None = None):
    """capture_backward_trace(TraceConfig(**fields)), once per config (and per kv_blocks choice)."""
    from kernels import trace_backward

    cfg = ktrace.TraceConfig(**dict(fields))
    with kernel_lock():
        return trace_backward.capture_backward_trace(cfg, kv_blocks=kv_blocks)


def backward_trace_for(cfg: ktrace.TraceConfig, kv_block: int):
    """The cached backward trace, or (large configs) one that kept the tiles of kv_block."""
    trace = capture_backward(cfg.fields())
    if trace.tile_slot(kv_block) is None:
        trace = capture_backward(cfg.fields(), (kv_block,))
    return trace


def capture_seconds(cfg: ktrace.TraceConfig) -> float:
    return ktrace.capture_seconds(cfg)


def backward_capture_seconds(cfg: ktrace.TraceConfig) -> float:
    from kernels import trace_backward

    return trace_backward.capture_seconds(cfg)

