"""Every call the pages make into kernels/: cached, and launches serialized.

Kernel launches go through here: cached with st.cache_data keyed by the config (bounded
max_entries), serialized by one lock (st.cache_resource). Pages call these and draw.

Not for: drawing (viz/figures/) or computing anything the kernels compute.
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from kernels import backend, results, trace_io
from kernels import trace as ktrace

AUTO_COUNT_SECONDS = 5.0  # softmax counts that take longer (kernels/limits.count_plan) wait for a click
ROOT = Path(__file__).resolve().parents[1]


LOCK_WAIT_SECONDS = 300.0  # a visitor waits at most this long for the others' kernel runs


@st.cache_resource
def kernel_lock() -> threading.Lock:
    """One lock for every kernel launch in this server: the GPU (or the interpreter) runs one at a time."""
    return threading.Lock()


@st.cache_resource
def kernel_holder() -> dict:
    """What holds the kernel lock now, and since when: {"what": str, "since": time.monotonic()}."""
    return {}


@contextmanager
def kernel_turn(what: str = "a kernel run", wait: float | None = None):
    """Hold the kernel lock for one launch; TimeoutError (shown as a message) after LOCK_WAIT_SECONDS
    of other visitors' runs. Only launches take it: a cached result, a scene and a file replay
    without it."""
    lock = kernel_lock()
    if not lock.acquire(timeout=LOCK_WAIT_SECONDS if wait is None else wait):
        raise TimeoutError(f"the kernels were busy with other visitors' runs for {LOCK_WAIT_SECONDS:.0f} s: "
                           "try again in a moment, or replay a scene")
    kernel_holder().update(what=what, since=time.monotonic())
    try:
        yield
    finally:
        kernel_holder().clear()
        lock.release()


def busy_note() -> str:
    """Said in a spinner when another visitor's kernel run holds the lock: what it runs, for how long."""
    held = dict(kernel_holder())
    if not kernel_lock().locked() or not held:
        return ""
    return (f" (waiting for another visitor's {held.get('what', 'kernel run')}, running for "
            f"{time.monotonic() - held.get('since', time.monotonic()):.0f} s: it goes first)")


@st.cache_data(max_entries=6, show_spinner=False)
def capture(fields: tuple, q_blocks: tuple | None = None) -> ktrace.AttentionTrace:
    """capture_trace(TraceConfig(**fields)), once per config (and per q_blocks choice)."""
    cfg = ktrace.TraceConfig(**dict(fields))
    with kernel_turn(f"FlashAttention capture (N {cfg.seq_len}, {cfg.block_m} x {cfg.block_n})"):
        return ktrace.capture_trace(cfg, q_blocks=q_blocks)


def trace_for(cfg: ktrace.TraceConfig, q_block: int) -> ktrace.AttentionTrace:
    """The cached trace, or (large configs) one that kept the tiles of q_block."""
    trace = capture(cfg.fields())
    if trace.tile_slot(q_block) is None:
        trace = capture(cfg.fields(), (q_block,))
    return trace


@st.cache_data(max_entries=8, show_spinner=False)
def softmax_counts(fields: tuple, _trace: ktrace.AttentionTrace) -> dict:
    """scores_softmax_counts(trace), once per trace config."""
    with kernel_turn(f"softmax counting over {_trace.config.seq_len} x {_trace.config.seq_len} scores"):
        return ktrace.scores_softmax_counts(_trace)


# ---------------------------------------------------------------- softmax page
@st.cache_data(max_entries=16, show_spinner=False)
def softmax_capture(fields: tuple, row: tuple | None = None):
    """capture_softmax(SoftmaxConfig(**fields), row): one row through every softmax kernel, once per config."""
    from kernels.softmax_trace import SoftmaxConfig, capture_softmax

    cfg = SoftmaxConfig(**dict(fields))
    with kernel_turn(f"softmax row (length {cfg.length})"):
        return capture_softmax(cfg, row=row)


@st.cache_data(max_entries=16, show_spinner=False)
def softmax_underflow(length: int, block: int, seed: int) -> dict | None:
    """kernels.softmax_hand.underflow, or None where triton is not installed."""
    if not backend.HAVE_TRITON:
        return None
    from kernels import softmax_hand

    with kernel_turn("softmax underflow row"):
        return softmax_hand.underflow(length, block, seed)


