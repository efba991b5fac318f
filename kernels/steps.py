"""The step: what the kernel did at one step of the program a page follows, read off its trace.

A forward trace is stepped one tile at a time along a walk:
  * FlashAttention-2 (one program per q-block): the followed q-block's tiles in the order its
    program computed them;
  * split-KV (kv_splits programs per q-block, each over a contiguous share of the kv-blocks): split
    by split, each split's tiles in its program's order. A split is its own program: its first
    step starts from m = -inf, l = 0, acc = 0, never from another split's state, and the splits'
    partial states meet only in the merge after the last step;
  * FlashAttention-1 (one program per head, kv-blocks outside): every tile in the program's order;
    a tile's old state is its q-block's state after that q-block's previous tile (read back from
    memory), and O is kept normalized.
`Step` names the tile, the program and where it stands in it; `row_update` gives one row's numbers
for the page's equations, as the kernel wrote them, with p V (from the kernel's own p and the
trace's V, rounded to the input dtype as the kernel rounds p before its dot) labelled derived.
The backward's dK/dV program walks the q-blocks of one kv-block (`BackwardStep`).

Not for: checking the equations (truth.py) or drawing them (viz/figures/).
"""
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Step:
    index: int  # 0-based position in the walk
    count: int  # steps in the walk
    q_block: int
    kv_block: int
    split: int  # the split-KV program that computes the tile (0 when kv_splits is 1)
    k: int  # the tile's place among its program's tiles for this q-block (0: the first)
    program_steps: int  # the program's tiles for this q-block
    prev_kv: int | None  # kv-block of the same program's previous tile for this q-block (its old state)
    rows: range  # rows of the sequence in the q-block
    keys: range  # keys of the kv-block
    split_keys: range  # the keys the step's split-KV program covers (every key when unsplit)
    loop_order: str
    splits: int

    @property
    def first(self) -> bool:
        """The program's first tile for this q-block: m starts at -inf, l and acc at 0."""
        return self.k == 0

    @property
    def last(self) -> bool:
        """The program's last tile for this q-block: after it, out = acc / l (or the split's partial)."""
        return self.k == self.program_steps - 1

    @property
    def last_of_walk(self) -> bool:
        return self.index == self.count - 1

    def program_name(self) -> str:
        if self.loop_order == "fa1":
            return "the one program"
        return f"Q{self.q_block}'s split {self.split}" if self.splits > 1 else f"Q{self.q_block}'s program"


def walk(trace, q_block: int) -> list[tuple[int, int, int]]:
    """(q-block, kv-block, split) of every step the page takes for the followed q-block."""
    c = trace.config
    order = trace.visit_order  # (Tq, Tk): the step of each tile within its program, -1 skipped
    if c.loop_order == "fa1":
        i, j = np.nonzero(order >= 0)
        by_step = np.argsort(order[i, j], kind="stable")
        return [(int(i[s]), int(j[s]), 0) for s in by_step]
    out = []
    for split in range(c.kv_splits):
        lo, hi = c.split_range(split)
        js = [j for j in range(lo, hi) if order[q_block, j] >= 0]
        out += [(q_block, j, split) for j in sorted(js, key=lambda j: order[q_block, j])]
    return out


def steps(trace, q_block: int) -> list[Step]:
    """Every step of the walk, in order."""
    c = trace.config
    tiles = walk(trace, q_block)
    per_program: dict[tuple[int, int], list[int]] = {}  # (q-block, split) -> its kv-blocks in order
    for i, j, split in tiles:
        per_program.setdefault((i, split), []).append(j)
    out = []
    for index, (i, j, split) in enumerate(tiles):
        js = per_program[(i, split)]
        k = js.index(j)
        lo, hi = c.split_range(split)
        out.append(Step(index=index, count=len(tiles), q_block=i, kv_block=j, split=split, k=k,
                        program_steps=len(js), prev_kv=js[k - 1] if k else None, rows=c.rows(i), keys=c.keys(j),
                        split_keys=range(c.keys(lo).start, c.keys(hi - 1).stop), loop_order=c.loop_order,
                        splits=c.kv_splits))
    return out


def step_at(trace, q_block: int, index: int) -> Step:
    """Step `index` (0-based, clamped) of the followed q-block's walk."""
    all_steps = steps(trace, q_block)
    return all_steps[min(max(0, index), len(all_steps) - 1)]


def step_count(trace, q_block: int) -> int:
    return len(walk(trace, q_block))


# ---------------------------------------------------------------- one row's numbers at a step
@dataclass(frozen=True)
class RowUpdate:
    """Row `row` (of the q-block) at one step, natural units, as the kernel wrote it. pv is derived."""
    row: int  # row of the sequence
    m_old: float  # -inf at the program's first tile
    rowmax_s: float  # -inf when every key of the tile is masked for this row
    m_new: float
    alpha: float
    l_old: float
    rowsum_p: float  # float64 sum of the kernel's p
    l_new: float
    acc_old: np.ndarray  # (d,) FA2: acc before; FA1: O read from memory
    pv: np.ndarray  # (d,) p V from the kernel's p (rounded to the input dtype) and V: derived
    acc_new: np.ndarray  # (d,) FA2: acc after; FA1: O written back
    s: np.ndarray  # (cols,) the row of the score tile, -inf masked
    p: np.ndarray  # (cols,) the row of exp(s - m_new)
    masked: int  # keys of the tile masked for this row
    empty: bool  # no key of the row seen yet (split-KV inside the causal band, a window's or document's edge)
    normalized: bool  # FA1: acc_old / acc_new are O, normalized by l


