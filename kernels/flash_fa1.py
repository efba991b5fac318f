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

import torch
import triton
import triton.language as tl

from kernels import backend, traffic
from kernels.flash_fwd import LOG2E, TraceBuffers, softmax_tile, trace_tile

COUNTER_KEYS = traffic.FA1_COUNTERS  # Counters, in this order


@triton.jit(do_not_specialize=["n_slots"])
def _attn_fwd_fa1(
    Q, K, V, sm_scale, O, M, L,
    stride_qz, stride_qh, stride_qm, stride_qk,  # Q, K and V share these (the host makes sure)
    stride_oz, stride_oh, stride_om, stride_ok,
    H, N_CTX,
    Trace, TraceIdx, Counters, n_slots,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, TRACE: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    off_hz = tl.program_id(0)
    off_z = off_hz // H
    off_h = off_hz % H
    head = off_z.to(tl.int64) * stride_qz + off_h.to(tl.int64) * stride_qh
    out_head = off_z.to(tl.int64) * stride_oz + off_h.to(tl.int64) * stride_oh
    ML = off_hz.to(tl.int64) * N_CTX
    offs_d = tl.arange(0, HEAD_DIM)
    qk_scale = sm_scale * LOG2E
    step = 0
    for start_n in range(0, N_CTX, BLOCK_N):
        # -- the outer loop: K_j, V_j are loaded once --
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kT = tl.load(K + head + offs_n[None, :] * stride_qm + offs_d[:, None] * stride_qk,
                     mask=offs_n[None, :] < N_CTX, other=0.0)
        v = tl.load(V + head + offs_n[:, None] * stride_qm + offs_d[None, :] * stride_qk,
                    mask=offs_n[:, None] < N_CTX, other=0.0)
        if TRACE:
            kv_rows = tl.sum((offs_n < N_CTX).to(tl.int64))
            tl.atomic_add(Counters + 1, kv_rows * HEAD_DIM)  # K_j
            tl.atomic_add(Counters + 2, kv_rows * HEAD_DIM)  # V_j
        # causal: q-blocks that end before this kv-block starts see none of its keys
        lo = (start_n // BLOCK_M) * BLOCK_M if CAUSAL else 0
        for start_m in range(lo, N_CTX, BLOCK_M):
            offs_m = start_m + tl.arange(0, BLOCK_M)
            row_ok = offs_m < N_CTX
            # -- the inner loop: Q_i, O_i, m_i, l_i come from memory at every tile --
            q = tl.load(Q + head + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qk,
                        mask=row_ok[:, None], other=0.0)
            o = tl.load(O + out_head + offs_m[:, None] * stride_om + offs_d[None, :] * stride_ok,
                        mask=row_ok[:, None], other=0.0).to(tl.float32)
            m_i = tl.load(M + ML + offs_m, mask=row_ok, other=float("-inf"))
            l_i = tl.load(L + ML + offs_m, mask=row_ok, other=0.0)
            qk = tl.dot(q, kT, input_precision=DOT_PRECISION)
            p, m_new, alpha, l_new, qk = softmax_tile(qk, m_i, l_i, qk_scale, offs_m, offs_n, N_CTX, True, CAUSAL)
            # -- O stays normalized: undo the old 1 / l, rescale, add P V, divide by the new l --
            pv = tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
            l_safe = tl.where(row_ok, l_new, 1.0)
            o_new = (o * (l_i * alpha)[:, None] + pv) / l_safe[:, None]
            tl.store(O + out_head + offs_m[:, None] * stride_om + offs_d[None, :] * stride_ok,
                     o_new.to(O.dtype.element_ty), mask=row_ok[:, None])
            tl.store(M + ML + offs_m, m_new, mask=row_ok)
            tl.store(L + ML + offs_m, l_new, mask=row_ok)
            if TRACE:
                rows = tl.sum(row_ok.to(tl.int64))
                tl.atomic_add(Counters + 0, rows * HEAD_DIM)  # Q_i
                tl.atomic_add(Counters + 3, rows * HEAD_DIM)  # O_i read
                tl.atomic_add(Counters + 4, 2 * rows)  # m_i, l_i read
                tl.atomic_add(Counters + 5, rows * HEAD_DIM)  # O_i written
                tl.atomic_add(Counters + 6, 2 * rows)  # m_i, l_i written
                slot = tl.load(TraceIdx + start_m // BLOCK_M)
                o_stored = o_new.to(O.dtype.element_ty).to(tl.float32)  # what the next tile will read
                step = trace_tile(Trace, TraceIdx, start_m // BLOCK_M, start_n // BLOCK_N, step, slot, n_slots,
                                   m_new, l_new, alpha, qk, p, o, o_stored, offs_m, offs_n, offs_d, N_CTX,
                                   BLOCK_M, BLOCK_N, HEAD_DIM)


def launch(q, k, v, causal: bool, sm_scale: float, block_m: int, block_n: int, *, trace: TraceBuffers | None = None):
    """(out, lse): FlashAttention-1 order, one program per (batch, head). Checked arguments."""
    batch, heads, seq_len, head_dim = q.shape
    out = torch.zeros_like(q)  # O_i starts at 0, m_i at -inf, l_i at 0, all in memory
    m = torch.full((batch, heads, seq_len), float("-inf"), dtype=torch.float32, device=q.device)
    l = torch.zeros((batch, heads, seq_len), dtype=torch.float32, device=q.device)
    extra = {} if backend.INTERPRET else {"num_warps": 4 if block_m * block_n <= 64 * 64 else 8, "num_stages": 1}
    _attn_fwd_fa1[(batch * heads,)](
        q, k, v, sm_scale, out, m, l, *q.stride(), *out.stride(), heads, seq_len,
        *(trace.args() if trace is not None else (None, None, None, 0)),
        HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=bool(causal), TRACE=trace is not None,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32", **extra,
    )
    return out, (m + torch.log2(l)) * math.log(2)  # lse in natural log, as the FA2 kernel stores it

