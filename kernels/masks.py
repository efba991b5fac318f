"""What each mask lets a query see, the tiles the kernels' loop bounds skip for it, and the checks of
the mask arguments. NumPy only: a laptop that replays traces imports it too.

The kernels take flash-attn's conventions:
  causal            a query sees no key after its own position;
  window (l, r)     query position i sees keys i + off - l .. i + off + r (-1: no limit on that side);
  cu_seqlens        packed documents 0 = c_0 < c_1 < ... < c_D = N: a query sees only its own document's keys;
  decode            fewer queries than keys, aligned to the end of the keys: query i sits at key position
                    i + off, off = N_k - N_q (flash-attn's convention for causal);
  GQA / MQA         k, v with fewer heads: query head h reads K/V head h // group. The forward packs a
                    group's query heads head-major into one column of rows, row r = g * N_q + i, so each
                    K/V tile it loads serves the whole group.
Each of them leaves every query an interval of keys [lo, hi). `Masks.key_bounds` is that interval as
the kernels compute it (kernels/flash_fwd.py `key_bounds`); `Masks.allowed` is the definition, written
independently (the documents compared by id, the window by distance), which the float64 references
use; `Masks.tile_kinds` is the kernel's loop-bound arithmetic per q-block (skipped, run whole, run
masked), which a trace file's record of what the kernel did is checked against.

Not for: the kernels (flash_fwd.py, flash_bwd.py) or the torch tensors of the API (attention.py).
"""
import math
from dataclasses import dataclass

import numpy as np

from kernels.limits import shown_value

SKIPPED, WHOLE, MASKED = 0, 1, 2  # what a kernel did with a tile (a trace's tile_kind)
KIND_NAMES = {SKIPPED: "skipped", WHOLE: "ran whole", MASKED: "ran masked"}


# ---------------------------------------------------------------- the arguments
def check_window(window_size) -> tuple[int, int]:
    """(left, right): a pair of integers, each -1 (no limit) or >= 0."""
    if isinstance(window_size, (str, bytes)) or not hasattr(window_size, "__len__") or len(window_size) != 2:
        raise ValueError(f"window_size must be a pair (left, right) of integers, -1 for no limit, got {shown_value(window_size)}")
    out = []
    for side, w in zip(("left", "right"), window_size, strict=True):
        if isinstance(w, (bool, np.bool_)) or not isinstance(w, (int, np.integer)):
            raise ValueError(f"window_size[{side}] must be an integer (-1: no limit), got {shown_value(w)}")
        if int(w) < -1:
            raise ValueError(f"window_size[{side}] must be -1 (no limit) or at least 0, got {int(w)}")
        out.append(int(w))
    return out[0], out[1]


def check_cu_seqlens(values, seq_len: int) -> tuple[int, ...]:
    """Document boundaries: integers starting at 0, strictly increasing, ending at seq_len."""
    values = [int(x) for x in values]
    if len(values) < 2:
        raise ValueError(f"cu_seqlens must hold at least two boundaries (0 and seq_len {seq_len}), got {values[:8]}")
    if values[0] != 0 or values[-1] != seq_len:
        raise ValueError(f"cu_seqlens must start at 0 and end at seq_len {seq_len}, got {values[0]} .. {values[-1]}")
    steps = np.diff(values)
    if (steps <= 0).any():
        k = int(np.argmax(steps <= 0))
        raise ValueError(f"cu_seqlens must be strictly increasing (no empty document), got {values[k]} then "
                         f"{values[k + 1]} at {k}")
    return tuple(values)


def check_group(heads: int, kv_heads: int) -> int:
    """Query heads per K/V head: kv_heads must divide heads."""
    if kv_heads < 1 or heads % kv_heads:
        raise ValueError(f"k and v must have a number of heads that divides q's {heads} (GQA/MQA), got {kv_heads}")
    return heads // kv_heads


def document_bounds(seq_len: int, documents: int, seed: int) -> tuple[int, ...]:
    """cu_seqlens of `documents` packed documents of random lengths (at least 1 each) from the seed:
    how a trace config names its documents."""
    if documents <= 1:
        return ()
    cuts = np.random.default_rng([seed, 2]).choice(np.arange(1, seq_len), documents - 1, replace=False)
    return (0, *sorted(int(c) for c in cuts), seq_len)


# ---------------------------------------------------------------- what a query sees
def needs_intervals(causal: bool, window, documents: bool, group: int, n_queries: int, n_keys: int) -> bool:
    """Whether the kernels compute each row's key interval (FwdMeta.INTERVALS): a window, documents,
    or causal with decode's offset or packed heads; otherwise the mask is plain causal or none."""
    return tuple(window) != (-1, -1) or documents or (causal and (group > 1 or n_queries != n_keys))


