"""The FlashAttention-2 forward as one Triton kernel: the fast path and the trace from one source.

One program per (q-block, batch * head). Q_i stays on chip; the kv loop streams K_j, V_j through;
the running max m_i and sum l_i are rescaled when the max grows; `acc` stays unnormalized and is
divided by l_i once at the end; the log-sum-exp is stored for the backward. S and P never leave
the chip. The kernel works in base 2 (exp2, scores pre-multiplied by log2 e); the trace is written
back in natural units.

TRACE (constexpr) off compiles no trace code: that is the kernel the benchmarks time. On, every
tile writes the state of its rows, its s and p, acc before and after, and whether it ran whole or
masked (one `trace_tile` call), and the program counts what it loads and stores.

Masks as models run attention (kernels/masks.py has the conventions), each a compile-time option
so the plain kernel compiles to the same code as before: decode and GQA give K, V their own length
and heads (OWN_KV); a window, documents, or causal with decode's offset or packed heads make every
row's keys an interval [key_lo, key_hi) (INTERVALS, `key_bounds`), and the q-block's kv loop runs
only over the tiles some row sees: masked where the interval's edges cut a tile, whole between them
(`tile_bounds`); tiles outside are never loaded. GQA packs a group's query heads head-major into
one column of group * N_q rows (the host views q so), so each K_j, V_j loaded serves the group.

Not for: validating arguments or picking a config (attention.py, tuning.py), trace objects (trace.py).
"""
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from kernels import backend, flash_merge, masks, traffic
from kernels.flash_masks import MaskArgs, key_bounds, tile_bounds
from kernels.launch import Config, cdiv, jit_launch, meta, precision, strides
from kernels.trace_buffers import NO_FORWARD_TRACE, TraceBuffers

LOG2E = tl.constexpr(1.4426950408889634)  # constexpr: compiled kernels may not read plain globals
LN2 = tl.constexpr(0.6931471805599453)
# counter slots, by the names kernels/traffic.py models (split-KV's partial stores take O's and lse's)
C_Q, C_K, C_V, C_O, C_LSE = (tl.constexpr(traffic.FA2_COUNTERS.index(k))
                             for k in ("q_loads", "k_loads", "v_loads", "o_stores", "lse_stores"))
assert [traffic.SPLIT_KV_COUNTERS.index(k) for k in ("partial_o_stores", "partial_ml_stores")] == [C_O, C_LSE]


class FwdMeta(NamedTuple):
    """The forward's compile-time options (every field a tl.constexpr: launch.meta)."""
    HEAD_DIM: int
    BLOCK_M: int
    BLOCK_N: int
    CAUSAL: bool
    TRACE: bool  # write the trace and count loads and stores (off: the timed kernel)
    DOT_PRECISION: str
    USE_TMA: bool  # Q, K, V, Out are tensor descriptors (Hopper's bulk copy engine)
    WARP_SPEC: bool
    SPLIT: int  # 2: the q-block as two halves of rows, each with its own softmax state
    MASKED_TILES: bool  # some kv-block needs a mask (causal, or seq_len not a multiple of BLOCK_N)
    LATE_V: bool  # V_j loaded after the softmax
    KV_SPLITS: int  # > 1: split-KV, this many programs per q-block, merged by flash_merge
    OWN_KV: bool  # K, V have their own length, heads and strides (MaskArgs.n_kv, .sk): decode, GQA
    INTERVALS: bool  # each row's keys are an interval [key_lo, key_hi) (key_bounds)
    WINDOW_LEFT: bool  # rows see no key more than MaskArgs.left before their own position
    WINDOW_RIGHT: bool  # ... nor more than MaskArgs.right after it
    DOCS: bool  # packed documents: MaskArgs.doc (each position's document), MaskArgs.cu (cu_seqlens)
    PACKED: bool  # rows are a group's query heads, head-major: row r is query position r % MaskArgs.n_q
    KEY_TILE: int  # > 0: only the first KEY_TILE keys of each BLOCK_N tile are real (a logical kv-block
    # narrower than the hardware tile, laid out one per tile: kernels/hand.py); the other lanes are masked


