"""What the kernels accept, and the checks that say so: head dims, block sizes, dtypes, size limits.

Every public entry point (TraceConfig, flash_attention, softmax, the trace loader) validates through
these helpers, so a bad value always gets the same kind of message: a ValueError naming the
argument, the value received (with its type when the type is the problem) and what is allowed.
Works without triton or torch: a laptop that only replays traces imports this too.

Not for: the kernels themselves (flash_fwd.py, flash_bwd.py, softmax.py).
"""
import math
from typing import NamedTuple

import numpy as np

from kernels import backend

HEAD_DIMS = (16, 32, 64, 128)
BLOCK_SIZES = (16, 32, 64, 128, 256)
MAX_TILE_ELEMENTS = 128 * 128  # block_m * block_n: the score tile lives in registers
MAX_BLOCK_HEAD_ELEMENTS = 256 * 128  # max(block_m, block_n) * head_dim: a Q or K/V tile on chip
DTYPES = ("float32", "float16", "bfloat16")
SCENARIOS = ("randn", "large", "increasing", "decreasing")
LOOP_ORDERS = ("fa2", "fa1")  # FlashAttention-2's loop order (q-blocks outside), or FlashAttention-1's
MAX_KV_SPLITS = 8
MAX_GROUP = 8  # query heads per K/V head in a trace (the rows of a q-block are the group's queries)
MAX_DOCUMENTS = 16  # packed documents in a trace
# eager calls replay CUDA graphs up to batch * heads * n_q * n_kv = 2^27 (N 1448 at batch 4 and 16
# heads; kernels/graphs.py). Forced on at N 2048 the copies in and out made the call 13-18% slower,
# at 4096 5-10% (H200, 2026-12-03, experiments/scripts/host_time.py)
GRAPH_MAX_ELEMENTS = 1 << 27

# Live traces. The interpreter runs every tile in NumPy: 6-7 ms a tile with tracing on, whatever the
# block size (experiments/README.md, "interpreter speed"). 2048 tiles keep a capture near 15 s.
MAX_SEQ_LEN_GPU = 16384
MAX_SEQ_LEN_CPU = 4096
MAX_TILES_CPU = 2048
CPU_SECONDS_PER_TILE = 0.007
STATE_BUDGET_BYTES = 64 << 20  # m, l, alpha of every row after every kv-block
TILE_BUDGET_BYTES = 64 << 20  # per-tile arrays (s, p, acc; P, dP, dS, dK, dV) kept in one trace


def dtypes() -> tuple[str, ...]:
    """Input dtypes this backend runs. The interpreter has no bfloat16 arithmetic."""
    return DTYPES[:2] if backend.INTERPRET else DTYPES


def max_seq_len() -> int:
    return MAX_SEQ_LEN_CPU if backend.INTERPRET else MAX_SEQ_LEN_GPU


# ---------------------------------------------------------------- argument checks
def shown_value(value) -> str:
    """The value as received, with its type: '64' (str) must not read like the allowed 64."""
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return f"{shown} ({type(value).__name__})"


def check_int(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
    """An int (Python or NumPy integer, never a bool or a float) in [lo, hi]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {shown_value(value)}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        span = f"between {lo} and {hi}" if lo is not None and hi is not None else (
            f"at least {lo}" if lo is not None else f"at most {hi}")
        raise ValueError(f"{name} must be {span}, got {value}")
    return value


def check_pow2(name: str, value, lo: int, hi: int) -> int:
    """An integer power of two in [lo, hi]."""
    value = check_int(name, value)
    if not lo <= value <= hi or value & (value - 1):
        raise ValueError(f"{name} must be a power of two between {lo} and {hi}, got {value}")
    return value


def check_bool(name: str, value) -> bool:
    """True or False (a NumPy bool too); never a string or a number standing in for one."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {shown_value(value)}")
    return bool(value)


def check_choice(name: str, value, choices: tuple, what: str = "") -> object:
    """One of `choices`, compared by type too: '64' is not 64."""
    for c in choices:
        if type(value) is type(c) and value == c:
            return c
        if isinstance(c, int) and isinstance(value, np.integer) and int(value) == c:
            return c
    allowed = ", ".join(repr(c) if isinstance(c, str) else str(c) for c in choices)
    raise ValueError(f"{name} must be one of {allowed}{what}, got {shown_value(value)}")