@st.cache_data(max_entries=16, show_spinner=False)
def safe_vs_online(row: tuple, block: int) -> dict:
    """kernels.softmax_hand.safe_vs_online on this row."""
    from kernels import softmax_hand

    with kernel_turn("safe and online softmax, bit by bit"):
        return softmax_hand.safe_vs_online(row, block)


def safe_vs_online_randn(length: int, block: int, seed: int) -> dict:
    from kernels import inputs

    return safe_vs_online(tuple(float(v) for v in inputs.softmax_row(length, "randn", seed)), block)


# ---------------------------------------------------------------- benchmarks page
def recorded_results() -> dict[str, dict]:
    return results.recorded()


def small_call_run() -> dict | None:
    """The committed small-calls run (kernels/results.small_calls), or None."""
    return results.small_calls()


def live_benchmark(progress) -> dict:
    """`python -m bench --small` in a child process (the benchmark CLI stays out of the app's
    imports), holding the kernel lock; progress(fraction, message) from its stderr."""
    with kernel_turn("live benchmark"), tempfile.TemporaryDirectory() as tmp:
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
    with kernel_turn(f"backward capture (N {cfg.seq_len})"):
        return trace_backward.capture_backward_trace(cfg, kv_blocks=kv_blocks)


def backward_trace_for(cfg: ktrace.TraceConfig, kv_block: int):
    """The cached backward trace, or (large configs) one that kept the tiles of kv_block."""
    trace = capture_backward(cfg.fields())
    if trace.tile_slot(kv_block) is None:
        trace = capture_backward(cfg.fields(), (kv_block,))
    return trace


# ---------------------------------------------------------------- ring page
RING_TIMEOUT = 300.0  # seconds a live ring may take, its processes' start included


@st.cache_data(max_entries=4, show_spinner=False)
def ring_capture(fields: tuple):
    """Ring attention on local processes for RingConfig(**fields), once per config: `python -m
    kernels.ring_local` in a child process (it spawns the ranks; the server never forks), its trace
    file read back through trace_io.load."""
    from kernels.ring_plan import RingConfig

    cfg = RingConfig(**dict(fields))
    args = [a for name, value in cfg.fields() if name != "causal" for a in (f"--{name.replace('_', '-')}", str(value))]
    with kernel_turn(f"ring attention on {cfg.world_size} local processes (N {cfg.seq_len})"), \
            tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.npz")
        proc = subprocess.run([sys.executable, "-m", "kernels.ring_local", *args, *(["--causal"] * cfg.causal),
                               "--timeout", str(RING_TIMEOUT), "--out", path], cwd=ROOT, capture_output=True,
                              text=True, timeout=RING_TIMEOUT + 60)
        if proc.returncode != 0:
            raise RuntimeError((proc.stderr.strip().splitlines() or ["the ring's processes failed"])[-1][:600])
        return trace_io.load(path, "the ring's trace")


def capture_seconds(cfg, kind: str) -> float:
    """Rough time of one live capture of this kind ("forward", "backward", "softmax", "ring") on this backend."""
    if kind == "ring":
        from kernels import limits

        tiles = cfg.tiles() * (limits.CPU_SECONDS_PER_TILE if backend.INTERPRET else 0.0)
        return 3.0 + 0.5 * cfg.world_size + tiles
    if kind == "backward":
        from kernels import trace_backward

        return trace_backward.capture_seconds(cfg)
    return ktrace.capture_seconds(cfg) if kind == "forward" else 0.0


def backend_name() -> str:
    return backend.describe()



# ---------------------------------------------------------------- scenes and trace files
def scene_by_name(name: str):
    """The shipped scene called `name`, or None (the live kernel, or a manifest that cannot be read)."""
    from kernels import scenes

    try:
        shipped, _ = scenes.read_manifest()
    except ValueError:
        return None
    return next((s for s in shipped if s.name == name), None)


@st.cache_resource(max_entries=16, show_spinner=False)
def scene_trace(name: str):
    """A shipped scene's trace, read and checked once per server (every visitor replays the same
    file, so it is shared, never copied per session). ValueError if it cannot be read."""
    from kernels import scenes

    scene = scene_by_name(name)
    if scene is None:
        raise ValueError(f"there is no scene called {name!r}")
    return scenes.load_scene(scene)