@triton.jit
def softmax_tile(qk, m_i, l_i, qk_scale, offs_m, offs_n, N_KV, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
                  EMPTY_ROWS: tl.constexpr = False, INTERVALS: tl.constexpr = False, key_lo=None, key_hi=None,
                  KEY_TILE: tl.constexpr = 0, BLOCK_N: tl.constexpr = 1):
    """One tile's online-softmax update: the new row max m_ij, p = exp2(s - m_ij), the factor alpha
    that shrinks everything summed under the old max, and the running sum l_i. qk comes back
    scaled (log2 units; only the trace reads it). EMPTY_ROWS: a row may have seen no key yet
    (split-KV starting inside the causal band, a window's or a document's first tiles): its m stays
    -inf, p and l 0. INTERVALS: row r keeps keys key_lo[r] <= key < key_hi[r]. KEY_TILE > 0: only the
    first KEY_TILE lanes of each BLOCK_N tile hold keys."""
    if MASKED:  # ragged last kv-block, the causal diagonal band, a window's or a document's edges
        if INTERVALS:
            keep = (offs_n[None, :] >= key_lo[:, None]) & (offs_n[None, :] < key_hi[:, None])
        else:
            keep = offs_n[None, :] < N_KV
            if CAUSAL:
                keep = keep & (offs_m[:, None] >= offs_n[None, :])
            if KEY_TILE > 0:  # a logical kv-block narrower than the tile: its other lanes, like a ragged end
                keep = keep & ((offs_n[None, :] % BLOCK_N) < KEY_TILE)
        qk = tl.where(keep, qk * qk_scale, float("-inf"))
        m_ij = tl.maximum(m_i, tl.max(qk, 1))  # [m: masked empty]
        if EMPTY_ROWS:
            m_use = tl.where(m_ij == float("-inf"), 0.0, m_ij)
            p = tl.math.exp2(qk - m_use[:, None])  # [p: empty]
            alpha = tl.math.exp2(m_i - m_use)  # [alpha: empty]
            l_i = l_i * alpha + tl.sum(p, 1)  # [l: empty]
            return p, m_ij, alpha, l_i, qk
        p = tl.math.exp2(qk - m_ij[:, None])  # [p: masked]
    else:
        # -- update m_i: the scale folds into one FMA with the subtraction below --
        m_ij = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)  # [m: unmasked]
        p = tl.math.exp2(qk * qk_scale - m_ij[:, None])  # [p: unmasked]
        qk = qk * qk_scale
    # -- update l_i: a larger max shrinks everything summed so far by alpha --
    alpha = tl.math.exp2(m_i - m_ij)  # [alpha: masked unmasked]
    l_i = l_i * alpha + tl.sum(p, 1)  # [l: masked unmasked]
    return p, m_ij, alpha, l_i, qk


@triton.jit
def _load_kT(K_src, head, start_n, offs_n, offs_d, sk, N_CTX, meta, MASKED: tl.constexpr):
    """K_j^T, (HEAD_DIM, BLOCK_N); keys past seq_len arrive as zeros."""
    if meta.USE_TMA:  # the bulk copy engine
        kT = tl.reshape(K_src.load([head[0], head[1], start_n, 0]), [meta.BLOCK_N, meta.HEAD_DIM]).T
    elif MASKED:
        kT = tl.load(K_src + offs_n[None, :] * sk.m + offs_d[:, None] * sk.k, mask=offs_n[None, :] < N_CTX, other=0.0)
    else:
        kT = tl.load(K_src + offs_n[None, :] * sk.m + offs_d[:, None] * sk.k)
    return kT


