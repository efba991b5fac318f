"""FlashAttention-1's loop order as a Triton kernel, to set beside FlashAttention-2's.

One program per (batch, head). The kv loop is outside: K_j, V_j are loaded once; the q loop is
inside, and every tile reads Q_i, O_i, m_i and l_i from memory and writes O_i, m_i and l_i back.
O stays normalized at every step (the FlashAttention paper's Algorithm 1):

    m_new = max(m_old, rowmax(S)),   l_new = e^(m_old - m_new) l_old + rowsum(e^(S - m_new)),
    O_new = diag(l_new)^-1 (diag(l_old) e^(m_old - m_new) O_old + e^(S - m_new) V),

where FlashAttention-2 keeps O unnormalized on chip and divides by l once at the end. The tile
update is the forward's own `softmax_tile`; the trace records through its `trace_tile`, with O
before and after each tile as acc_before, acc_after (normalized here). O goes through memory in
the input dtype, as the paper's kernel keeps it in HBM; m (log2 units) and l in float32.

Not for: speed (one program per head leaves most of a GPU idle; flash_fwd.py is the fast kernel).
"""
import math
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from kernels import traffic
from kernels.flash_fwd import LOG2E, softmax_tile, trace_tile
from kernels.launch import Config, meta, precision, strides
from kernels.trace_buffers import NO_FORWARD_TRACE, TraceBuffers

C_Q, C_K, C_V, C_O_LOADS, C_ML_LOADS, C_O_STORES, C_ML_STORES = (tl.constexpr(traffic.FA1_COUNTERS.index(k)) for k in (
    "q_loads", "k_loads", "v_loads", "o_loads", "ml_loads", "o_stores", "ml_stores"))


class FA1Meta(NamedTuple):
    """FA1-order's compile-time options (each a tl.constexpr); trace_tile reads the block sizes."""
    HEAD_DIM: int
    BLOCK_M: int
    BLOCK_N: int
    CAUSAL: bool
    TRACE: bool
    DOT_PRECISION: str