def check_float(name: str, value, positive: bool = False) -> float:
    """A finite real number (int or float, never a bool), > 0 when positive."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {shown_value(value)}")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name} must be a finite number{' > 0' if positive else ''}, got {value!r}")
    return value


def check_blocks(block_m, block_n, head_dim) -> None:
    """head_dim and the tile shape the kernels compile for."""
    check_choice("head_dim", head_dim, HEAD_DIMS)
    for name, b in (("block_m", block_m), ("block_n", block_n)):
        check_choice(name, b, BLOCK_SIZES, " (a power of two between 16 and 256)")
    block_m, block_n, head_dim = int(block_m), int(block_n), int(head_dim)
    if block_m * block_n > MAX_TILE_ELEMENTS:
        raise ValueError(
            f"block_m * block_n must be at most {MAX_TILE_ELEMENTS} (128 x 128) so the score "
            f"tile fits in registers, got {block_m} x {block_n}"
        )
    if max(block_m, block_n) * head_dim > MAX_BLOCK_HEAD_ELEMENTS:
        raise ValueError(
            f"max(block_m, block_n) * head_dim must be at most {MAX_BLOCK_HEAD_ELEMENTS}, "
            f"got {max(block_m, block_n)} x {head_dim}"
        )


# ---------------------------------------------------------------- a reader's size (kernels/hand.py)
MIN_TILE = 16  # tl.dot's smallest tile: a smaller block or head dim runs padded to it
MAX_HAND_SEQ_LEN = 16  # a trace with a block or head dim below MIN_TILE: every number fits on screen
MAX_HAND_HEAD_DIM = 8


def hand_sized(block_m: int, block_n: int, head_dim: int) -> bool:
    """A logical block or head dim below the hardware tile: the kernel runs it padded (kernels/hand.py)."""
    return min(block_m, block_n, head_dim) < MIN_TILE


def check_trace_blocks(block_m, block_n, head_dim) -> None:
    """A trace's blocks and head dim: the kernels' (check_blocks), or from 1 to 15, which run as
    16-wide hardware tiles with the other lanes masked or zero-padded (kernels/hand.py)."""
    hw = []
    for name, value in (("block_m", block_m), ("block_n", block_n), ("head_dim", head_dim)):
        value = check_int(name, value, 1)
        hw.append(MIN_TILE if value < MIN_TILE else value)
    check_blocks(hw[0], hw[1], hw[2])
    if hand_sized(block_m, block_n, head_dim) and head_dim > MAX_HAND_HEAD_DIM and head_dim < MIN_TILE:
        raise ValueError(f"head_dim must be at most {MAX_HAND_HEAD_DIM} (or one of "
                         f"{', '.join(map(str, HEAD_DIMS))}), got {head_dim}")


# ---------------------------------------------------------------- counting the softmax kernels over N x N scores
# scores_softmax_counts (kernels/trace.py) runs 4 softmax kernels over the N x N scores held in
# float32: at most MAX_COUNT_SEQ_LEN_GPU rows on a GPU (256 MiB), and in the interpreter (about
# 0.45 us a score) at most what takes MAX_COUNT_SECONDS_CPU.
COUNT_SECONDS_PER_SCORE_CPU = 4.5e-7
MAX_COUNT_SEQ_LEN_GPU = 8192
MAX_COUNT_SECONDS_CPU = 60.0


class CountPlan(NamedTuple):
    allowed: bool
    seconds: float  # about how long it takes on this backend
    refusal: str  # why not, when not allowed


def count_plan(seq_len: int, rows: int | None = None) -> CountPlan:
    """Whether the softmax kernels may count over rows x seq_len scores here (rows: seq_len unless
    GQA or decode), and how long it takes."""
    rows = seq_len if rows is None else rows
    seconds = rows * seq_len * COUNT_SECONDS_PER_SCORE_CPU if backend.INTERPRET else 0.5
    if not backend.HAVE_TRITON:
        return CountPlan(False, seconds, "Triton is not installed here: the softmax rows show the model; the "
                                         "FlashAttention row the recording's counts.")
    if backend.INTERPRET and seconds > MAX_COUNT_SECONDS_CPU:
        return CountPlan(False, seconds, f"Counting the softmax kernels over {rows} × {seq_len} scores would take "
                                         f"the interpreter about {seconds / 60:.0f} min (limit "
                                         f"{MAX_COUNT_SECONDS_CPU:.0f} s): the softmax rows show the model.")
    if not backend.INTERPRET and max(rows, seq_len) > MAX_COUNT_SEQ_LEN_GPU:
        return CountPlan(False, seconds, f"The {rows} × {seq_len} scores would take {rows * seq_len * 4 >> 20} "
                                         f"MiB in float32 (limit {MAX_COUNT_SEQ_LEN_GPU} rows): the softmax rows show "
                                         "the model.")
    return CountPlan(True, seconds, "")
