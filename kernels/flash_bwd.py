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

Not for: validating arguments or picking a config (attention.py, tuning.py), trace objects
(trace_backward.py).
"""
import math

import torch
import triton
import triton.language as tl

from kernels import backend, traffic
from kernels.flash_fwd import LOG2E

COUNTER_KEYS = traffic.BACKWARD_COUNTERS  # Counters, in this order


@triton.jit
def _attn_bwd_preprocess(
    O, DO, Delta, Counters,
    stride_oz, stride_oh, stride_om, stride_ok,
    stride_doz, stride_doh, stride_dom, stride_dok,
    H, N_CTX,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, COUNT: tl.constexpr,
):
    off_hz = tl.program_id(1)
    off_z = off_hz // H
    off_h = off_hz % H
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N_CTX
    o = tl.load(O + off_z.to(tl.int64) * stride_oz + off_h.to(tl.int64) * stride_oh
                + offs_m[:, None] * stride_om + offs_d[None, :] * stride_ok,
                mask=row_ok[:, None], other=0.0).to(tl.float32)  # read BLOCK_M x d of O
    do = tl.load(DO + off_z.to(tl.int64) * stride_doz + off_h.to(tl.int64) * stride_doh
                 + offs_m[:, None] * stride_dom + offs_d[None, :] * stride_dok,
                 mask=row_ok[:, None], other=0.0).to(tl.float32)  # read BLOCK_M x d of dO
    # -- D = rowsum(dO o O) equals rowsum(P o dP): one number per row, no Jacobian --
    delta = tl.sum(o * do, axis=1)
    tl.store(Delta + off_hz.to(tl.int64) * N_CTX + offs_m, delta, mask=row_ok)  # write BLOCK_M
    if COUNT:
        rows = tl.sum(row_ok.to(tl.int64))
        tl.atomic_add(Counters + 0, rows * HEAD_DIM)  # O
        tl.atomic_add(Counters + 1, rows * HEAD_DIM)  # dO
        tl.atomic_add(Counters + 2, rows)  # D


@triton.jit
def _trace_bwd_tile(Trace, TraceIdx, start_n, i, step, slot, n_slots, pT, dpT, dsT, dk, dv, sm_scale,
                    offs_m, offs_n, offs_d, N_CTX,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr):
    """Record tile (i, start_n): the step kv-block j's program reached it at, and for kv-blocks with
    a tile slot its P, dP, dS (stored (block_m, block_n): query rows down, keys across, as in the
    forward) and dK_j, dV_j after the step. Layout: BackwardTraceBuffers."""
    Tq = tl.cdiv(N_CTX, BLOCK_M).to(tl.int64)
    Tk = tl.cdiv(N_CTX, BLOCK_N).to(tl.int64)
    j = start_n // BLOCK_N
    tl.store(TraceIdx + Tk + j * Tq + i, step)
    if slot >= 0:
        n_tiles = n_slots.to(tl.int64) * Tq
        tile = slot.to(tl.int64) * Tq + i
        ok = (offs_m[None, :] < N_CTX) & (offs_n[:, None] < N_CTX)  # (BLOCK_N, BLOCK_M)
        offs_nb = tl.arange(0, BLOCK_N)
        tp = tile * BLOCK_M * BLOCK_N + tl.arange(0, BLOCK_M)[None, :] * BLOCK_N + offs_nb[:, None]
        plane = n_tiles * BLOCK_M * BLOCK_N
        tl.store(Trace + tp, pT, mask=ok)
        tl.store(Trace + plane + tp, dpT, mask=ok)
        tl.store(Trace + 2 * plane + tp, dsT, mask=ok)
        ap = tile * BLOCK_N * HEAD_DIM + offs_nb[:, None] * HEAD_DIM + offs_d[None, :]
        col_ok = (offs_n < N_CTX)[:, None]
        tl.store(Trace + 3 * plane + ap, dk * sm_scale, mask=col_ok)  # textbook units: dK so far
        tl.store(Trace + 3 * plane + n_tiles * BLOCK_N * HEAD_DIM + ap, dv, mask=col_ok)
    return step + 1


@triton.jit
def _attn_bwd_dkdv_inner(
    dk, dv, k, v,
    Q_src, DO_src, Lse_src, Delta_src, DQ_src, stride_qm, stride_qk, stride_dom, stride_dok,
    start_n, lo, hi, qk_scale, sm_scale, N_CTX, offs_n, offs_d,
    Trace, TraceIdx, Counters, slot, step, n_slots,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr, CAUSAL: tl.constexpr, COUNT: tl.constexpr, TRACE: tl.constexpr,
    DOT_PRECISION: tl.constexpr, FUSED_DQ: tl.constexpr,
):
    offs_mb = tl.arange(0, BLOCK_M)
    for start_m in tl.range(lo, hi, BLOCK_M):
        start_m = tl.multiple_of(start_m, BLOCK_M)
        offs_m = start_m + offs_mb
        # -- Q_i^T, dO_i, lse_i, D_i stream through; K_j, V_j and the dK_j, dV_j accumulators stay --
        if MASKED:  # rows past seq_len: lse = +inf makes their p exactly 0
            row_ok = offs_m < N_CTX
            qT = tl.load(Q_src + offs_m[None, :] * stride_qm + offs_d[:, None] * stride_qk,
                         mask=row_ok[None, :], other=0.0)
            do = tl.load(DO_src + offs_m[:, None] * stride_dom + offs_d[None, :] * stride_dok,
                         mask=row_ok[:, None], other=0.0)
            lse = tl.load(Lse_src + offs_m, mask=row_ok, other=float("inf"))
            Di = tl.load(Delta_src + offs_m, mask=row_ok, other=0.0)
        else:
            qT = tl.load(Q_src + offs_m[None, :] * stride_qm + offs_d[:, None] * stride_qk)
            do = tl.load(DO_src + offs_m[:, None] * stride_dom + offs_d[None, :] * stride_dok)
            lse = tl.load(Lse_src + offs_m)
            Di = tl.load(Delta_src + offs_m)
        # -- recompute P^T from the stored log-sum-exp: no running max on the way back --
        qkT = tl.dot(k, qT, input_precision=DOT_PRECISION)  # (BLOCK_N, BLOCK_M)
        if MASKED:
            if CAUSAL:  # the diagonal band: key j may only be seen by queries i >= j
                qkT = tl.where(offs_m[None, :] >= offs_n[:, None], qkT, float("-inf"))
        pT = tl.math.exp2(qkT * qk_scale - lse[None, :] * LOG2E)
        # -- dV_j += P^T dO_i --
        dv = tl.dot(pT.to(do.dtype), do, dv, input_precision=DOT_PRECISION)
        # -- dS = P o (dP - D): D replaces the row's N x N Jacobian diag(P) - P P^T --
        dpT = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)  # (BLOCK_N, BLOCK_M)
        dsT = pT * (dpT - Di[None, :])
        # -- dK_j += dS^T Q_i; sm_scale is applied once at the end --
        dk = tl.dot(dsT.to(qT.dtype), tl.trans(qT), dk, input_precision=DOT_PRECISION)
        if FUSED_DQ:  # FA2's schedule: dQ_i += scale dS K_j, added atomically into a float32 dQ
            dq = tl.dot(tl.trans(dsT).to(k.dtype), k, input_precision=DOT_PRECISION)  # (BLOCK_M, HEAD_DIM)
            tl.atomic_add(DQ_src + offs_m[:, None] * HEAD_DIM + offs_d[None, :], dq * sm_scale,
                          mask=(offs_m < N_CTX)[:, None], sem="relaxed")
        if COUNT:
            rows = tl.sum((offs_m < N_CTX).to(tl.int64))
            tl.atomic_add(Counters + 5, rows * HEAD_DIM)  # Q_i
            tl.atomic_add(Counters + 6, rows * HEAD_DIM)  # dO_i
            tl.atomic_add(Counters + 7, rows)  # lse_i
            tl.atomic_add(Counters + 8, rows)  # D_i
        if TRACE:
            step = _trace_bwd_tile(Trace, TraceIdx, start_n, start_m // BLOCK_M, step, slot, n_slots,
                                   pT, dpT, dsT, dk, dv, sm_scale, offs_m, offs_n, offs_d, N_CTX,
                                   BLOCK_M, BLOCK_N, HEAD_DIM)
    return dk, dv, step


@triton.jit(do_not_specialize=["n_slots"])  # n_slots == 1 must stay a tensor, not a constexpr
def _attn_bwd_dkdv(
    Q, K, V, DO, Lse, Delta, DK, DV, sm_scale,
    stride_qz, stride_qh, stride_qm, stride_qk,  # Q, K and V share these (the host makes sure)
    stride_doz, stride_doh, stride_dom, stride_dok,
    H, N_CTX,
    Trace, TraceIdx, Counters, n_slots, DQ_ACC,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, COUNT: tl.constexpr, TRACE: tl.constexpr, DOT_PRECISION: tl.constexpr,
    RAGGED: tl.constexpr = True, FUSED_DQ: tl.constexpr = False,
):
    # RAGGED: seq_len is not a multiple of BLOCK_M, so a last q-block has rows to mask (the host
    # sets it; False compiles that loop out). FUSED_DQ: also add this program's dQ terms into the
    # float32 DQ_ACC (batch * heads, N, d) atomically, so no dQ kernel has to recompute P and dP.
    # causal: the first kv-blocks meet the most q-blocks, and program 0 launches first
    start_n = tl.program_id(0) * BLOCK_N
    off_hz = tl.program_id(1)
    off_z = off_hz // H
    off_h = off_hz % H
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    col_ok = offs_n < N_CTX
    head = off_z.to(tl.int64) * stride_qz + off_h.to(tl.int64) * stride_qh
    # -- K_j, V_j are loaded once and stay on chip for the whole q loop --
    k = tl.load(K + head + offs_n[:, None] * stride_qm + offs_d[None, :] * stride_qk, mask=col_ok[:, None], other=0.0)
    v = tl.load(V + head + offs_n[:, None] * stride_qm + offs_d[None, :] * stride_qk, mask=col_ok[:, None], other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    Q_src = Q + head
    DO_src = DO + off_z.to(tl.int64) * stride_doz + off_h.to(tl.int64) * stride_doh
    Lse_src = Lse + off_hz.to(tl.int64) * N_CTX
    Delta_src = Delta + off_hz.to(tl.int64) * N_CTX
    DQ_src = DQ_ACC + off_hz.to(tl.int64) * N_CTX * HEAD_DIM if FUSED_DQ else DQ_ACC
    qk_scale = sm_scale * LOG2E

    # q-blocks [lo, band_hi) cross the causal diagonal of kv-block j (masked); [band_hi, mid_hi)
    # lie wholly below it (no mask); [mid_hi, N) is the ragged last q-block (rows masked).
    # q-blocks before lo see none of these keys: skipped.
    full_hi = (N_CTX // BLOCK_M) * BLOCK_M
    if CAUSAL:
        lo = (start_n // BLOCK_M) * BLOCK_M
        band_hi = tl.minimum(tl.cdiv(start_n + BLOCK_N, BLOCK_M) * BLOCK_M, N_CTX)
        mid_hi = tl.maximum(band_hi, full_hi)
    else:
        lo = 0
        band_hi = 0
        mid_hi = full_hi

    slot = -1
    step = 0
    if TRACE:
        slot = tl.load(TraceIdx + tl.program_id(0))
    if COUNT:
        cols = tl.sum(col_ok.to(tl.int64))
        tl.atomic_add(Counters + 3, cols * HEAD_DIM)  # K_j
        tl.atomic_add(Counters + 4, cols * HEAD_DIM)  # V_j
    if CAUSAL:  # the diagonal band
        dk, dv, step = _attn_bwd_dkdv_inner(
            dk, dv, k, v, Q_src, DO_src, Lse_src, Delta_src, DQ_src, stride_qm, stride_qk, stride_dom, stride_dok,
            start_n, lo, band_hi, qk_scale, sm_scale, N_CTX, offs_n, offs_d, Trace, TraceIdx, Counters, slot, step,
            n_slots, HEAD_DIM, BLOCK_M, BLOCK_N, True, CAUSAL, COUNT, TRACE, DOT_PRECISION, FUSED_DQ,
        )
    dk, dv, step = _attn_bwd_dkdv_inner(
        dk, dv, k, v, Q_src, DO_src, Lse_src, Delta_src, DQ_src, stride_qm, stride_qk, stride_dom, stride_dok,
        start_n, band_hi, mid_hi, qk_scale, sm_scale, N_CTX, offs_n, offs_d, Trace, TraceIdx, Counters, slot, step,
        n_slots, HEAD_DIM, BLOCK_M, BLOCK_N, False, CAUSAL, COUNT, TRACE, DOT_PRECISION, FUSED_DQ,
    )
    if RAGGED:  # the last q-block's rows past seq_len
        dk, dv, step = _attn_bwd_dkdv_inner(
            dk, dv, k, v, Q_src, DO_src, Lse_src, Delta_src, DQ_src, stride_qm, stride_qk, stride_dom, stride_dok,
            start_n, mid_hi, N_CTX, qk_scale, sm_scale, N_CTX, offs_n, offs_d, Trace, TraceIdx, Counters, slot, step,
            n_slots, HEAD_DIM, BLOCK_M, BLOCK_N, True, CAUSAL, COUNT, TRACE, DOT_PRECISION, FUSED_DQ,
        )
    # -- epilogue: dK_j, dV_j written once (contiguous gradients) --
    dk = dk * sm_scale
    g = off_hz.to(tl.int64) * N_CTX * HEAD_DIM + offs_n[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(DK + g, dk.to(DK.dtype.element_ty), mask=col_ok[:, None])
    tl.store(DV + g, dv.to(DV.dtype.element_ty), mask=col_ok[:, None])
    if COUNT:
        tl.atomic_add(Counters + 9, cols * HEAD_DIM)  # dK_j
        tl.atomic_add(Counters + 10, cols * HEAD_DIM)  # dV_j


@triton.jit
def _attn_bwd_dq_inner(
    dq, q, do, lse, Di, K_src, V_src, stride_kn, stride_kk,
    lo, hi, qk_scale, N_CTX, offs_m, offs_d, Counters,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr, CAUSAL: tl.constexpr, COUNT: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    offs_nb = tl.arange(0, BLOCK_N)
    for start_n in tl.range(lo, hi, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        offs_n = start_n + offs_nb
        # -- K_j^T, V_j^T stream through; Q_i, dO_i and the dQ_i accumulator stay --
        if MASKED:
            kT = tl.load(K_src + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kk,
                         mask=offs_n[None, :] < N_CTX, other=0.0)
            vT = tl.load(V_src + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kk,
                         mask=offs_n[None, :] < N_CTX, other=0.0)
        else:
            kT = tl.load(K_src + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kk)
            vT = tl.load(V_src + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kk)
        # -- recompute P from the stored log-sum-exp --
        qk = tl.dot(q, kT, input_precision=DOT_PRECISION)  # (BLOCK_M, BLOCK_N)
        if MASKED:  # ragged last kv-block, and the causal diagonal band
            keep = offs_n[None, :] < N_CTX
            if CAUSAL:
                keep = keep & (offs_m[:, None] >= offs_n[None, :])
            qk = tl.where(keep, qk, float("-inf"))
        p = tl.math.exp2(qk * qk_scale - lse[:, None] * LOG2E)
        # -- dS = P o (dP - D), dQ_i += dS K_j; sm_scale is applied once at the end --
        dp = tl.dot(do, vT, input_precision=DOT_PRECISION)
        ds = p * (dp - Di[:, None])
        dq = tl.dot(ds.to(kT.dtype), tl.trans(kT), dq, input_precision=DOT_PRECISION)
        if COUNT:
            cols = tl.sum((offs_n < N_CTX).to(tl.int64))
            tl.atomic_add(Counters + 15, cols * HEAD_DIM)  # K_j
            tl.atomic_add(Counters + 16, cols * HEAD_DIM)  # V_j
    return dq


@triton.jit
def _attn_bwd_dq(
    Q, K, V, DO, Lse, Delta, DQ, sm_scale,
    stride_qz, stride_qh, stride_qm, stride_qk,  # Q, K and V share these (the host makes sure)
    stride_doz, stride_doh, stride_dom, stride_dok,
    H, N_CTX, Counters,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, COUNT: tl.constexpr, DOT_PRECISION: tl.constexpr, MASKED_TILES: tl.constexpr = True,
):
    # MASKED_TILES: as in the forward, the host leaves the masked loop out when no kv-block needs a mask
    if CAUSAL:  # the last q-blocks meet the most kv-blocks: launch them first
        start_m = (tl.num_programs(0) - 1 - tl.program_id(0)) * BLOCK_M
    else:
        start_m = tl.program_id(0) * BLOCK_M
    off_hz = tl.program_id(1)
    off_z = off_hz // H
    off_h = off_hz % H
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N_CTX
    head = off_z.to(tl.int64) * stride_qz + off_h.to(tl.int64) * stride_qh
    # -- Q_i, dO_i, lse_i, D_i are loaded once --
    q = tl.load(Q + head + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qk, mask=row_ok[:, None], other=0.0)
    do = tl.load(DO + off_z.to(tl.int64) * stride_doz + off_h.to(tl.int64) * stride_doh
                 + offs_m[:, None] * stride_dom + offs_d[None, :] * stride_dok, mask=row_ok[:, None], other=0.0)
    lse = tl.load(Lse + off_hz.to(tl.int64) * N_CTX + offs_m, mask=row_ok, other=float("inf"))
    Di = tl.load(Delta + off_hz.to(tl.int64) * N_CTX + offs_m, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    qk_scale = sm_scale * LOG2E
    # same split as the forward: [0, lo_masked) unmasked, [lo_masked, hi) the ragged end and,
    # when causal, the diagonal band; tiles past hi are above the diagonal: skipped
    if CAUSAL:
        hi = tl.minimum(start_m + BLOCK_M, N_CTX)
        lo_masked = tl.minimum(start_m // BLOCK_N, N_CTX // BLOCK_N) * BLOCK_N
    else:
        hi = N_CTX
        lo_masked = (N_CTX // BLOCK_N) * BLOCK_N
    dq = _attn_bwd_dq_inner(dq, q, do, lse, Di, K + head, V + head, stride_qm, stride_qk,
                            0, lo_masked, qk_scale, N_CTX, offs_m, offs_d, Counters,
                            HEAD_DIM, BLOCK_M, BLOCK_N, False, CAUSAL, COUNT, DOT_PRECISION)
    if MASKED_TILES:
        dq = _attn_bwd_dq_inner(dq, q, do, lse, Di, K + head, V + head, stride_qm, stride_qk,
                                lo_masked, hi, qk_scale, N_CTX, offs_m, offs_d, Counters,
                                HEAD_DIM, BLOCK_M, BLOCK_N, True, CAUSAL, COUNT, DOT_PRECISION)
    # -- epilogue: dQ_i written once --
    dq = dq * sm_scale
    g = off_hz.to(tl.int64) * N_CTX * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(DQ + g, dq.to(DQ.dtype.element_ty), mask=row_ok[:, None])
    if COUNT:
        rows = tl.sum(row_ok.to(tl.int64))
        tl.atomic_add(Counters + 11, rows * HEAD_DIM)  # Q_i
        tl.atomic_add(Counters + 12, rows * HEAD_DIM)  # dO_i
        tl.atomic_add(Counters + 13, rows)  # lse_i
        tl.atomic_add(Counters + 14, rows)  # D_i
        tl.atomic_add(Counters + 17, rows * HEAD_DIM)  # dQ_i


# ------------------------------------------------------------------------------ host side
class BackwardTraceBuffers:
    """Device buffers the traced dK/dV kernel writes into; NaN / -1 = never written. One float32
    buffer holds, for the kv-blocks in tile_kv_blocks (slot order), P, dP, dS (n, Tq, block_m,
    block_n), then dK_j, dV_j after each step (n, Tq, block_n, head_dim). One int32 buffer: the slot
    of each kv-block (Tk), then the visit order (Tk, Tq)."""

    def __init__(self, seq_len, head_dim, block_m, block_n, tile_kv_blocks, device):
        tq, tk = math.ceil(seq_len / block_m), math.ceil(seq_len / block_n)
        n = len(tile_kv_blocks)
        sizes = [n * tq * block_m * block_n] * 3 + [n * tq * block_n * head_dim] * 2
        self.trace = torch.full((sum(sizes),), float("nan"), dtype=torch.float32, device=device)
        p, dp, ds, dk, dv = torch.split(self.trace, sizes)
        self.p, self.dp, self.ds = (t.view(n, tq, block_m, block_n) for t in (p, dp, ds))
        self.dk, self.dv = (t.view(n, tq, block_n, head_dim) for t in (dk, dv))
        self.idx = torch.full((tk + tk * tq,), -1, dtype=torch.int32, device=device)
        for slot, j in enumerate(tile_kv_blocks):
            self.idx[j] = slot
        self.visit = self.idx[tk:].view(tk, tq)
        self.counters = torch.zeros(len(COUNTER_KEYS), dtype=torch.int64, device=device)
        self.n_slots = n

    def args(self):
        return self.trace, self.idx, self.counters, self.n_slots


def default_warps(block_m: int, block_n: int) -> int:
    return 4 if block_m * block_n <= 64 * 64 else 8


def preprocess(out, do, counters=None):
    """D = rowsum(dO o O), float32 (batch, heads, seq_len)."""
    batch, heads, seq_len, head_dim = out.shape
    delta = torch.empty((batch, heads, seq_len), dtype=torch.float32, device=out.device)
    block = 64 if backend.INTERPRET or head_dim > 64 else 128
    _attn_bwd_preprocess[(triton.cdiv(seq_len, block), batch * heads)](
        out, do, delta, counters, *out.stride(), *do.stride(), heads, seq_len,
        HEAD_DIM=head_dim, BLOCK_M=block, COUNT=counters is not None,
    )
    return delta


def launch_dkdv(q, k, v, do, lse, delta, causal: bool, sm_scale: float, config: dict, *, dk=None, dv=None,
                trace: BackwardTraceBuffers | None = None, counters=None, dq_acc=None):
    """(dk, dv) from the dK/dV kernel. config: {"BLOCK_M", "BLOCK_N"} and on a GPU "num_warps",
    "num_stages". Arguments already checked (attention.py does): q, k, v with one set of strides.
    dq_acc: a zeroed float32 (batch, heads, N, d): the kernel adds the scaled dQ into it (FUSED_DQ)."""
    batch, heads, seq_len, head_dim = q.shape
    dk = torch.empty(q.shape, dtype=q.dtype, device=q.device) if dk is None else dk
    dv = torch.empty(q.shape, dtype=q.dtype, device=q.device) if dv is None else dv
    count = counters is not None
    _attn_bwd_dkdv[(triton.cdiv(seq_len, config["BLOCK_N"]), batch * heads)](
        q, k, v, do, lse, delta, dk, dv, sm_scale, *q.stride(), *do.stride(), heads, seq_len,
        *(trace.args() if trace is not None else (None, None, counters, 0)), dq_acc,
        HEAD_DIM=head_dim, CAUSAL=bool(causal), COUNT=count, TRACE=trace is not None,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32", RAGGED=seq_len % config["BLOCK_M"] != 0,
        FUSED_DQ=dq_acc is not None, **_meta(config),
    )
    return dk, dv


def launch_dq(q, k, v, do, lse, delta, causal: bool, sm_scale: float, config: dict, *, dq=None, counters=None):
    """dq from the dQ kernel; config and arguments as for launch_dkdv."""
    batch, heads, seq_len, head_dim = q.shape
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device) if dq is None else dq
    _attn_bwd_dq[(triton.cdiv(seq_len, config["BLOCK_M"]), batch * heads)](
        q, k, v, do, lse, delta, dq, sm_scale, *q.stride(), *do.stride(), heads, seq_len, counters,
        HEAD_DIM=head_dim, CAUSAL=bool(causal), COUNT=counters is not None,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        MASKED_TILES=bool(causal) or seq_len % config["BLOCK_N"] != 0, **_meta(config),
    )
    return dq


def launch(q, k, v, out, lse, do, causal: bool, sm_scale: float, dkdv: dict, dq: dict, *,
           trace: BackwardTraceBuffers | None = None, count: bool = False):
    """(dq, dk, dv, delta, counters): the three kernels in order. counters: int64 in COUNTER_KEYS
    order when counting (count=True, or a trace), else None."""
    counters = trace.counters if trace is not None else (
        torch.zeros(len(COUNTER_KEYS), dtype=torch.int64, device=q.device) if count else None)
    delta = preprocess(out, do, counters)
    dk, dv = launch_dkdv(q, k, v, do, lse, delta, causal, sm_scale, dkdv, trace=trace, counters=counters)
    dq_ = launch_dq(q, k, v, do, lse, delta, causal, sm_scale, dq, counters=counters)
    return dq_, dk, dv, delta, counters


def _meta(config: dict) -> dict:
    meta = {"BLOCK_M": config["BLOCK_M"], "BLOCK_N": config["BLOCK_N"]}
    if not backend.INTERPRET:
        meta["num_warps"] = config.get("num_warps") or default_warps(meta["BLOCK_M"], meta["BLOCK_N"])
        meta["num_stages"] = config.get("num_stages") or 2
    return meta