@st.cache_resource
def upload_store():
    """The server's one store of uploaded traces (viz/uploads.py), pruned on a timer."""
    from viz import uploads

    store = uploads.UploadStore(uploads.UPLOAD_BUDGET_MB << 20, uploads.active_sessions)
    uploads.start_pruning(store)
    return store


def session_id() -> str:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "no-session"


def load_trace(data: bytes, name: str, kind: str | None = None):
    """A trace from uploaded bytes (trace_io.load checks everything); kind: the kind this page
    replays ("forward", "backward", "softmax", "ring"), refused with a message naming the right page."""
    import io

    trace = trace_io.load(io.BytesIO(data), name)
    check_kind(trace, name, kind)
    return trace


def check_kind(trace, name: str, kind: str | None) -> None:
    """ValueError naming the right page when `trace` is not of `kind` (None: any kind)."""
    got = trace_io.kind_of(trace)
    if kind is not None and got != kind:
        page = {"forward": "FlashAttention tiles", "backward": "Backward", "softmax": "Softmax",
                "ring": "Ring attention"}[got]
        raise ValueError(f"{name} is a {got} trace: open it on the {page} page (this page replays {kind} traces)")


def dram_measurements() -> dict | None:
    """The committed DRAM-bytes measurement (kernels/results.dram_bytes), or None."""
    return results.dram_bytes()


@st.cache_data(max_entries=32, show_spinner=False)
def softmax_backward_example(p: tuple, dp: tuple) -> tuple | None:
    """(dS, D) of one row from kernels/softmax_bwd.py, or None where triton is not installed."""
    if not backend.HAVE_TRITON:
        return None
    from kernels import softmax_bwd

    with kernel_turn("softmax-backward example", wait=0.0):  # never makes a replay wait: None when busy
        return softmax_bwd.softmax_backward(p, dp)


@st.cache_data(max_entries=32, show_spinner=False)
def flash_backward_example(p: tuple, dp: tuple) -> dict | None:
    """The same row through attention's backward kernels (softmax_bwd.through_flash_backward), or
    None where triton is not installed."""
    if not backend.HAVE_TRITON:
        return None
    from kernels import softmax_bwd

    with kernel_turn("attention-backward example", wait=0.0):  # never makes a replay wait
        return softmax_bwd.through_flash_backward(p, dp)


def scene_pairs() -> dict[str, tuple]:
    """{fa1 scene name: (fa2 scene, fa1 scene)}: shipped scenes recorded with the same config in both
    loop orders (the FA1 vs FA2 page replays them side by side)."""
    from kernels import scenes

    try:
        shipped, _ = scenes.read_manifest()
    except ValueError:
        return {}

    def config_of(s):
        try:
            return scene_trace(s.name).config
        except ValueError:
            return None

    return scenes.order_pairs(shipped, config_of)


@st.cache_data(max_entries=2, show_spinner=False)
def interpreter_twin(fields: tuple, q_blocks: tuple):
    """The same forward config traced by Triton's interpreter (the consistency panel): here, when
    this machine runs the interpreter; on a GPU machine in a child process (kernels/consistency.py)."""
    from kernels import consistency

    cfg = ktrace.TraceConfig.recorded(**dict(fields))
    with kernel_turn(f"interpreter run of N {cfg.seq_len}"):
        if backend.INTERPRET:
            return ktrace.capture_trace(ktrace.TraceConfig(**dict(fields)), q_blocks=q_blocks)
        return consistency.interpreter_twin(cfg, q_blocks)


@st.cache_resource(show_spinner=False)
def scene_softmax_counts() -> dict:
    """{scene name: {variant: {"loads", "stores"}}} the softmax kernels counted over each shipped
    attention scene's scores when the scenes were prepared (scenes/softmax_counts.json, checked
    against the traffic model): a replayed scene's memory table needs no kernel run, so no wait."""
    from kernels import scenes

    return scenes.softmax_counts()



@st.cache_data(max_entries=4, show_spinner=False)
def standard_attention(q, k, v, causal: bool, block_m: int, block_n: int, dtype: str):
    """kernels/standard.run on a trace's own inputs, once per (inputs, config)."""
    from kernels import standard

    with kernel_turn(f"standard attention (N {q.shape[0]}, three kernels)"):
        return standard.run(q, k, v, causal, block_m, block_n, dtype=dtype)
