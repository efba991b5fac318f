"""The FlashAttention-2 backward as three Triton kernels; no N x N tensor anywhere.

dS = P o (dP - D) with D = rowsum(P o dP) = rowsum(dO o O): one number per row replaces the row's
N x N softmax Jacobian diag(P) - P P^T.
  preprocess  D_i = rowsum(dO_i o O_i)                       read O, dO ; write D
  dK/dV       one program per kv-block j, q-blocks stream:   read K_j, V_j once ; per tile Q_i, dO_i,
              P^T recomputed from the stored lse,            lse_i, D_i ; write dK_j, dV_j
              dV_j += P^T dO_i, dK_j += dS^T Q_i
  dQ          one program per q-block i, kv-blocks stream:   read Q_i, dO_i, lse_i, D_i once ;
              dQ_i += dS K_j                                 per tile K_j, V_j ; write dQ_i
The gradients are written contiguous (batch, heads, seq_len, head_dim). COUNT (constexpr) makes
every kernel count the elements it loads and stores (masked lanes excluded); TRACE makes the
dK/dV kernel record its tiles (`_trace_bwd_tile`). Both compile out when off.

The forward's masks (kernels/masks.py), compile-time options as there: the dQ kernel bounds its kv
loop by its rows' key intervals exactly as the forward does (flash_fwd.key_bounds, tile_bounds);
the dK/dV kernel bounds its q loop by the rows that see its keys (`_rows_seeing`: the inverse of
the intervals, which grow with the row). GQA: the dK/dV program of a K/V head walks the q-blocks
of every query head of its group, so K_j, V_j are loaded once for the group and dK_j, dV_j summed
over it; the dQ program of query head h reads K/V head h // group.

Not for: validating arguments or picking a config (attention.py, tuning.py), trace objects
(trace_backward.py).
"""
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from kernels import backend, flash_masks, masks, traffic
from kernels.flash_fwd import LOG2E
from kernels.flash_masks import MaskArgs, key_bounds, tile_bounds
from kernels.launch import Config, cdiv, jit_launch, meta, precision, strides
from kernels.trace_buffers import NO_BACKWARD_TRACE, BackwardTraceBuffers, counting

COUNTER_KEYS = traffic.BACKWARD_COUNTERS  # the counters, in this order
_slot = {k: tl.constexpr(i) for i, k in enumerate(COUNTER_KEYS)}  # counter slots by the names traffic.py models


class DkdvMeta(NamedTuple):
    """The dK/dV kernel's compile-time options (each a tl.constexpr)."""
    HEAD_DIM: int
    BLOCK_M: int
    BLOCK_N: int
    CAUSAL: bool
    COUNT: bool
    TRACE: bool
    DOT_PRECISION: str
    RAGGED: bool  # seq_len is not a multiple of BLOCK_M: the last q-block has rows to mask
    FUSED_DQ: bool  # also add this program's dQ terms into a float32 dQ atomically (no dQ kernel)
    OWN_KV: bool  # K, V have their own length, heads and strides (MaskArgs.n_kv, .sk): decode, GQA
    INTERVALS: bool  # rows' keys are intervals (the forward's FwdMeta.INTERVALS)
    WINDOW_LEFT: bool
    WINDOW_RIGHT: bool
    DOCS: bool
    GROUP: int  # query heads per K/V head, walked by each program


class DqMeta(NamedTuple):
    """The dQ kernel's compile-time options."""
    HEAD_DIM: int
    BLOCK_M: int
    BLOCK_N: int
    CAUSAL: bool
    COUNT: bool
    DOT_PRECISION: str
    MASKED_TILES: bool  # as in the forward: some kv-block needs a mask
    OWN_KV: bool
    INTERVALS: bool
    WINDOW_LEFT: bool
    WINDOW_RIGHT: bool
    DOCS: bool
    GROUP: int  # query heads per K/V head: query head h reads K/V head h // GROUP


C_PRE_O, C_PRE_DO, C_PRE_D = (_slot[k] for k in ("pre_o_loads", "pre_do_loads", "pre_d_stores"))
C_KV_K, C_KV_V, C_KV_Q, C_KV_DO, C_KV_LSE, C_KV_D, C_KV_DK, C_KV_DV = (_slot[f"dkdv_{k}"] for k in (
    "k_loads", "v_loads", "q_loads", "do_loads", "lse_loads", "d_loads", "dk_stores", "dv_stores"))
