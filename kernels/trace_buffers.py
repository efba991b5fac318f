"""The device buffers a traced kernel writes into, laid out once, here.

A traced launch gets one float32 buffer cut into planes (each a C-order array of the shape named
below, NaN until the kernel writes it), one int32 index buffer (the tile slot of each program,
-1 for a program whose tiles are not kept, then the step at which each program reached each tile,
-1 for a tile it skipped; the forward's then how it ran each tile: 0 skipped, 1 whole, 2 masked,
kernels/masks.py's kinds) and the int64 counters. The kernel receives the buffers and the offset
of every plane in a named tuple (ForwardTraceArgs, BackwardTraceArgs) and indexes inside a plane
by the plane's shape; nothing else about the layout is written anywhere.

Not for: turning the buffers into trace objects (trace.py, trace_backward.py).
"""
import math
from typing import NamedTuple

import torch

from kernels.launch import constant


class ForwardTraceArgs(NamedTuple):
    buf: object  # float32 planes, starting at:
    idx: object  # int32: slot of each q-block (Tq), the visit order (Tq, Tk), the tile kinds (Tq, Tk)
    counters: object  # int64, in the trace config's counter keys (kernels/traffic.py)
    n_slots: int
    m: int  # (Tq, Tk, block_m) running max after each tile, natural units
    l: int  # (Tq, Tk, block_m) running sum
    alpha: int  # (Tq, Tk, block_m) rescale factor of the tile
    s: int  # (n, Tk, block_m, block_n) scores of the kept q-blocks
    p: int  # (n, Tk, block_m, block_n) exp(s - m_new)
    acc_before: int  # (n, Tk, block_m, d) the accumulator before the tile
    acc_after: int  # (n, Tk, block_m, d) and after it


class BackwardTraceArgs(NamedTuple):
    buf: object
    idx: object  # int32: slot of each kv-block (Tk), then the visit order (Tk, Tq)
    counters: object  # int64, in traffic.BACKWARD_COUNTERS order
    n_slots: int
    p: int  # (n, Tq, block_m, block_n) P recomputed, query rows down and keys across
    dp: int  # (n, Tq, block_m, block_n) dO V^T
    ds: int  # (n, Tq, block_m, block_n) P o (dP - D)
    dk: int  # (n, Tq, block_n, d) dK_j after each step
    dv: int  # (n, Tq, block_n, d) dV_j after each step


NO_FORWARD_TRACE = constant(ForwardTraceArgs(*[None] * len(ForwardTraceArgs._fields)))  # no kernel parameter at all


def counting(counters) -> BackwardTraceArgs:
    """BackwardTraceArgs that only count into `counters` (the backward's COUNT without TRACE)."""
    return BackwardTraceArgs(None, None, counters, *[None] * (len(BackwardTraceArgs._fields) - 3))


NO_BACKWARD_TRACE = constant(counting(None))


class _Buffers:
    """Planes of `shapes` in one float32 buffer, an index buffer of `programs` slots plus a
    (programs, steps) visit order, and counters; `args()` hands the kernel all of it."""

    ARGS = None  # the kernel's named tuple

    def __init__(self, shapes: dict, programs: int, steps: int, kept, counter_keys, device, kinds: bool = False):
        sizes = [math.prod(s) for s in shapes.values()]
        self.trace = torch.full((sum(sizes),), float("nan"), dtype=torch.float32, device=device)
        self.offsets = dict(zip(shapes, (sum(sizes[:k]) for k in range(len(sizes))), strict=True))
        for (name, shape), part in zip(shapes.items(), torch.split(self.trace, sizes), strict=True):
            setattr(self, name, part.view(shape))
        self.idx = torch.full((programs + programs * steps * (2 if kinds else 1),), -1, dtype=torch.int32, device=device)
        for slot, program in enumerate(kept):
            self.idx[program] = slot
        self.visit = self.idx[programs:programs + programs * steps].view(programs, steps)
        if kinds:  # how each tile ran, 0 (skipped) until the kernel writes it
            self.kind = self.idx[programs + programs * steps:].view(programs, steps)
            self.kind.zero_()
        self.counters = torch.zeros(len(counter_keys), dtype=torch.int64, device=device)
        self.counter_keys = tuple(counter_keys)
        self.n_slots = len(kept)

    def args(self):
        return self.ARGS(self.trace, self.idx, self.counters, self.n_slots, **self.offsets)


class TraceBuffers(_Buffers):
    """The forward's (flash_fwd.py, flash_fa1.py): q-blocks are the programs, kv-blocks the steps.
    n_rows: the rows of Q (a group's packed heads), n_keys: the keys (seq_len; decode: more than rows)."""

    ARGS = ForwardTraceArgs

    def __init__(self, n_rows, head_dim, block_m, block_n, tile_q_blocks, device, counter_keys, n_keys=None):
        n_keys = n_rows if n_keys is None else n_keys
        tq, tk, n = math.ceil(n_rows / block_m), math.ceil(n_keys / block_n), len(tile_q_blocks)
        state, tile, acc = (tq, tk, block_m), (n, tk, block_m, block_n), (n, tk, block_m, head_dim)
        super().__init__({"m": state, "l": state, "alpha": state, "s": tile, "p": tile, "acc_before": acc,
                          "acc_after": acc}, tq, tk, tile_q_blocks, counter_keys, device, kinds=True)
        self.split_o = self.split_ml = None  # a split-KV launch's partials, when it keeps them


class BackwardTraceBuffers(_Buffers):
    """The dK/dV kernel's (flash_bwd.py): kv-blocks are the programs, q-blocks the steps."""

    ARGS = BackwardTraceArgs

    def __init__(self, seq_len, head_dim, block_m, block_n, tile_kv_blocks, device, counter_keys):
        tq, tk, n = math.ceil(seq_len / block_m), math.ceil(seq_len / block_n), len(tile_kv_blocks)
        tile, acc = (n, tq, block_m, block_n), (n, tq, block_n, head_dim)
        super().__init__({"p": tile, "dp": tile, "ds": tile, "dk": acc, "dv": acc}, tk, tq, tile_kv_blocks,
                         counter_keys, device)