@triton.jit
def _load_v(V_src, head, start_n, offs_n, offs_d, sk, N_CTX, meta, MASKED: tl.constexpr):
    """V_j, (BLOCK_N, HEAD_DIM); rows past seq_len arrive as zeros."""
    if meta.USE_TMA:
        v = tl.reshape(V_src.load([head[0], head[1], start_n, 0]), [meta.BLOCK_N, meta.HEAD_DIM])
    elif MASKED:
        v = tl.load(V_src + offs_n[:, None] * sk.m + offs_d[None, :] * sk.k, mask=offs_n[:, None] < N_CTX, other=0.0)
    else:
        v = tl.load(V_src + offs_n[:, None] * sk.m + offs_d[None, :] * sk.k)
    return v


@triton.jit
def trace_tile(tr, start_m, j, step, slot, m_i, l_i, alpha, qk, p, acc_before, acc, offs_m, offs_n, offs_d, N_CTX,
               N_KV, meta, MASKED: tl.constexpr):
    """Record tile (q-block start_m, kv-block j): the step it was computed at, whether it ran
    whole or masked, the state of its rows after it (m_i in log2 units, converted back), and, for
    q-blocks with a tile slot, s, p and acc before / after. The planes: kernels/trace_buffers.py.
    The FA1-order kernel records the same way."""
    BLOCK_M: tl.constexpr = meta.BLOCK_M
    BLOCK_N: tl.constexpr = meta.BLOCK_N
    HEAD_DIM: tl.constexpr = meta.HEAD_DIM
    Tq = tl.cdiv(N_CTX, BLOCK_M).to(tl.int64)
    Tk = tl.cdiv(N_KV, BLOCK_N).to(tl.int64)
    row_ok = offs_m < N_CTX
    tl.store(tr.idx + Tq + start_m * Tk + j, step)  # visit order
    tl.store(tr.idx + Tq + Tq * Tk + start_m * Tk + j, 2 if MASKED else 1)  # kernels/masks.py: MASKED, WHOLE
    rows = tl.arange(0, BLOCK_M)
    st = (start_m * Tk + j) * BLOCK_M + rows
    tl.store(tr.buf + tr.m + st, m_i * LN2, mask=row_ok)  # back to natural units
    tl.store(tr.buf + tr.l + st, l_i, mask=row_ok)
    tl.store(tr.buf + tr.alpha + st, alpha, mask=row_ok)
    if slot >= 0:
        tile = slot.to(tl.int64) * Tk + j
        ok = row_ok[:, None] & (offs_n[None, :] < N_KV)
        sp = tile * BLOCK_M * BLOCK_N + rows[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
        tl.store(tr.buf + tr.s + sp, qk * LN2, mask=ok)
        tl.store(tr.buf + tr.p + sp, p, mask=ok)
        ap = tile * BLOCK_M * HEAD_DIM + rows[:, None] * HEAD_DIM + offs_d[None, :]
        tl.store(tr.buf + tr.acc_before + ap, acc_before, mask=row_ok[:, None])
        tl.store(tr.buf + tr.acc_after + ap, acc, mask=row_ok[:, None])
    return step + 1


@triton.jit
def _attn_fwd_inner(acc, l_i, m_i, q, half, kv, head, sk, start_m, lo, hi, qk_scale, n, rows, offs_d,
                    tr, slot, step, meta, MASKED: tl.constexpr):
    # kv: (K_src, V_src); head: (off_z, off_h); sk: K's and V's strides; n: (N_CTX rows, N_KV keys);
    # rows: (offs_m, key_lo, key_hi), each row's keys when meta.INTERVALS (stand-ins otherwise).
    # meta.SPLIT == 2: the program's q-block is two halves of rows, (q, acc, l_i, m_i) and half =
    # (q1, acc1, l1, m1), each with its own softmax state, sharing every K_j and V_j tile. SPLIT == 1:
    # half holds unused stand-ins.
    BLOCK_N: tl.constexpr = meta.BLOCK_N
    N_CTX, N_KV = n
    offs_m, key_lo, key_hi = rows
    q1, acc1, l1, m1 = half
    offs_nb = tl.arange(0, BLOCK_N)
    for start_n in tl.range(lo, hi, BLOCK_N, warp_specialize=meta.WARP_SPEC):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        offs_n = start_n + offs_nb
        # -- compute qk: K_j streams in, the (BLOCK_M, BLOCK_N) scores never leave the chip --
        kT = _load_kT(kv[0], head, start_n, offs_n, offs_d, sk, N_KV, meta, MASKED)
        # V_j with K_j, before the softmax between their products, keeps the loads ahead of the
        # tensor cores; the head_dim-64 split config ran faster with the late load (LATE_V)
        if not meta.LATE_V:
            v = _load_v(kv[1], head, start_n, offs_n, offs_d, sk, N_KV, meta, MASKED)
        qk = tl.dot(q, kT, input_precision=meta.DOT_PRECISION)
        if meta.SPLIT == 2:  # both halves' scores first, then each half's softmax and P V
            qk1 = tl.dot(q1, kT, input_precision=meta.DOT_PRECISION)
        p, m_ij, alpha, l_i, qk = softmax_tile(qk, m_i, l_i, qk_scale, offs_m, offs_n, N_KV, MASKED, meta.CAUSAL,
                                                meta.KV_SPLITS > 1 or meta.INTERVALS, meta.INTERVALS, key_lo, key_hi,
                                                meta.KEY_TILE, BLOCK_N)
        # -- rescale acc, then add p V_j; acc stays unnormalized until the end (FA2) --
        acc_before = acc
        acc = acc * alpha[:, None]  # [acc]
        if meta.LATE_V:
            v = _load_v(kv[1], head, start_n, offs_n, offs_d, sk, N_KV, meta, MASKED)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=meta.DOT_PRECISION)  # [acc]
        if meta.SPLIT == 2:
            p1, m1_new, alpha1, l1, _ = softmax_tile(qk1, m1, l1, qk_scale, offs_m + meta.BLOCK_M // 2, offs_n, N_KV,
                                                      MASKED, meta.CAUSAL)
            acc1 = tl.dot(p1.to(v.dtype), v, acc1 * alpha1[:, None], input_precision=meta.DOT_PRECISION)
            m1 = m1_new
        m_i = m_ij
        if meta.TRACE:
            kv_ok = offs_n < N_KV
            if meta.KEY_TILE > 0:  # the masked lanes hold no key
                kv_ok = kv_ok & (offs_nb < meta.KEY_TILE)
            kv_rows = tl.sum(kv_ok.to(tl.int64))
            tl.atomic_add(tr.counters + C_K, kv_rows * meta.HEAD_DIM)  # K_j loaded
            tl.atomic_add(tr.counters + C_V, kv_rows * meta.HEAD_DIM)  # V_j loaded
            step = trace_tile(tr, start_m, start_n // BLOCK_N, step, slot, m_i, l_i, alpha, qk, p, acc_before, acc,
                              offs_m, offs_n, offs_d, N_CTX, N_KV, meta, MASKED)
    return acc, l_i, m_i, (q1, acc1, l1, m1), step