C_Q_Q, C_Q_DO, C_Q_LSE, C_Q_D, C_Q_K, C_Q_V, C_Q_DQ = (_slot[f"dq_{k}"] for k in (
    "q_loads", "do_loads", "lse_loads", "d_loads", "k_loads", "v_loads", "dq_stores"))


@triton.jit
def _attn_bwd_preprocess(O, DO, Delta, Counters, so, sdo, H, N_CTX,
                         HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, COUNT: tl.constexpr):
    off_hz = tl.program_id(1)
    off_z = off_hz // H
    off_h = off_hz % H
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N_CTX
    o = tl.load(O + off_z.to(tl.int64) * so.z + off_h.to(tl.int64) * so.h
                + offs_m[:, None] * so.m + offs_d[None, :] * so.k,
                mask=row_ok[:, None], other=0.0).to(tl.float32)  # read BLOCK_M x d of O
    do = tl.load(DO + off_z.to(tl.int64) * sdo.z + off_h.to(tl.int64) * sdo.h
                 + offs_m[:, None] * sdo.m + offs_d[None, :] * sdo.k,
                 mask=row_ok[:, None], other=0.0).to(tl.float32)  # read BLOCK_M x d of dO
    # -- D = rowsum(dO o O) equals rowsum(P o dP): one number per row, no Jacobian --
    delta = tl.sum(o * do, axis=1)  # [D]
    tl.store(Delta + off_hz.to(tl.int64) * N_CTX + offs_m, delta, mask=row_ok)  # write BLOCK_M
    if COUNT:
        rows = tl.sum(row_ok.to(tl.int64))
        tl.atomic_add(Counters + C_PRE_O, rows * HEAD_DIM)  # O
        tl.atomic_add(Counters + C_PRE_DO, rows * HEAD_DIM)  # dO
        tl.atomic_add(Counters + C_PRE_D, rows)  # D


@triton.jit
def _trace_bwd_tile(tr, start_n, i, step, slot, pT, dpT, dsT, dk, dv, sm_scale, offs_m, offs_n, offs_d, N_CTX, meta):
    """Record tile (i, start_n): the step kv-block j's program reached it at, and for kv-blocks with
    a tile slot its P, dP, dS (stored (block_m, block_n): query rows down, keys across, as in the
    forward) and dK_j, dV_j after the step. The planes: kernels/trace_buffers.py."""
    BLOCK_M: tl.constexpr = meta.BLOCK_M
    BLOCK_N: tl.constexpr = meta.BLOCK_N
    HEAD_DIM: tl.constexpr = meta.HEAD_DIM
    Tq = tl.cdiv(N_CTX, BLOCK_M).to(tl.int64)
    Tk = tl.cdiv(N_CTX, BLOCK_N).to(tl.int64)
    j = start_n // BLOCK_N
    tl.store(tr.idx + Tk + j * Tq + i, step)
    if slot >= 0:
        tile = slot.to(tl.int64) * Tq + i
        ok = (offs_m[None, :] < N_CTX) & (offs_n[:, None] < N_CTX)  # (BLOCK_N, BLOCK_M)
        offs_nb = tl.arange(0, BLOCK_N)
        tp = tile * BLOCK_M * BLOCK_N + tl.arange(0, BLOCK_M)[None, :] * BLOCK_N + offs_nb[:, None]
        tl.store(tr.buf + tr.p + tp, pT, mask=ok)
        tl.store(tr.buf + tr.dp + tp, dpT, mask=ok)
        tl.store(tr.buf + tr.ds + tp, dsT, mask=ok)
        ap = tile * BLOCK_N * HEAD_DIM + offs_nb[:, None] * HEAD_DIM + offs_d[None, :]
        col_ok = (offs_n < N_CTX)[:, None]
        tl.store(tr.buf + tr.dk + ap, dk * sm_scale, mask=col_ok)  # textbook units: dK so far
        tl.store(tr.buf + tr.dv + ap, dv, mask=col_ok)
    return step + 1


