"""Split-KV: the merge of partial softmax states, as a Triton kernel.

With kv_splits S, the forward kernel (flash_fwd.py, KV_SPLITS) runs S programs per q-block, each
over a contiguous share of the kv-blocks, and writes its partial state: m_s and l_s per row and the
normalized O_s = acc_s / l_s. This kernel combines them with the formula of the source documents,

    M = max_s m_s,   L = sum_s l_s e^(m_s - M),   O = sum_s (l_s e^(m_s - M) / L) O_s,

which is how flash-decoding and attention across several GPUs combine partial results. It writes
O and the log-sum-exp M + log L. COUNT makes it count what it loads and stores.

Not for: the forward itself (flash_fwd.py).
"""
import triton
import triton.language as tl

from kernels import traffic
from kernels.launch import cdiv, jit_launch, strides

# counter slots of a split-KV trace (kernels/traffic.py SPLIT_KV_COUNTERS)
C_MERGE_O, C_MERGE_ML, C_O, C_LSE = (tl.constexpr(traffic.SPLIT_KV_COUNTERS.index(k)) for k in (
    "merge_o_loads", "merge_ml_loads", "o_stores", "lse_stores"))


@triton.jit
def _merge_splits(PartO, PartML, Out, Lse, Counters, sp, so, H, N_CTX,
                  KV_SPLITS: tl.constexpr, BLOCK_M: tl.constexpr, HEAD_DIM: tl.constexpr, COUNT: tl.constexpr):
    # sp: PartO's strides (batch, heads * KV_SPLITS, N, d); so: Out's
    off_hz = tl.program_id(1)
    off_z = off_hz // H
    off_h = off_hz % H
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N_CTX
    ml_plane = tl.num_programs(1).to(tl.int64) * KV_SPLITS * N_CTX
    # -- M = max_s m_s --
    m = tl.zeros([BLOCK_M], dtype=tl.float32) - float("inf")
    for s in tl.static_range(KV_SPLITS):
        part = off_hz.to(tl.int64) * KV_SPLITS + s
        m = tl.maximum(m, tl.load(PartML + part * N_CTX + offs_m, mask=row_ok, other=0.0))
    # -- L = sum_s l_s e^(m_s - M), O = sum_s l_s e^(m_s - M) O_s / L --
    l_sum = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    for s in tl.static_range(KV_SPLITS):
        part = off_hz.to(tl.int64) * KV_SPLITS + s
        m_s = tl.load(PartML + part * N_CTX + offs_m, mask=row_ok, other=0.0)
        l_s = tl.load(PartML + ml_plane + part * N_CTX + offs_m, mask=row_ok, other=0.0)
        w = l_s * tl.exp(m_s - m)  # 0 for a split that saw none of this row's keys
        o_s = tl.load(PartO + off_z.to(tl.int64) * sp.z + (off_h.to(tl.int64) * KV_SPLITS + s) * sp.h
                      + offs_m[:, None] * sp.m + offs_d[None, :] * sp.k, mask=row_ok[:, None], other=0.0)
        l_sum += w
        acc += w[:, None] * o_s
    out = acc / tl.where(row_ok, l_sum, 1.0)[:, None]
    tl.store(Out + off_z.to(tl.int64) * so.z + off_h.to(tl.int64) * so.h + offs_m[:, None] * so.m
             + offs_d[None, :] * so.k, out.to(Out.dtype.element_ty), mask=row_ok[:, None])
    tl.store(Lse + off_hz.to(tl.int64) * N_CTX + offs_m, m + tl.log(tl.where(row_ok, l_sum, 1.0)), mask=row_ok)
    if COUNT:
        rows = tl.sum(row_ok.to(tl.int64))
        tl.atomic_add(Counters + C_MERGE_O, rows * HEAD_DIM * KV_SPLITS)  # every O_s
        tl.atomic_add(Counters + C_MERGE_ML, rows * 2 * KV_SPLITS)  # every m_s, l_s
        tl.atomic_add(Counters + C_O, rows * HEAD_DIM)  # O
        tl.atomic_add(Counters + C_LSE, rows)  # lse


def merge(part_o, part_ml, out, lse, kv_splits: int, counters=None) -> None:
    """Combine the partials of a KV_SPLITS launch into out (batch, heads, N, d) and lse."""
    batch, heads, seq_len, head_dim = out.shape
    block = 64
    jit_launch(_merge_splits, (cdiv(seq_len, block), batch * heads),
               part_o, part_ml, out, lse, counters, strides(part_o), strides(out), heads, seq_len,
               KV_SPLITS=kv_splits, BLOCK_M=block, HEAD_DIM=head_dim, COUNT=counters is not None)