@triton.jit
def _load_q(Q, head, row0, offs_m, offs_d, sq, N_CTX, ROWS: tl.constexpr, meta):
    if meta.USE_TMA:  # rows past seq_len arrive as zeros
        q = tl.reshape(Q.load([head[0], head[1], row0, 0]), [ROWS, meta.HEAD_DIM])
    else:
        q = tl.load(Q + head[0].to(tl.int64) * sq.z + head[1].to(tl.int64) * sq.h
                    + offs_m[:, None] * sq.m + offs_d[None, :] * sq.k, mask=offs_m[:, None] < N_CTX, other=0.0)
    return q


@triton.jit
def _store_out(acc, l_i, m_i, Out, Lse, head, off_hz, row0, offs_m, offs_d, so, N_CTX, ROWS: tl.constexpr, meta):
    # -- epilogue: normalize once, store O_i and the log-sum-exp (natural log) --
    out = acc / l_i[:, None]  # [out]
    tl.store(Lse + off_hz.to(tl.int64) * N_CTX + offs_m, (m_i + tl.math.log2(l_i)) * LN2, mask=offs_m < N_CTX)
    if meta.USE_TMA:  # rows past seq_len are clipped by the copy engine
        Out.store([head[0], head[1], row0, 0], tl.reshape(out.to(Out.dtype), [1, 1, ROWS, meta.HEAD_DIM]))
    else:
        tl.store(Out + head[0].to(tl.int64) * so.z + head[1].to(tl.int64) * so.h
                 + offs_m[:, None] * so.m + offs_d[None, :] * so.k,
                 out.to(Out.dtype.element_ty), mask=offs_m[:, None] < N_CTX)