def round_to(x, dtype: str) -> np.ndarray:
    """x (float32) rounded to nearest even in `dtype`, as the kernel rounds p before its dot and a
    tensor cast rounds; a float64 result. NumPy only (bfloat16 by its bits): replays need no torch."""
    x = np.asarray(x, dtype=np.float32)
    if dtype == "float32":
        return x.astype(np.float64)
    if dtype == "float16":
        with np.errstate(over="ignore"):  # past 65504: inf, as the cast does
            return x.astype(np.float16).astype(np.float64)
    if dtype != "bfloat16":
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype!r}")
    u = np.ascontiguousarray(x).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)
    return np.where(np.isfinite(x), rounded, x).astype(np.float64)


def row_update(trace, step: Step, row: int) -> RowUpdate:
    """The numbers of one row (0 .. rows of the q-block - 1) at `step`."""
    c = trace.config
    i, j = step.q_block, step.kv_block
    slot = trace.tile_slot(i)
    if slot is None:
        raise ValueError(f"this trace kept no tiles of q-block {i}")
    cols = len(step.keys)
    s_row = trace.s[slot, j, row, :cols].astype(np.float64)
    p_row = trace.p[slot, j, row, :cols].astype(np.float64)
    prev = step.prev_kv
    m_old = -math.inf if prev is None else float(trace.m[i, prev, row])
    l_old = 0.0 if prev is None else float(trace.l[i, prev, row])
    finite = s_row[np.isfinite(s_row)]
    v = trace.v[step.keys.start: step.keys.stop].astype(np.float64)  # (cols, d)
    pv = round_to(p_row, c.dtype) @ v
    m_new = float(trace.m[i, j, row])
    return RowUpdate(
        row=step.rows.start + row, m_old=m_old, rowmax_s=float(finite.max()) if finite.size else -math.inf,
        m_new=m_new, alpha=float(trace.alpha[i, j, row]), l_old=l_old, rowsum_p=float(p_row.sum()),
        l_new=float(trace.l[i, j, row]), acc_old=trace.acc_before[slot, j, row].astype(np.float64),
        pv=pv, acc_new=trace.acc_after[slot, j, row].astype(np.float64), s=s_row, p=p_row,
        masked=int(np.sum(~np.isfinite(s_row))), empty=m_new == -math.inf, normalized=c.loop_order == "fa1")


def output_row(trace, q_block: int, row: int) -> dict:
    """After the q-block's last tile (FA2, unsplit): acc / l of the trace, the kernel's out, float64."""
    last = [s for s in steps(trace, q_block) if s.q_block == q_block][-1]  # FA1: the q-block's last tile
    u = row_update(trace, last, row)
    r = last.rows.start + row
    acc_over_l = u.acc_new if u.normalized else u.acc_new / u.l_new
    return {"acc_over_l": acc_over_l, "l": u.l_new, "out": trace.out[r].astype(np.float64), "ref": trace.ref_out[r],
            "err": float(np.max(np.abs(trace.out[r].astype(np.float64) - trace.ref_out[r])))}


# ---------------------------------------------------------------- the backward's dK/dV program
@dataclass(frozen=True)
class BackwardStep:
    index: int
    count: int
    kv_block: int  # the program's kv-block, on chip
    q_block: int  # the q-block streaming past at this step
    rows: range
    keys: range


def backward_steps(trace, kv_block: int) -> list[BackwardStep]:
    """The q-blocks kv-block's dK/dV program visited, in the order it visited them."""
    c = trace.config
    order = trace.visit_order[kv_block]  # (Tq,)
    iq = np.flatnonzero(order >= 0)
    iq = iq[np.argsort(order[iq], kind="stable")]
    return [BackwardStep(index=k, count=len(iq), kv_block=kv_block, q_block=int(i), rows=c.rows(int(i)),
                         keys=c.keys(kv_block)) for k, i in enumerate(iq)]


# ---------------------------------------------------------------- the softmax page's row
SOFTMAX_MAX_PASSES = 3  # safe softmax's: the slowest variant sets the page's step count


def softmax_step_count(length: int, block: int) -> int:
    """Chunk reads of the slowest streaming variant (safe: 3 passes over ceil(length / block) chunks)."""
    return SOFTMAX_MAX_PASSES * math.ceil(length / block)


def softmax_position(length: int, block: int, step: int) -> tuple[int, int]:
    """(pass, chunk) the streaming softmax kernels are on at this step."""
    n_chunks = math.ceil(length / block)
    return step // n_chunks, step % n_chunks
