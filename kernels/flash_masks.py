"""The masks' loop bounds, as @triton.jit helpers the forward and backward kernels share.

Every mask of kernels/masks.py leaves each query an interval of keys. `key_bounds` computes each
row's interval [key_lo, key_hi); `tile_bounds` turns a block of rows' intervals into a q-block's kv
loop bounds: tiles some row's interval edge cuts run masked, tiles every row sees whole run
unmasked, the rest are skipped (never loaded). The dK/dV kernel walks the other way, a kv-block's
q-blocks: `row_range` inverts the intervals (their ends grow with the row), `rows_seeing` gives its
bounds. kernels/masks.py writes the same arithmetic in NumPy (the traces are checked against it).

Not for: the kernels themselves (flash_fwd.py, flash_bwd.py) or the argument checks (masks.py).
"""
from typing import NamedTuple

import triton
import triton.language as tl


class MaskArgs(NamedTuple):
    """The masks' runtime arguments; None where the meta leaves them out (no kernel parameter)."""
    n_kv: int  # keys (OWN_KV)
    n_q: int  # query positions per head (PACKED)
    sk: object  # K's and V's Strides (OWN_KV)
    left: int  # WINDOW_LEFT
    right: int  # WINDOW_RIGHT
    doc: object  # int32 (N,): the document of each position (DOCS)
    cu: object  # int32 (D + 1,): cu_seqlens (DOCS)


@triton.jit
def key_bounds(offs_m, row_ok, N_CTX, N_KV, mk, CAUSAL: tl.constexpr, LEFT: tl.constexpr, RIGHT: tl.constexpr,
               DOCS: tl.constexpr, PACKED: tl.constexpr):
    """(key_lo, key_hi): the keys [key_lo, key_hi) each row sees (kernels/masks.py's conventions).
    A query sits at key position diag = its position + N_KV - N_q (decode: aligned to the end)."""
    if PACKED:  # a group's heads, head-major: row r is position r % n_q
        pos = offs_m % mk.n_q
        diag = pos + (N_KV - mk.n_q)
    else:
        pos = offs_m
        diag = pos + (N_KV - N_CTX)
    key_lo = tl.zeros_like(offs_m)
    key_hi = tl.zeros_like(offs_m) + N_KV
    if CAUSAL:
        key_hi = tl.minimum(key_hi, diag + 1)
    if LEFT:
        key_lo = tl.maximum(key_lo, diag - mk.left)
    if RIGHT:
        key_hi = tl.minimum(key_hi, diag + mk.right + 1)
    if DOCS:  # the row's own document [cu[d], cu[d + 1])
        doc = tl.load(mk.doc + pos, mask=row_ok, other=0)
        key_lo = tl.maximum(key_lo, tl.load(mk.cu + doc))
        key_hi = tl.minimum(key_hi, tl.load(mk.cu + doc + 1))
    return key_lo, key_hi


@triton.jit
def tile_bounds(key_lo, key_hi, row_ok, N_KV, BLOCK_N: tl.constexpr):
    """(lo, full_lo, full_hi, hi) of a block of rows: kv tiles from lo to full_lo and from full_hi
    to hi hold an edge of some row's interval (masked), tiles in between are seen whole by every
    row, tiles outside [lo, hi) by none (skipped: never loaded). Rows past the end do not count."""
    lo = (tl.min(tl.where(row_ok, key_lo, N_KV), 0) // BLOCK_N) * BLOCK_N
    hi = tl.max(tl.where(row_ok, key_hi, 0), 0)
    full_lo = tl.minimum(tl.maximum(tl.cdiv(tl.max(tl.where(row_ok, key_lo, 0), 0), BLOCK_N) * BLOCK_N, lo), hi)
    full_hi = tl.minimum(tl.maximum((tl.min(tl.where(row_ok, key_hi, N_KV), 0) // BLOCK_N) * BLOCK_N, full_lo), hi)
    return lo, full_lo, full_hi, hi


@triton.jit
def row_range(key, N_CTX, N_KV, mk, meta):
    """(first, last): the query positions whose key interval holds `key`. The intervals' ends grow
    with the position, so these are where the interval's end passes the key and where its start
    does (kernels/masks.py's conventions; diag = position + N_KV - N_CTX)."""
    off = N_KV - N_CTX
    first = key * 0
    last = key * 0 + N_CTX - 1
    if meta.CAUSAL:
        first = tl.maximum(first, key - off)
    if meta.WINDOW_RIGHT:
        first = tl.maximum(first, key - off - mk.right)
    if meta.WINDOW_LEFT:
        last = tl.minimum(last, key - off + mk.left)
    if meta.DOCS:  # the key's own document
        doc = tl.load(mk.doc + key)
        first = tl.maximum(first, tl.load(mk.cu + doc))
        last = tl.minimum(last, tl.load(mk.cu + doc + 1) - 1)
    return first, last


@triton.jit
def rows_seeing(start_n, N_CTX, N_KV, mk, meta):
    """(lo, full_lo, full_hi, hi) in rows for kv-block start_n: q-blocks from lo to full_lo and from
    full_hi to hi hold rows that see some of its keys (masked), those in between see every one of
    them (whole), the others none (skipped)."""
    BLOCK_M: tl.constexpr = meta.BLOCK_M
    first_lo, first_hi = row_range(start_n, N_CTX, N_KV, mk, meta)
    last_lo, last_hi = row_range(tl.minimum(start_n + meta.BLOCK_N, N_KV) - 1, N_CTX, N_KV, mk, meta)
    lo = (first_lo // BLOCK_M) * BLOCK_M
    hi = tl.where(last_hi >= first_lo, last_hi + 1, lo)
    full_lo = tl.minimum(tl.maximum(tl.cdiv(last_lo, BLOCK_M) * BLOCK_M, lo), hi)
    full_hi = tl.minimum(tl.maximum(((first_hi + 1) // BLOCK_M) * BLOCK_M, full_lo), hi)
    return lo, full_lo, full_hi, hi