@triton.jit
def _attn_fwd(Q, K, V, sm_scale, Lse, Out, sq, so, H, N_CTX, tr, meta, mk):
    # sq: Q's strides (K's and V's too unless meta.OWN_KV: then mk.sk), so: Out's. N_CTX: rows of Q
    # (a group's packed heads when meta.PACKED), H: heads of K and V. tr: the trace buffers
    # (ForwardTraceArgs; NO_FORWARD_TRACE when meta.TRACE is off). meta: FwdMeta; mk: MaskArgs.
    # MASKED_TILES False leaves the masked loop out of the compiled kernel: even empty, its
    # pipelined prologue and epilogue cost registers.
    # KV_SPLITS > 1 (split-KV, as flash-decoding does): program (i, bh, split) folds in only its
    # split's contiguous share of the kv-blocks and writes its partial (m, l, O = acc / l) into
    # Out viewed as (batch, heads * KV_SPLITS, N, d) and Lse as (2, batch * heads * KV_SPLITS, N);
    # kernels/flash_merge.py merges them.
    HEAD_DIM: tl.constexpr = meta.HEAD_DIM
    BLOCK_M: tl.constexpr = meta.BLOCK_M
    BLOCK_N: tl.constexpr = meta.BLOCK_N
    KV_SPLITS: tl.constexpr = meta.KV_SPLITS
    tl.static_assert(meta.SPLIT == 1 or meta.SPLIT == 2, "SPLIT is 1 or 2")
    tl.static_assert(KV_SPLITS == 1 or (meta.SPLIT == 1 and not meta.USE_TMA), "split-KV runs whole q-blocks, pointer loads")
    tl.static_assert(meta.MASKED_TILES or not meta.CAUSAL, "causal attention masks the diagonal band")
    tl.static_assert(meta.SPLIT == 1 or not meta.TRACE, "the trace records whole q-blocks: SPLIT == 1")
    tl.static_assert(meta.SPLIT == 1 or not meta.INTERVALS, "row intervals run whole q-blocks: SPLIT == 1")
    tl.static_assert(meta.MASKED_TILES or not meta.INTERVALS, "row intervals mask their edges")
    N_KV = mk.n_kv if meta.OWN_KV else N_CTX
    sk = mk.sk if meta.OWN_KV else sq
    ROWS: tl.constexpr = BLOCK_M // meta.SPLIT  # rows per half (SPLIT == 2) or the whole q-block
    if meta.CAUSAL:  # the last q-blocks have the most kv-blocks: launch them first, fewer idle SMs at the end
        start_m = tl.num_programs(0) - 1 - tl.program_id(0)
    else:
        start_m = tl.program_id(0)
    off_hz = tl.program_id(1)
    off_z = off_hz // H
    off_h = off_hz % H
    head = (off_z, off_h)
    if meta.USE_TMA:  # Q, K, V, Out are (batch, heads, seq_len, head_dim) tensor descriptors
        kv = (K, V)
    else:
        kv = (K + off_z.to(tl.int64) * sk.z + off_h.to(tl.int64) * sk.h,
              V + off_z.to(tl.int64) * sk.z + off_h.to(tl.int64) * sk.h)

    row0 = start_m * BLOCK_M
    offs_m = row0 + tl.arange(0, ROWS)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N_CTX
    # -- Q_i is loaded once and stays on chip for the whole kv loop --
    q = _load_q(Q, head, row0, offs_m, offs_d, sq, N_CTX, ROWS, meta)
    m_i = tl.zeros([ROWS], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([ROWS], dtype=tl.float32)
    acc = tl.zeros([ROWS, HEAD_DIM], dtype=tl.float32)
    if meta.SPLIT == 2:  # the second half of the q-block's rows, with its own softmax state
        q1 = _load_q(Q, head, row0 + ROWS, offs_m + ROWS, offs_d, sq, N_CTX, ROWS, meta)
        half = (q1, tl.zeros([ROWS, HEAD_DIM], dtype=tl.float32), tl.zeros([ROWS], dtype=tl.float32),
                tl.zeros([ROWS], dtype=tl.float32) - float("inf"))
    else:  # stand-ins, never read
        half = (q, acc, l_i, m_i)
    qk_scale = sm_scale * LOG2E  # exp(x) == exp2(x * log2(e))

    if meta.INTERVALS:
        # each row's keys [key_lo, key_hi); the tiles no row sees are skipped: never loaded
        key_lo, key_hi = key_bounds(offs_m, row_ok, N_CTX, N_KV, mk, meta.CAUSAL, meta.WINDOW_LEFT,
                                    meta.WINDOW_RIGHT, meta.DOCS, meta.PACKED)
        lo, lo_full, lo_masked, hi = tile_bounds(key_lo, key_hi, row_ok, N_KV, BLOCK_N)
        if KV_SPLITS > 1:  # this program's share of the kv-blocks
            split = tl.program_id(2)
            n_kv = tl.cdiv(N_KV, BLOCK_N)
            lo = tl.maximum(lo, (split * n_kv // KV_SPLITS) * BLOCK_N)
            hi = tl.minimum(hi, tl.minimum(((split + 1) * n_kv // KV_SPLITS) * BLOCK_N, N_KV))
            lo_full = tl.minimum(tl.maximum(lo_full, lo), hi)
            lo_masked = tl.minimum(tl.maximum(lo_masked, lo_full), hi)
    else:
        # kv-blocks [0, lo_masked) need no mask; [lo_masked, hi) hold the ragged end of the
        # sequence and, when causal, the diagonal band. Tiles past hi are above the diagonal: skipped.
        key_lo, key_hi = offs_m, offs_m  # stand-ins, never read
        if meta.CAUSAL:
            hi = tl.minimum((start_m + 1) * BLOCK_M, N_KV)
            lo_masked = tl.minimum((start_m * BLOCK_M) // BLOCK_N, N_KV // BLOCK_N) * BLOCK_N
        else:
            hi = N_KV
            lo_masked = (N_KV // BLOCK_N) * BLOCK_N
        lo = 0
        if KV_SPLITS > 1:  # this program's share of the kv-blocks: [lo, split_hi)
            split = tl.program_id(2)
            n_kv = tl.cdiv(N_KV, BLOCK_N)
            lo = (split * n_kv // KV_SPLITS) * BLOCK_N
            split_hi = tl.minimum(((split + 1) * n_kv // KV_SPLITS) * BLOCK_N, N_KV)
            hi = tl.minimum(hi, split_hi)
            lo_masked = tl.maximum(tl.minimum(lo_masked, split_hi), lo)
        lo_full = lo
        if meta.KEY_TILE > 0:  # every tile has masked lanes
            lo_masked = lo_full

    slot = -1
    step = 0
    if meta.TRACE:
        slot = tl.load(tr.idx + start_m)
        tl.atomic_add(tr.counters + C_Q, tl.sum(row_ok.to(tl.int64)) * HEAD_DIM)  # Q_i loaded
    n = (N_CTX, N_KV)
    rows = (offs_m, key_lo, key_hi)
    if meta.INTERVALS:  # [lo, lo_full): the window's lower edge, a document's start
        acc, l_i, m_i, half, step = _attn_fwd_inner(acc, l_i, m_i, q, half, kv, head, sk, start_m, lo, lo_full,
                                                    qk_scale, n, rows, offs_d, tr, slot, step, meta, True)
    acc, l_i, m_i, half, step = _attn_fwd_inner(acc, l_i, m_i, q, half, kv, head, sk, start_m, lo_full, lo_masked,
                                                qk_scale, n, rows, offs_d, tr, slot, step, meta, False)
    if meta.MASKED_TILES:
        acc, l_i, m_i, half, step = _attn_fwd_inner(acc, l_i, m_i, q, half, kv, head, sk, start_m, lo_masked, hi,
                                                    qk_scale, n, rows, offs_d, tr, slot, step, meta, True)
    if KV_SPLITS > 1:  # the partial (m, l, O): a split with no kv-block of this q-block has l = 0, O = 0
        part = off_hz.to(tl.int64) * KV_SPLITS + split
        o = tl.where(l_i[:, None] > 0, acc / tl.where(l_i > 0, l_i, 1.0)[:, None], 0.0)
        tl.store(Out + off_z.to(tl.int64) * so.z + (off_h.to(tl.int64) * KV_SPLITS + split) * so.h
                 + offs_m[:, None] * so.m + offs_d[None, :] * so.k, o, mask=row_ok[:, None])
        ml_plane = tl.num_programs(1).to(tl.int64) * KV_SPLITS * N_CTX
        tl.store(Lse + part * N_CTX + offs_m, m_i * LN2, mask=row_ok)
        tl.store(Lse + ml_plane + part * N_CTX + offs_m, l_i, mask=row_ok)
    else:
        _store_out(acc, l_i, m_i, Out, Lse, head, off_hz, row0, offs_m, offs_d, so, N_CTX, ROWS, meta)
    if meta.SPLIT == 2:
        _store_out(half[1], half[2], half[3], Out, Lse, head, off_hz, row0 + ROWS, offs_m + ROWS, offs_d, so, N_CTX,
                   ROWS, meta)
    if meta.TRACE:
        tl.atomic_add(tr.counters + C_O, tl.sum(row_ok.to(tl.int64)) * HEAD_DIM)  # O_i (a partial O_i) stored
        tl.atomic_add(tr.counters + C_LSE, tl.sum(row_ok.to(tl.int64)) * (2 if KV_SPLITS > 1 else 1))  # lse (m, l)


# ------------------------------------------------------------------------------ host side
def tma_supported(*tensors) -> bool:
    """Tensor descriptors (Hopper's bulk copy engine; the interpreter emulates them) need a dense
    last dimension and 16-byte aligned strides and base addresses."""
    if not backend.INTERPRET and torch.cuda.get_device_capability()[0] < 9:
        return False
    for t in tensors:
        if t.stride(-1) != 1 or t.data_ptr() % 16:
            return False
        if any((st * t.element_size()) % 16 for st in t.stride()[:-1]):
            return False
    return True


def _descriptors(tensors, rows):
    from triton.tools.tensor_descriptor import TensorDescriptor

    return [TensorDescriptor(t, shape=list(t.shape), strides=list(t.stride()), block_shape=[1, 1, r, t.shape[-1]])
            for t, r in zip(tensors, rows, strict=True)]


class Docs(NamedTuple):
    """Packed documents on the device: cu_seqlens and the document of every position, int32."""
    cu: object  # (D + 1,)
    doc: object  # (N,)


def launch(q, k, v, causal: bool, sm_scale: float, config: Config, *, trace: TraceBuffers | None = None, out=None,
           use_tma=None, kv_splits=None, window=(-1, -1), docs: Docs | None = None, key_tile: int = 0):
    """(out, lse) of one launch with this config. Arguments already checked (attention.py does):
    q (batch, heads, n_q, head_dim), k and v (batch, kv_heads, n_kv, head_dim) with one set of
    strides, kv_heads dividing heads (q and out contiguous when fewer), sm_scale a float, window
    (left, right) with -1 for no limit, docs the packed documents or None. kv_splits (default
    config.kv_splits) > 1: split-KV, each q-block's kv range in kv_splits programs, then flash_merge.
    key_tile > 0: only the first key_tile keys of each block_n tile are real (kernels/hand.py's layout)."""
    batch, heads, n_q, head_dim = q.shape
    kv_heads, n_kv = k.shape[1], k.shape[2]
    group, rows = heads // kv_heads, heads // kv_heads * n_q
    kv_splits = config.kv_splits if kv_splits is None else kv_splits
    if out is None:
        out = torch.empty_like(q)
    lse = torch.empty((batch, heads, n_q), dtype=torch.float32, device=q.device)
    qv, ov, lv = q, out, lse
    if group > 1:  # a group's query heads as one column of group * n_q rows: each K_j, V_j serves them all
        qv, ov = (t.view(batch, kv_heads, rows, head_dim) for t in (q, out))
        lv = lse.view(batch, kv_heads, rows)
    intervals = masks.needs_intervals(causal, window, docs is not None, group, n_q, n_kv)
    own_kv = k.shape[1:3] != qv.shape[1:3] or k.stride() != qv.stride()
    grid = (cdiv(rows, config.block_m), batch * kv_heads) + ((kv_splits,) if kv_splits > 1 else ())
    if kv_splits > 1:  # the kernel writes partials; the merge writes out and lse
        use_tma = False
        part_o = torch.empty((batch, kv_heads * kv_splits, rows, head_dim), dtype=torch.float32, device=q.device)
        part_ml = torch.empty((2, batch * kv_heads * kv_splits, rows), dtype=torch.float32, device=q.device)
        dest = (part_o, part_ml)
    else:
        dest = (ov, lv)
    if use_tma is None:
        use_tma = tma_supported(qv, k, v, ov)
    block_rows = config.block_m // config.split
    tensors = (_descriptors((qv, k, v, ov), (block_rows, config.block_n, config.block_n, block_rows)) if use_tma
               else (qv, k, v, dest[0]))
    left, right = window
    fmeta = meta(FwdMeta, HEAD_DIM=head_dim, BLOCK_M=config.block_m, BLOCK_N=config.block_n, CAUSAL=bool(causal),
                 TRACE=trace is not None, DOT_PRECISION=precision(q.dtype), USE_TMA=use_tma,
                 WARP_SPEC=config.warp_spec, SPLIT=config.split,
                 MASKED_TILES=bool(causal) or n_kv % config.block_n != 0 or kv_splits > 1 or intervals or key_tile > 0,
                 LATE_V=config.late_v, KV_SPLITS=kv_splits, OWN_KV=own_kv, INTERVALS=intervals,
                 WINDOW_LEFT=left >= 0, WINDOW_RIGHT=right >= 0, DOCS=docs is not None, PACKED=group > 1 and intervals,
                 KEY_TILE=key_tile)
    mk = MaskArgs(n_kv=n_kv if own_kv else None, n_q=n_q if group > 1 and intervals else None,
                  sk=strides(k) if own_kv else None, left=left if left >= 0 else None,
                  right=right if right >= 0 else None, doc=docs.doc if docs is not None else None,
                  cu=docs.cu if docs is not None else None)
    jit_launch(_attn_fwd, grid, *tensors[:3], sm_scale, dest[1], tensors[3], strides(qv), strides(dest[0]), kv_heads,
               rows, trace.args() if trace is not None else NO_FORWARD_TRACE, fmeta, mk, **config.compile_options())
    if kv_splits > 1:
        flash_merge.merge(part_o, part_ml, ov, lv, kv_splits, trace.counters if trace is not None else None)
        if trace is not None:
            trace.split_o, trace.split_ml = part_o, part_ml
    return out, lse