@triton.jit
def _attn_bwd_dkdv_inner(dk, dv, k, v, src, sq, sdo, start_n, lo, hi, scales, n, offs_n, offs_d, tr, slot, step, meta,
                         mk, MASKED: tl.constexpr):
    # src: this query head's (Q, dO, lse, D, float32 dQ) pointers; scales: (qk_scale, sm_scale);
    # n: (N_CTX rows, N_KV keys)
    Q_src, DO_src, Lse_src, Delta_src, DQ_src = src
    qk_scale, sm_scale = scales
    N_CTX, N_KV = n
    BLOCK_M: tl.constexpr = meta.BLOCK_M
    HEAD_DIM: tl.constexpr = meta.HEAD_DIM
    DOT_PRECISION: tl.constexpr = meta.DOT_PRECISION
    offs_mb = tl.arange(0, BLOCK_M)
    for start_m in tl.range(lo, hi, BLOCK_M):
        start_m = tl.multiple_of(start_m, BLOCK_M)
        offs_m = start_m + offs_mb
        # -- Q_i^T, dO_i, lse_i, D_i stream through; K_j, V_j and the dK_j, dV_j accumulators stay --
        if MASKED:  # rows past seq_len: lse = +inf makes their p exactly 0
            row_ok = offs_m < N_CTX
            qT = tl.load(Q_src + offs_m[None, :] * sq.m + offs_d[:, None] * sq.k, mask=row_ok[None, :], other=0.0)
            do = tl.load(DO_src + offs_m[:, None] * sdo.m + offs_d[None, :] * sdo.k, mask=row_ok[:, None], other=0.0)
            lse = tl.load(Lse_src + offs_m, mask=row_ok, other=float("inf"))
            Di = tl.load(Delta_src + offs_m, mask=row_ok, other=0.0)
        else:
            qT = tl.load(Q_src + offs_m[None, :] * sq.m + offs_d[:, None] * sq.k)
            do = tl.load(DO_src + offs_m[:, None] * sdo.m + offs_d[None, :] * sdo.k)
            lse = tl.load(Lse_src + offs_m)
            Di = tl.load(Delta_src + offs_m)
        # -- recompute P^T from the stored log-sum-exp: no running max on the way back --
        qkT = tl.dot(k, qT, input_precision=DOT_PRECISION)  # (BLOCK_N, BLOCK_M)
        if MASKED:
            if meta.INTERVALS:  # the keys each row sees, as the forward saw them
                key_lo, key_hi = key_bounds(offs_m, row_ok, N_CTX, N_KV, mk, meta.CAUSAL, meta.WINDOW_LEFT,
                                            meta.WINDOW_RIGHT, meta.DOCS, False)
                qkT = tl.where((offs_n[:, None] >= key_lo[None, :]) & (offs_n[:, None] < key_hi[None, :]), qkT,
                               float("-inf"))
            elif meta.CAUSAL:  # the diagonal band: key j may only be seen by queries i >= j
                qkT = tl.where(offs_m[None, :] >= offs_n[:, None], qkT, float("-inf"))
        pT = tl.math.exp2(qkT * qk_scale - lse[None, :] * LOG2E)
        # -- dV_j += P^T dO_i --
        dv = tl.dot(pT.to(do.dtype), do, dv, input_precision=DOT_PRECISION)
        # -- dS = P o (dP - D): D replaces the row's N x N Jacobian diag(P) - P P^T --
        dpT = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)  # (BLOCK_N, BLOCK_M)
        dsT = pT * (dpT - Di[None, :])  # [dS]
        # -- dK_j += dS^T Q_i; sm_scale is applied once at the end --
        dk = tl.dot(dsT.to(qT.dtype), tl.trans(qT), dk, input_precision=DOT_PRECISION)
        if meta.FUSED_DQ:  # FA2's schedule: dQ_i += scale dS K_j, added atomically into a float32 dQ
            dq = tl.dot(tl.trans(dsT).to(k.dtype), k, input_precision=DOT_PRECISION)  # (BLOCK_M, HEAD_DIM)
            tl.atomic_add(DQ_src + offs_m[:, None] * HEAD_DIM + offs_d[None, :], dq * sm_scale,
                          mask=(offs_m < N_CTX)[:, None], sem="relaxed")
        if meta.COUNT:
            rows = tl.sum((offs_m < N_CTX).to(tl.int64))
            tl.atomic_add(tr.counters + C_KV_Q, rows * HEAD_DIM)  # Q_i
            tl.atomic_add(tr.counters + C_KV_DO, rows * HEAD_DIM)  # dO_i
            tl.atomic_add(tr.counters + C_KV_LSE, rows)  # lse_i
            tl.atomic_add(tr.counters + C_KV_D, rows)  # D_i
        if meta.TRACE:
            step = _trace_bwd_tile(tr, start_n, start_m // BLOCK_M, step, slot, pT, dpT, dsT, dk, dv, sm_scale,
                                   offs_m, offs_n, offs_d, N_CTX, meta)
    return dk, dv, step


