"""Standard attention as three Triton kernels, the way the FlashAttention paper's Algorithm 0 writes it
(seed 001): S = Q K^T written to HBM, P = softmax(S) read from and written to HBM, O = P V read back.
The N x N matrices S and P make the round trip through memory that FlashAttention avoids.

Each kernel counts its own loads and stores (COUNT constexpr, masked lanes excluded, compiled out when
off) into one int64 vector named by COUNTERS, so the app can show them next to kernels/traffic.py.

Not for: the float64 reference (kernels/reference.py) or the traffic formulas (kernels/traffic.py).
"""
from typing import NamedTuple

from kernels import backend, limits
from kernels.launch import precision

backend.require_triton()

import numpy as np
import torch
import triton
import triton.language as tl

COUNTERS = ("q_loads", "k_loads", "s_stores", "s_loads", "p_stores", "p_loads", "v_loads", "o_stores")
# tl.constexpr: a compiled kernel may read a global only as a constexpr (the interpreter reads any)
C_Q, C_K, C_S_ST, C_S_LD, C_P_ST, C_P_LD, C_V, C_O = (tl.constexpr(i) for i in range(len(COUNTERS)))
SOFTMAX_TILE_ELEMS = 1 << 16  # a program of the softmax kernel holds ROWS whole rows of S on chip
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# ---------------------------------------------------------------- kernel 1: S = Q K^T, to HBM
@triton.jit
def scores_kernel(S_ptr, Q_ptr, K_ptr, Counts_ptr, stride_sm, stride_qm, stride_kn, seq_len, sm_scale,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr,
                  COUNT: tl.constexpr, DOT_PRECISION: tl.constexpr):
    start_m = tl.program_id(0) * BLOCK_M
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < seq_len
    q = tl.load(Q_ptr + offs_m[:, None] * stride_qm + offs_d[None, :], mask=row_ok[:, None], other=0.0)  # read Q_i
    if COUNT:
        tl.atomic_add(Counts_ptr + C_Q, tl.sum(row_ok.to(tl.int64)) * HEAD_DIM)
    for start_n in range(0, seq_len, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        col_ok = offs_n < seq_len
        k = tl.load(K_ptr + offs_n[:, None] * stride_kn + offs_d[None, :], mask=col_ok[:, None], other=0.0)  # read K_j
        # -- compute s --
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * sm_scale  # (BLOCK_M, BLOCK_N) float32
        if CAUSAL:  # the mask is applied here, so S holds -inf above the diagonal: still N x N in HBM
            s = tl.where(offs_n[None, :] > offs_m[:, None], -float("inf"), s)
        ok = row_ok[:, None] & col_ok[None, :]
        tl.store(S_ptr + offs_m[:, None] * stride_sm + offs_n[None, :], s.to(S_ptr.dtype.element_ty), mask=ok)  # write S
        if COUNT:
            tl.atomic_add(Counts_ptr + C_K, tl.sum(col_ok.to(tl.int64)) * HEAD_DIM)
            tl.atomic_add(Counts_ptr + C_S_ST, tl.sum(tl.sum(ok.to(tl.int64), axis=1), axis=0))


# ---------------------------------------------------------------- kernel 2: P = softmax(S), HBM to HBM
@triton.jit
def softmax_kernel(P_ptr, S_ptr, Counts_ptr, stride_pm, stride_sm, seq_len,
                   ROWS: tl.constexpr, N_PAD: tl.constexpr, COUNT: tl.constexpr):
    offs_m = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    offs_n = tl.arange(0, N_PAD)
    ok = (offs_m < seq_len)[:, None] & (offs_n < seq_len)[None, :]  # (ROWS, N_PAD)
    s = tl.load(S_ptr + offs_m[:, None] * stride_sm + offs_n[None, :], mask=ok, other=-float("inf")).to(tl.float32)  # read S
    # -- safe softmax of whole rows held on chip: S is read once --
    m_i = tl.max(s, axis=1)
    m_i = tl.where(m_i == -float("inf"), 0.0, m_i)  # rows past seq_len: all -inf, kept finite
    p = tl.exp(s - m_i[:, None])
    l_i = tl.sum(p, axis=1)
    l_i = tl.where(l_i == 0.0, 1.0, l_i)
    p = p / l_i[:, None]
    tl.store(P_ptr + offs_m[:, None] * stride_pm + offs_n[None, :], p.to(P_ptr.dtype.element_ty), mask=ok)  # write P
    if COUNT:
        n = tl.sum(tl.sum(ok.to(tl.int64), axis=1), axis=0)
        tl.atomic_add(Counts_ptr + C_S_LD, n)
        tl.atomic_add(Counts_ptr + C_P_ST, n)


# ---------------------------------------------------------------- kernel 3: O = P V, P read back from HBM
@triton.jit
def pv_kernel(O_ptr, P_ptr, V_ptr, Counts_ptr, stride_om, stride_pm, stride_vn, seq_len,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, COUNT: tl.constexpr,
              DOT_PRECISION: tl.constexpr):
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < seq_len
    acc = tl.zeros((BLOCK_M, HEAD_DIM), dtype=tl.float32)
    for start_n in range(0, seq_len, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        col_ok = offs_n < seq_len
        ok = row_ok[:, None] & col_ok[None, :]
        p = tl.load(P_ptr + offs_m[:, None] * stride_pm + offs_n[None, :], mask=ok, other=0.0)  # read P
        v = tl.load(V_ptr + offs_n[:, None] * stride_vn + offs_d[None, :], mask=col_ok[:, None], other=0.0)  # read V_j
        # -- accumulate p v --
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PRECISION)
        if COUNT:
            tl.atomic_add(Counts_ptr + C_P_LD, tl.sum(tl.sum(ok.to(tl.int64), axis=1), axis=0))
            tl.atomic_add(Counts_ptr + C_V, tl.sum(col_ok.to(tl.int64)) * HEAD_DIM)
    tl.store(O_ptr + offs_m[:, None] * stride_om + offs_d[None, :], acc.to(O_ptr.dtype.element_ty),
             mask=row_ok[:, None])  # write O
    if COUNT:
        tl.atomic_add(Counts_ptr + C_O, tl.sum(row_ok.to(tl.int64)) * HEAD_DIM)


# ---------------------------------------------------------------- host
class StandardResult(NamedTuple):
    s: np.ndarray  # (N, N) S as the first kernel wrote it to HBM
    p: np.ndarray  # (N, N) P as the second kernel wrote it
    out: np.ndarray  # (N, head_dim) O
    counters: dict  # {name in COUNTERS: elements}


def softmax_rows(seq_len: int, block_m: int) -> int:
    """Rows per program of the softmax kernel: up to block_m whole rows, within SOFTMAX_TILE_ELEMS."""
    n_pad = triton.next_power_of_2(seq_len)
    return max(1, min(block_m, SOFTMAX_TILE_ELEMS // n_pad))


def run(q, k, v, causal: bool, block_m: int, block_n: int, dtype: str = "float32", count: bool = True,
        sm_scale: float | None = None) -> StandardResult:
    """The three kernels on one head: q, k, v (seq_len, head_dim) NumPy or torch; S and P in `dtype`."""
    limits.check_blocks(block_m, block_n, q.shape[1])
    dtype = limits.check_choice("dtype", dtype, limits.dtypes(), " on this backend")
    if not (q.shape == k.shape == v.shape and q.ndim == 2):
        raise ValueError(f"q, k, v must be (seq_len, head_dim) alike, got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    n, d = q.shape
    if triton.next_power_of_2(n) > SOFTMAX_TILE_ELEMS:
        raise ValueError(f"standard attention holds a row of S on chip: seq_len must be at most "
                         f"{SOFTMAX_TILE_ELEMS}, got {n}")
    dev = backend.DEVICE
    td = TORCH_DTYPES[dtype]
    q, k, v = (torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).to(dev, td).contiguous()
               for x in (q, k, v))
    sm_scale = d ** -0.5 if sm_scale is None else float(sm_scale)
    s = torch.full((n, n), float("nan"), dtype=td, device=dev)  # poisoned: unwritten entries show
    p = torch.full_like(s, float("nan"))
    o = torch.full((n, d), float("nan"), dtype=td, device=dev)
    counts = torch.zeros(len(COUNTERS), dtype=torch.int64, device=dev)
    tq = triton.cdiv(n, block_m)
    scores_kernel[(tq,)](s, q, k, counts, s.stride(0), q.stride(0), k.stride(0), n, sm_scale,
                         BLOCK_M=block_m, BLOCK_N=block_n, HEAD_DIM=d, CAUSAL=bool(causal), COUNT=count,
                         DOT_PRECISION=precision(td))
    rows = softmax_rows(n, block_m)
    softmax_kernel[(triton.cdiv(n, rows),)](p, s, counts, p.stride(0), s.stride(0), n,
                                            ROWS=rows, N_PAD=triton.next_power_of_2(n), COUNT=count)
    pv_kernel[(tq,)](o, p, v, counts, o.stride(0), p.stride(0), v.stride(0), n,
                     BLOCK_M=block_m, BLOCK_N=block_n, HEAD_DIM=d, COUNT=count, DOT_PRECISION=precision(td))
    c = counts.cpu().numpy()
    return StandardResult(s.float().cpu().numpy(), p.float().cpu().numpy(), o.float().cpu().numpy(),
                          {name: int(c[i]) for i, name in enumerate(COUNTERS)} if count else {})


# ---------------------------------------------------------------- the walk of one q-block's rows
class Step(NamedTuple):
    kernel: int  # 1: S = Q K^T, 2: P = softmax(S), 3: O = P V
    kv_block: int | None  # the tile of keys (kernels 1 and 3); None: kernel 2 takes whole rows


KERNEL_NAMES = {1: "S = QKᵀ", 2: "P = softmax(S)", 3: "O = PV"}


def walk(seq_len: int, block_n: int) -> list[Step]:
    """A q-block's rows through the three kernels: kernel 1 tile by tile, kernel 2 at once, kernel 3 tile by tile."""
    tk = -(-seq_len // block_n)
    return [Step(1, j) for j in range(tk)] + [Step(2, None)] + [Step(3, j) for j in range(tk)]


def moved(steps: list[Step], k: int, rows: int, seq_len: int, block_n: int) -> dict:
    """Elements of S and P the followed rows have written to and read from HBM through step k."""
    def keys(j):
        return min(block_n, seq_len - j * block_n)
    done = steps[: k + 1]
    s_written = sum(rows * keys(s.kv_block) for s in done if s.kernel == 1)
    p_read = sum(rows * keys(s.kv_block) for s in done if s.kernel == 3)
    through_2 = any(s.kernel >= 2 for s in done)
    return {"s_stores": s_written, "s_loads": rows * seq_len if through_2 else 0,
            "p_stores": rows * seq_len if through_2 else 0, "p_loads": p_read}