@triton.jit
def _attn_fwd_fa1(Q, K, V, sm_scale, O, M, L, sq, so, H, N_CTX, tr, meta):
    # sq: the strides Q, K and V share (the host makes sure); so: O's; tr: ForwardTraceArgs
    HEAD_DIM: tl.constexpr = meta.HEAD_DIM
    BLOCK_M: tl.constexpr = meta.BLOCK_M
    BLOCK_N: tl.constexpr = meta.BLOCK_N
    off_hz = tl.program_id(0)
    off_z = off_hz // H
    off_h = off_hz % H
    head = off_z.to(tl.int64) * sq.z + off_h.to(tl.int64) * sq.h
    out_head = off_z.to(tl.int64) * so.z + off_h.to(tl.int64) * so.h
    ML = off_hz.to(tl.int64) * N_CTX
    offs_d = tl.arange(0, HEAD_DIM)
    qk_scale = sm_scale * LOG2E
    step = 0
    for start_n in range(0, N_CTX, BLOCK_N):
        # -- the outer loop: K_j, V_j are loaded once --
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kT = tl.load(K + head + offs_n[None, :] * sq.m + offs_d[:, None] * sq.k, mask=offs_n[None, :] < N_CTX, other=0.0)
        v = tl.load(V + head + offs_n[:, None] * sq.m + offs_d[None, :] * sq.k, mask=offs_n[:, None] < N_CTX, other=0.0)
        if meta.TRACE:
            kv_rows = tl.sum((offs_n < N_CTX).to(tl.int64))
            tl.atomic_add(tr.counters + C_K, kv_rows * HEAD_DIM)  # K_j
            tl.atomic_add(tr.counters + C_V, kv_rows * HEAD_DIM)  # V_j
        # causal: q-blocks that end before this kv-block starts see none of its keys
        lo = (start_n // BLOCK_M) * BLOCK_M if meta.CAUSAL else 0
        for start_m in range(lo, N_CTX, BLOCK_M):
            offs_m = start_m + tl.arange(0, BLOCK_M)
            row_ok = offs_m < N_CTX
            # -- the inner loop: Q_i, O_i, m_i, l_i come from memory at every tile --
            q = tl.load(Q + head + offs_m[:, None] * sq.m + offs_d[None, :] * sq.k, mask=row_ok[:, None], other=0.0)
            o = tl.load(O + out_head + offs_m[:, None] * so.m + offs_d[None, :] * so.k,
                        mask=row_ok[:, None], other=0.0).to(tl.float32)
            m_i = tl.load(M + ML + offs_m, mask=row_ok, other=float("-inf"))
            l_i = tl.load(L + ML + offs_m, mask=row_ok, other=0.0)
            qk = tl.dot(q, kT, input_precision=meta.DOT_PRECISION)
            p, m_new, alpha, l_new, qk = softmax_tile(qk, m_i, l_i, qk_scale, offs_m, offs_n, N_CTX, True, meta.CAUSAL)
            # -- O stays normalized: undo the old 1 / l, rescale, add P V, divide by the new l --
            pv = tl.dot(p.to(v.dtype), v, input_precision=meta.DOT_PRECISION)
            l_safe = tl.where(row_ok, l_new, 1.0)
            o_new = (o * (l_i * alpha)[:, None] + pv) / l_safe[:, None]  # [acc]
            tl.store(O + out_head + offs_m[:, None] * so.m + offs_d[None, :] * so.k,
                     o_new.to(O.dtype.element_ty), mask=row_ok[:, None])
            tl.store(M + ML + offs_m, m_new, mask=row_ok)
            tl.store(L + ML + offs_m, l_new, mask=row_ok)
            if meta.TRACE:
                rows = tl.sum(row_ok.to(tl.int64))
                tl.atomic_add(tr.counters + C_Q, rows * HEAD_DIM)  # Q_i
                tl.atomic_add(tr.counters + C_O_LOADS, rows * HEAD_DIM)  # O_i read
                tl.atomic_add(tr.counters + C_ML_LOADS, 2 * rows)  # m_i, l_i read
                tl.atomic_add(tr.counters + C_O_STORES, rows * HEAD_DIM)  # O_i written
                tl.atomic_add(tr.counters + C_ML_STORES, 2 * rows)  # m_i, l_i written
                slot = tl.load(tr.idx + start_m // BLOCK_M)
                o_stored = o_new.to(O.dtype.element_ty).to(tl.float32)  # what the next tile will read
                step = trace_tile(tr, start_m // BLOCK_M, start_n // BLOCK_N, step, slot, m_new, l_new, alpha, qk, p,
                                  o, o_stored, offs_m, offs_n, offs_d, N_CTX, N_CTX, meta, True)


def launch(q, k, v, causal: bool, sm_scale: float, config: Config, *, trace: TraceBuffers | None = None):
    """(out, lse): FlashAttention-1 order, one program per (batch, head). Checked arguments."""
    batch, heads, seq_len, head_dim = q.shape
    out = torch.zeros_like(q)  # O_i starts at 0, m_i at -inf, l_i at 0, all in memory
    m = torch.full((batch, heads, seq_len), float("-inf"), dtype=torch.float32, device=q.device)
    l = torch.zeros((batch, heads, seq_len), dtype=torch.float32, device=q.device)
    fmeta = meta(FA1Meta, HEAD_DIM=head_dim, BLOCK_M=config.block_m, BLOCK_N=config.block_n, CAUSAL=bool(causal),
                 TRACE=trace is not None, DOT_PRECISION=precision(q.dtype))
    _attn_fwd_fa1[(batch * heads,)](q, k, v, sm_scale, out, m, l, strides(q), strides(out), heads, seq_len,
                                    trace.args() if trace is not None else NO_FORWARD_TRACE, fmeta,
                                    **config.compile_options())
    return out, (m + torch.log2(l)) * math.log(2)  # lse in natural log, as the FA2 kernel stores it