@triton.jit
def _dkdv_rows(dk, dv, k, v, src, sq, sdo, start_n, seg, scales, n, offs_n, offs_d, tr, slot, step, meta, mk):
    """One query head's q-blocks past kv-block start_n's program: seg = (lo, band_hi, mid_hi, hi),
    masked [lo, band_hi) (the causal band, an interval's edge), whole [band_hi, mid_hi), masked
    [mid_hi, hi) (the ragged last q-block, an interval's edge)."""
    lo, band_hi, mid_hi, hi = seg
    if meta.CAUSAL or meta.INTERVALS:
        dk, dv, step = _attn_bwd_dkdv_inner(dk, dv, k, v, src, sq, sdo, start_n, lo, band_hi, scales, n, offs_n,
                                            offs_d, tr, slot, step, meta, mk, True)
    dk, dv, step = _attn_bwd_dkdv_inner(dk, dv, k, v, src, sq, sdo, start_n, band_hi, mid_hi, scales, n, offs_n,
                                        offs_d, tr, slot, step, meta, mk, False)
    if meta.RAGGED or meta.INTERVALS:
        dk, dv, step = _attn_bwd_dkdv_inner(dk, dv, k, v, src, sq, sdo, start_n, mid_hi, hi, scales, n, offs_n,
                                            offs_d, tr, slot, step, meta, mk, True)
    return dk, dv, step