@dataclass(frozen=True)
class Masks:
    n_queries: int  # query positions per head
    n_keys: int
    causal: bool = False
    window: tuple = (-1, -1)
    cu_seqlens: tuple = ()  # () : one sequence
    group: int = 1  # query heads per K/V head (packed rows: group * n_queries)

    @property
    def offset(self) -> int:
        """Key position of query 0 (decode: the queries are the last n_queries positions)."""
        return self.n_keys - self.n_queries

    @property
    def n_rows(self) -> int:
        return self.group * self.n_queries

    @property
    def intervals(self) -> bool:
        """The kernel computes each row's key interval (FwdMeta.INTERVALS): a window, documents, or
        causal with decode's offset or packed heads. Otherwise plain causal or no mask."""
        return needs_intervals(self.causal, self.window, bool(self.cu_seqlens), self.group, self.n_queries,
                               self.n_keys)

    @property
    def default(self) -> bool:
        return self.plain_or_causal and not self.causal

    @property
    def plain_or_causal(self) -> bool:
        """No mask but causal: self-attention, one query head per K/V head."""
        return not self.intervals and self.group == 1 and self.n_queries == self.n_keys

    def positions(self, rows) -> np.ndarray:
        return np.asarray(rows, dtype=np.int64) % self.n_queries

    def _doc(self, pos) -> np.ndarray:
        return np.searchsorted(np.asarray(self.cu_seqlens), pos, side="right") - 1

    def key_bounds(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi): each packed row's keys [lo, hi), as the kernel computes them."""
        diag = self.positions(rows) + self.offset
        lo, hi = np.zeros_like(diag), np.full_like(diag, self.n_keys)
        left, right = self.window
        if self.causal:
            hi = np.minimum(hi, diag + 1)
        if left >= 0:
            lo = np.maximum(lo, diag - left)
        if right >= 0:
            hi = np.minimum(hi, diag + right + 1)
        if self.cu_seqlens:
            cu = np.asarray(self.cu_seqlens)
            d = self._doc(self.positions(rows))
            lo, hi = np.maximum(lo, cu[d]), np.minimum(hi, cu[d + 1])
        return lo, hi

    def allowed(self, r0: int, r1: int) -> np.ndarray:
        """(r1 - r0, n_keys) bool: which keys packed rows r0 .. r1 - 1 see, by the definitions."""
        i = (self.positions(np.arange(r0, r1)) + self.offset)[:, None]  # the query's own key position
        j = np.arange(self.n_keys)[None, :]
        ok = np.ones((r1 - r0, self.n_keys), dtype=bool)
        left, right = self.window
        if self.causal:
            ok &= j <= i
        if left >= 0:
            ok &= i - j <= left
        if right >= 0:
            ok &= j - i <= right
        if self.cu_seqlens:
            doc = np.repeat(np.arange(len(self.cu_seqlens) - 1), np.diff(self.cu_seqlens))
            ok &= doc[j] == doc[self.positions(np.arange(r0, r1))][:, None]
        return ok

    # ------------------------------------------------------------ the kernel's loop bounds
    def block_bounds(self, q_block: int, block_m: int, block_n: int) -> tuple[int, int, int, int]:
        """(lo, full_lo, full_hi, hi) in keys for one q-block: [lo, full_lo) and [full_hi, hi) run
        masked, [full_lo, full_hi) whole, the rest is skipped (the forward kernel's arithmetic)."""
        r0, r1 = q_block * block_m, min((q_block + 1) * block_m, self.n_rows)
        n = self.n_keys
        if not self.intervals:
            if self.causal:  # self-attention, one head per K/V head
                hi = min(r1, n)
                masked_from = min(r0 // block_n, n // block_n) * block_n
            else:
                hi, masked_from = n, (n // block_n) * block_n
            return 0, 0, masked_from, hi
        lo_k, hi_k = self.key_bounds(np.arange(r0, r1))
        lo = (int(lo_k.min()) // block_n) * block_n
        hi = int(hi_k.max())
        full_lo = min(max(math.ceil(int(lo_k.max()) / block_n) * block_n, lo), hi)
        full_hi = min(max((int(hi_k.min()) // block_n) * block_n, full_lo), hi)
        return lo, full_lo, full_hi, hi

    def tile_kinds(self, block_m: int, block_n: int, kv_splits: int = 1) -> np.ndarray:
        """(Tq, Tk) int: SKIPPED, WHOLE or MASKED for every tile, as the forward kernel's loop bounds
        put them (split-KV: each split's program over its share of the kv-blocks)."""
        tq, tk = math.ceil(self.n_rows / block_m), math.ceil(self.n_keys / block_n)
        out = np.zeros((tq, tk), dtype=np.int32)
        starts = np.arange(tk) * block_n
        for i in range(tq):
            lo, full_lo, full_hi, hi = self.block_bounds(i, block_m, block_n)
            for s in range(kv_splits):
                s_lo = (s * tk // kv_splits) * block_n
                s_hi = min(((s + 1) * tk // kv_splits) * block_n, self.n_keys)
                a, d = max(lo, s_lo), min(hi, s_hi)  # the split's share, as the kernel clamps it
                b = min(max(full_lo, a), d)
                c = min(max(full_hi, b), d)
                in_split = (starts >= s_lo) & (starts < s_hi)
                out[i, in_split & (starts >= a) & (starts < b)] = MASKED
                out[i, in_split & (starts >= b) & (starts < c)] = WHOLE
                out[i, in_split & (starts >= c) & (starts < d)] = MASKED
        return out

    def describe(self) -> str:
        """A short name of the mask, e.g. 'causal, window (128, 0), 3 documents, 4 query heads per K/V head'."""
        parts = ["causal"] if self.causal else []
        if self.window != (-1, -1):
            parts.append(f"window ({self.window[0]}, {self.window[1]})")
        if self.cu_seqlens:
            parts.append(f"{len(self.cu_seqlens) - 1} documents")
        if self.group > 1:
            parts.append(f"{self.group} query heads per K/V head")
        if self.n_queries != self.n_keys:
            parts.append(f"{self.n_queries} {'query' if self.n_queries == 1 else 'queries'} against {self.n_keys} keys")
        return ", ".join(parts) or "no mask"