@triton.jit
def _attn_bwd_dkdv(Q, K, V, DO, Lse, Delta, DK, DV, DQ_ACC, sm_scale, sq, sdo, H, N_CTX, tr, meta, mk):
    # sq: Q's strides (K's and V's too unless meta.OWN_KV: then mk.sk); sdo: dO's. H: K/V heads (the
    # query heads are H * GROUP). tr: BackwardTraceArgs (its counters when meta.COUNT).
    # meta.FUSED_DQ: DQ_ACC is a float32 (batch * heads, N, d).
    # causal: the first kv-blocks meet the most q-blocks, and program 0 launches first
    BLOCK_M: tl.constexpr = meta.BLOCK_M
    BLOCK_N: tl.constexpr = meta.BLOCK_N
    HEAD_DIM: tl.constexpr = meta.HEAD_DIM
    GROUP: tl.constexpr = meta.GROUP
    tl.static_assert(not meta.TRACE or not (meta.OWN_KV or meta.INTERVALS), "the backward trace: plain or causal")
    N_KV = mk.n_kv if meta.OWN_KV else N_CTX
    start_n = tl.program_id(0) * BLOCK_N
    off_hz = tl.program_id(1)
    off_z = off_hz // H
    off_h = off_hz % H
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    col_ok = offs_n < N_KV
    head = off_z.to(tl.int64) * sq.z + off_h.to(tl.int64) * sq.h
    if meta.OWN_KV:
        sk = mk.sk
        kv_head = off_z.to(tl.int64) * sk.z + off_h.to(tl.int64) * sk.h
    else:
        sk = sq
        kv_head = head
    # -- K_j, V_j are loaded once and stay on chip for the whole q loop (every query head of the group) --
    k = tl.load(K + kv_head + offs_n[:, None] * sk.m + offs_d[None, :] * sk.k, mask=col_ok[:, None], other=0.0)
    v = tl.load(V + kv_head + offs_n[:, None] * sk.m + offs_d[None, :] * sk.k, mask=col_ok[:, None], other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    scales = (sm_scale * LOG2E, sm_scale)
    n = (N_CTX, N_KV)

    if meta.INTERVALS:  # the rows whose key intervals reach this kv-block
        seg = flash_masks.rows_seeing(start_n, N_CTX, N_KV, mk, meta)
    else:
        # q-blocks [lo, band_hi) cross the causal diagonal of kv-block j (masked); [band_hi, mid_hi)
        # lie wholly below it (no mask); [mid_hi, N) is the ragged last q-block (rows masked).
        # q-blocks before lo see none of these keys: skipped.
        full_hi = (N_CTX // BLOCK_M) * BLOCK_M
        if meta.CAUSAL:
            lo = (start_n // BLOCK_M) * BLOCK_M
            band_hi = tl.minimum(tl.cdiv(start_n + BLOCK_N, BLOCK_M) * BLOCK_M, N_CTX)
            mid_hi = tl.maximum(band_hi, full_hi)
        else:
            lo = 0
            band_hi = 0
            mid_hi = full_hi
        seg = (lo, band_hi, mid_hi, N_CTX)

    slot = -1
    step = 0
    if meta.TRACE:
        slot = tl.load(tr.idx + tl.program_id(0))
    if meta.COUNT:
        cols = tl.sum(col_ok.to(tl.int64))
        tl.atomic_add(tr.counters + C_KV_K, cols * HEAD_DIM)  # K_j
        tl.atomic_add(tr.counters + C_KV_V, cols * HEAD_DIM)  # V_j
    if GROUP == 1:
        src = (Q + head, DO + off_z.to(tl.int64) * sdo.z + off_h.to(tl.int64) * sdo.h,
               Lse + off_hz.to(tl.int64) * N_CTX, Delta + off_hz.to(tl.int64) * N_CTX,
               DQ_ACC + off_hz.to(tl.int64) * N_CTX * HEAD_DIM if meta.FUSED_DQ else DQ_ACC)
        dk, dv, step = _dkdv_rows(dk, dv, k, v, src, sq, sdo, start_n, seg, scales, n, offs_n, offs_d, tr, slot, step,
                                  meta, mk)
    else:  # GQA: the group's query heads one after the other, dK_j and dV_j summed over them
        for g in tl.range(0, GROUP):
            q_h = off_h * GROUP + g
            q_hz = (off_z * H * GROUP + q_h).to(tl.int64)
            src = (Q + off_z.to(tl.int64) * sq.z + q_h.to(tl.int64) * sq.h,
                   DO + off_z.to(tl.int64) * sdo.z + q_h.to(tl.int64) * sdo.h, Lse + q_hz * N_CTX, Delta + q_hz * N_CTX,
                   DQ_ACC + q_hz * N_CTX * HEAD_DIM if meta.FUSED_DQ else DQ_ACC)
            dk, dv, step = _dkdv_rows(dk, dv, k, v, src, sq, sdo, start_n, seg, scales, n, offs_n, offs_d, tr, slot,
                                      step, meta, mk)
    # -- epilogue: dK_j, dV_j written once (contiguous gradients) --
    dk = dk * sm_scale
    g = off_hz.to(tl.int64) * N_KV * HEAD_DIM + offs_n[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(DK + g, dk.to(DK.dtype.element_ty), mask=col_ok[:, None])
    tl.store(DV + g, dv.to(DV.dtype.element_ty), mask=col_ok[:, None])
    if meta.COUNT:
        tl.atomic_add(tr.counters + C_KV_DK, cols * HEAD_DIM)  # dK_j
        tl.atomic_add(tr.counters + C_KV_DV, cols * HEAD_DIM)  # dV_j


@triton.jit
def _attn_bwd_dq_inner(dq, q, do, lse, Di, K_src, V_src, sk, lo, hi, qk_scale, N_KV, rows, offs_d, Counters, meta,
                       MASKED: tl.constexpr):
    # sk: K's and V's strides; rows: (offs_m, key_lo, key_hi) as in the forward
    BLOCK_N: tl.constexpr = meta.BLOCK_N
    DOT_PRECISION: tl.constexpr = meta.DOT_PRECISION
    offs_m, key_lo, key_hi = rows
    offs_nb = tl.arange(0, BLOCK_N)
    for start_n in tl.range(lo, hi, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        offs_n = start_n + offs_nb
        # -- K_j^T, V_j^T stream through; Q_i, dO_i and the dQ_i accumulator stay --
        if MASKED:
            kT = tl.load(K_src + offs_n[None, :] * sk.m + offs_d[:, None] * sk.k, mask=offs_n[None, :] < N_KV, other=0.0)
            vT = tl.load(V_src + offs_n[None, :] * sk.m + offs_d[:, None] * sk.k, mask=offs_n[None, :] < N_KV, other=0.0)
        else:
            kT = tl.load(K_src + offs_n[None, :] * sk.m + offs_d[:, None] * sk.k)
            vT = tl.load(V_src + offs_n[None, :] * sk.m + offs_d[:, None] * sk.k)
        # -- recompute P from the stored log-sum-exp --
        qk = tl.dot(q, kT, input_precision=DOT_PRECISION)  # (BLOCK_M, BLOCK_N)
        if MASKED:  # ragged last kv-block, the causal diagonal band, an interval's edges
            if meta.INTERVALS:
                keep = (offs_n[None, :] >= key_lo[:, None]) & (offs_n[None, :] < key_hi[:, None])
            else:
                keep = offs_n[None, :] < N_KV
                if meta.CAUSAL:
                    keep = keep & (offs_m[:, None] >= offs_n[None, :])
            qk = tl.where(keep, qk, float("-inf"))
        p = tl.math.exp2(qk * qk_scale - lse[:, None] * LOG2E)
        # -- dS = P o (dP - D), dQ_i += dS K_j; sm_scale is applied once at the end --
        dp = tl.dot(do, vT, input_precision=DOT_PRECISION)
        ds = p * (dp - Di[:, None])
        dq = tl.dot(ds.to(kT.dtype), tl.trans(kT), dq, input_precision=DOT_PRECISION)
        if meta.COUNT:
            cols = tl.sum((offs_n < N_KV).to(tl.int64))
            tl.atomic_add(Counters + C_Q_K, cols * meta.HEAD_DIM)  # K_j
            tl.atomic_add(Counters + C_Q_V, cols * meta.HEAD_DIM)  # V_j
    return dq


@triton.jit
def _attn_bwd_dq(Q, K, V, DO, Lse, Delta, DQ, sm_scale, sq, sdo, H, N_CTX, Counters, meta, mk):
    # sq: Q's strides (K's and V's too unless meta.OWN_KV: then mk.sk); sdo: dO's; H: query heads;
    # meta: DqMeta, mk: the forward's MaskArgs
    BLOCK_M: tl.constexpr = meta.BLOCK_M
    BLOCK_N: tl.constexpr = meta.BLOCK_N
    HEAD_DIM: tl.constexpr = meta.HEAD_DIM
    N_KV = mk.n_kv if meta.OWN_KV else N_CTX
    if meta.CAUSAL:  # the last q-blocks meet the most kv-blocks: launch them first
        start_m = (tl.num_programs(0) - 1 - tl.program_id(0)) * BLOCK_M
    else:
        start_m = tl.program_id(0) * BLOCK_M
    off_hz = tl.program_id(1)
    off_z = off_hz // H
    off_h = off_hz % H
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N_CTX
    head = off_z.to(tl.int64) * sq.z + off_h.to(tl.int64) * sq.h
    if meta.OWN_KV:  # query head h reads K/V head h // GROUP
        sk = mk.sk
        kv_head = off_z.to(tl.int64) * sk.z + (off_h // meta.GROUP).to(tl.int64) * sk.h
    else:
        sk = sq
        kv_head = head
    # -- Q_i, dO_i, lse_i, D_i are loaded once --
    q = tl.load(Q + head + offs_m[:, None] * sq.m + offs_d[None, :] * sq.k, mask=row_ok[:, None], other=0.0)
    do = tl.load(DO + off_z.to(tl.int64) * sdo.z + off_h.to(tl.int64) * sdo.h
                 + offs_m[:, None] * sdo.m + offs_d[None, :] * sdo.k, mask=row_ok[:, None], other=0.0)
    lse = tl.load(Lse + off_hz.to(tl.int64) * N_CTX + offs_m, mask=row_ok, other=float("inf"))
    Di = tl.load(Delta + off_hz.to(tl.int64) * N_CTX + offs_m, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    qk_scale = sm_scale * LOG2E
    if meta.INTERVALS:  # the forward's bounds: the rows' key intervals
        key_lo, key_hi = key_bounds(offs_m, row_ok, N_CTX, N_KV, mk, meta.CAUSAL, meta.WINDOW_LEFT, meta.WINDOW_RIGHT,
                                    meta.DOCS, False)
        lo, lo_full, lo_masked, hi = tile_bounds(key_lo, key_hi, row_ok, N_KV, BLOCK_N)
    else:
        # same split as the forward: [0, lo_masked) unmasked, [lo_masked, hi) the ragged end and,
        # when causal, the diagonal band; tiles past hi are above the diagonal: skipped
        key_lo, key_hi = offs_m, offs_m  # stand-ins, never read
        if meta.CAUSAL:
            hi = tl.minimum(start_m + BLOCK_M, N_KV)
            lo_masked = tl.minimum(start_m // BLOCK_N, N_KV // BLOCK_N) * BLOCK_N
        else:
            hi = N_KV
            lo_masked = (N_KV // BLOCK_N) * BLOCK_N
        lo_full = 0
    rows = (offs_m, key_lo, key_hi)
    if meta.INTERVALS:
        dq = _attn_bwd_dq_inner(dq, q, do, lse, Di, K + kv_head, V + kv_head, sk, lo, lo_full, qk_scale, N_KV, rows,
                                offs_d, Counters, meta, True)
    dq = _attn_bwd_dq_inner(dq, q, do, lse, Di, K + kv_head, V + kv_head, sk, lo_full, lo_masked, qk_scale, N_KV, rows,
                            offs_d, Counters, meta, False)
    if meta.MASKED_TILES:
        dq = _attn_bwd_dq_inner(dq, q, do, lse, Di, K + kv_head, V + kv_head, sk, lo_masked, hi, qk_scale, N_KV, rows,
                                offs_d, Counters, meta, True)
    # -- epilogue: dQ_i written once --
    dq = dq * sm_scale
    g = off_hz.to(tl.int64) * N_CTX * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(DQ + g, dq.to(DQ.dtype.element_ty), mask=row_ok[:, None])
    if meta.COUNT:
        rows = tl.sum(row_ok.to(tl.int64))
        tl.atomic_add(Counters + C_Q_Q, rows * HEAD_DIM)  # Q_i
        tl.atomic_add(Counters + C_Q_DO, rows * HEAD_DIM)  # dO_i
        tl.atomic_add(Counters + C_Q_LSE, rows)  # lse_i
        tl.atomic_add(Counters + C_Q_D, rows)  # D_i
        tl.atomic_add(Counters + C_Q_DQ, rows * HEAD_DIM)  # dQ_i


# ------------------------------------------------------------------------------ host side
def preprocess(out, do, counters=None):
    """D = rowsum(dO o O), float32 (batch, heads, seq_len)."""
    batch, heads, seq_len, head_dim = out.shape
    delta = torch.empty((batch, heads, seq_len), dtype=torch.float32, device=out.device)
    block = 64 if backend.INTERPRET or head_dim > 64 else 128
    jit_launch(_attn_bwd_preprocess, (cdiv(seq_len, block), batch * heads),
               out, do, delta, counters, strides(out), strides(do), heads, seq_len,
               HEAD_DIM=head_dim, BLOCK_M=block, COUNT=counters is not None)
    return delta


def _mask_args(q, k, causal, window, docs) -> tuple[dict, MaskArgs]:
    """The mask metas every backward kernel shares, and their runtime arguments (the forward's MaskArgs)."""
    heads, n_q = q.shape[1], q.shape[2]
    kv_heads, n_kv = k.shape[1], k.shape[2]
    group = heads // kv_heads
    own_kv = k.shape != q.shape or k.stride() != q.stride()
    intervals = masks.needs_intervals(causal, window, docs is not None, 1, n_q, n_kv)  # unpacked: heads apart
    left, right = window
    metas = dict(OWN_KV=own_kv, INTERVALS=intervals, WINDOW_LEFT=left >= 0, WINDOW_RIGHT=right >= 0,
                 DOCS=docs is not None, GROUP=group)
    mk = MaskArgs(n_kv=n_kv if own_kv else None, n_q=None, sk=strides(k) if own_kv else None,
                  left=left if left >= 0 else None, right=right if right >= 0 else None,
                  doc=docs.doc if docs is not None else None, cu=docs.cu if docs is not None else None)
    return metas, mk


def launch_dkdv(q, k, v, do, lse, delta, causal: bool, sm_scale: float, config: Config, *, dk=None, dv=None,
                trace: BackwardTraceBuffers | None = None, counters=None, dq_acc=None, window=(-1, -1), docs=None):
    """(dk, dv) from the dK/dV kernel at `config`. Arguments already checked (attention.py does):
    q (batch, heads, n_q, d), k and v (batch, kv_heads, n_kv, d) with one set of strides; window
    and docs as for the forward (flash_fwd.launch). dq_acc: a zeroed float32 (batch, heads, n_q, d):
    the kernel adds the scaled dQ into it (FUSED_DQ)."""
    batch, heads, seq_len, head_dim = q.shape
    kv_heads, n_kv = k.shape[1], k.shape[2]
    dk = torch.empty(k.shape, dtype=q.dtype, device=q.device) if dk is None else dk
    dv = torch.empty(k.shape, dtype=q.dtype, device=q.device) if dv is None else dv
    tr = trace.args() if trace is not None else (counting(counters) if counters is not None else NO_BACKWARD_TRACE)
    metas, mk = _mask_args(q, k, causal, window, docs)
    kmeta = meta(DkdvMeta, HEAD_DIM=head_dim, BLOCK_M=config.block_m, BLOCK_N=config.block_n, CAUSAL=bool(causal),
                 COUNT=tr.counters is not None, TRACE=trace is not None, DOT_PRECISION=precision(q.dtype),
                 RAGGED=seq_len % config.block_m != 0, FUSED_DQ=dq_acc is not None, **metas)
    jit_launch(_attn_bwd_dkdv, (cdiv(n_kv, config.block_n), batch * kv_heads),
               q, k, v, do, lse, delta, dk, dv, dq_acc, sm_scale, strides(q), strides(do), kv_heads, seq_len, tr,
               kmeta, mk, **config.compile_options())
    return dk, dv


def launch_dq(q, k, v, do, lse, delta, causal: bool, sm_scale: float, config: Config, *, dq=None, counters=None,
              window=(-1, -1), docs=None):
    """dq from the dQ kernel; config and arguments as for launch_dkdv."""
    batch, heads, seq_len, head_dim = q.shape
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device) if dq is None else dq
    metas, mk = _mask_args(q, k, causal, window, docs)
    qmeta = meta(DqMeta, HEAD_DIM=head_dim, BLOCK_M=config.block_m, BLOCK_N=config.block_n, CAUSAL=bool(causal),
                 COUNT=counters is not None, DOT_PRECISION=precision(q.dtype),
                 MASKED_TILES=bool(causal) or k.shape[2] % config.block_n != 0 or metas["INTERVALS"], **metas)
    jit_launch(_attn_bwd_dq, (cdiv(seq_len, config.block_m), batch * heads),
               q, k, v, do, lse, delta, dq, sm_scale, strides(q), strides(do), heads, seq_len, counters, qmeta, mk,
               **config.compile_options())
    return dq


def launch(q, k, v, out, lse, do, causal: bool, sm_scale: float, dkdv: Config, dq: Config, *,
           trace: BackwardTraceBuffers | None = None, count: bool = False, window=(-1, -1), docs=None):
    """(dq, dk, dv, delta, counters): the three kernels in order. counters: int64 in COUNTER_KEYS
    order when counting (count=True, or a trace), else None."""
    counters = trace.counters if trace is not None else (
        torch.zeros(len(COUNTER_KEYS), dtype=torch.int64, device=q.device) if count else None)
    delta = preprocess(out, do, counters)
    dk, dv = launch_dkdv(q, k, v, do, lse, delta, causal, sm_scale, dkdv, trace=trace, counters=counters, window=window,
                         docs=docs)
    dq_ = launch_dq(q, k, v, do, lse, delta, causal, sm_scale, dq, counters=counters, window=window, docs=docs)
    return dq_, dk, dv, delta, counters
