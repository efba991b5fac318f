"""FlashAttention-2 forward as one Triton kernel, fast path and trace mode from the same source.

One program per (q-block, batch*head). The kv loop is inside: K_j, V_j stream through the chip,
the running max m_i and sum l_i are rescaled when the max grows, `acc` stays unnormalized and is
divided by l_i once at the end; the log-sum-exp is stored for the backward. S and P never leave
the chip. The kernel works in base 2 (exp2, scores pre-multiplied by log2(e)); the trace converts
back to the textbook units (see kernels/trace.py).

With TRACE=False no trace code is compiled in: that is the kernel the benchmarks time.
The backward (end of the file): preprocess D = rowsum(dO o O), a dK/dV kernel and a dQ kernel that
recompute P from the stored log-sum-exp; flash_attention is differentiable through them.
Not for: building traces or inputs (kernels/trace.py) or the float64 reference (kernels/reference.py).
"""
import math

from kernels import backend

import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

HEAD_DIMS = (16, 32, 64, 128)
BLOCK_SIZES = (16, 32, 64, 128, 256)
MAX_TILE_ELEMENTS = 128 * 128  # block_m * block_n: the score tile lives in registers
MAX_BLOCK_HEAD_ELEMENTS = 256 * 128  # max(block_m, block_n) * head_dim: Q or K/V tile on chip
TMA_MIN_SEQ_LEN = 4096  # the fast path uses tensor descriptors from here on
LOG2E = tl.constexpr(1.4426950408889634)  # constexpr: compiled kernels may not read plain globals
LN2 = tl.constexpr(0.6931471805599453)

# trace buffers: state[0] = m, state[1] = l, state[2] = alpha ; counters in this order
COUNTER_KEYS = ("q_loads", "k_loads", "v_loads", "o_stores", "lse_stores")


def dtypes() -> tuple[str, ...]:
    """Input dtypes this backend runs. The interpreter has no bfloat16 arithmetic."""
    return ("float32", "float16") if backend.INTERPRET else ("float32", "float16", "bfloat16")


def check_blocks(block_m: int, block_n: int, head_dim: int) -> None:
    """ValueError naming the allowed values, the way a user can act on it."""
    if head_dim not in HEAD_DIMS:
        raise ValueError(f"head_dim must be one of {HEAD_DIMS}, got {head_dim}")
    for name, b in (("block_m", block_m), ("block_n", block_n)):
        if not isinstance(b, int) or b not in BLOCK_SIZES:
            raise ValueError(f"{name} must be a power of two between 16 and 256, got {b}")
    if block_m * block_n > MAX_TILE_ELEMENTS:
        raise ValueError(
            f"block_m * block_n must be at most {MAX_TILE_ELEMENTS} (128 x 128) so the score "
            f"tile fits in registers, got {block_m} x {block_n}"
        )
    if max(block_m, block_n) * head_dim > MAX_BLOCK_HEAD_ELEMENTS:
        raise ValueError(
            f"max(block_m, block_n) * head_dim must be at most {MAX_BLOCK_HEAD_ELEMENTS}, "
            f"got {max(block_m, block_n)} x {head_dim}"
        )


@triton.jit
def _softmax_tile(qk, m_i, l_i, qk_scale, offs_m, offs_n, N_CTX, MASKED: tl.constexpr, CAUSAL: tl.constexpr):
    """One tile's online-softmax update: the new row max m_ij, P = exp2(S - m_ij), the factor alpha
    that shrinks everything summed under the old max, and the running sum l. qk comes back scaled
    (log2 units; only the trace reads it)."""
    if MASKED:  # ragged last kv-block, and the causal diagonal band
        keep = offs_n[None, :] < N_CTX
        if CAUSAL:
            keep = keep & (offs_m[:, None] >= offs_n[None, :])
        qk = tl.where(keep, qk * qk_scale, float("-inf"))
        m_ij = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_ij[:, None])
    else:
        # -- update m_i: scale folded into one FMA with the subtraction below --
        m_ij = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        p = tl.math.exp2(qk * qk_scale - m_ij[:, None])
        qk = qk * qk_scale
    # -- update l_i: a larger max shrinks everything summed so far by alpha --
    alpha = tl.math.exp2(m_i - m_ij)
    l_i = l_i * alpha + tl.sum(p, 1)
    return p, m_ij, alpha, l_i, qk


@triton.jit
def _load_v(V_src, off_z, off_h, start_n, offs_n, offs_d, stride_vn, stride_vk, N_CTX,
            HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr, USE_TMA: tl.constexpr):
    if USE_TMA:
        v = tl.reshape(V_src.load([off_z, off_h, start_n, 0]), [BLOCK_N, HEAD_DIM])
    elif MASKED:
        v = tl.load(V_src + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vk,
                    mask=offs_n[:, None] < N_CTX, other=0.0)
    else:
        v = tl.load(V_src + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vk)
    return v


@triton.jit
def _attn_fwd_inner(
    acc, l_i, m_i, q, acc1, l1, m1, q1,
    K_src, V_src, off_z, off_h, stride_kn, stride_kk, stride_vn, stride_vk,
    start_m, lo, hi, qk_scale, N_CTX,
    offs_m, offs_d,
    TraceState, TraceVisit, TraceS, TraceP, TraceAcc, Counters, slot, step, Tq, Tk, n_slots,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr, CAUSAL: tl.constexpr, TRACE: tl.constexpr, DOT_PRECISION: tl.constexpr,
    USE_TMA: tl.constexpr, WARP_SPEC: tl.constexpr, SPLIT: tl.constexpr, LATE_V: tl.constexpr,
):
    # SPLIT == 2: the program's q-block is two halves of rows (q, acc, l_i, m_i) and (q1, acc1, l1,
    # m1), each with its own softmax state, sharing every K_j and V_j tile. SPLIT == 1: q1, acc1, l1
    # and m1 are unused stand-ins.
    offs_nb = tl.arange(0, BLOCK_N)
    for start_n in tl.range(lo, hi, BLOCK_N, warp_specialize=WARP_SPEC):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        offs_n = start_n + offs_nb
        # -- compute qk: K_j^T streams in, the (BLOCK_M, BLOCK_N) scores never leave the chip --
        if USE_TMA:  # bulk copy engine; rows past seq_len arrive as zeros
            k = tl.reshape(K_src.load([off_z, off_h, start_n, 0]), [BLOCK_N, HEAD_DIM]).T
        elif MASKED:
            k = tl.load(K_src + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kk,
                        mask=offs_n[None, :] < N_CTX, other=0.0)
        else:
            k = tl.load(K_src + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kk)
        # V_j is loaded with K_j, before the softmax that comes between their products: on an H100
        # that ran up to 15% faster than loading it after for most configs (scripts/attn_gap_probe.py,
        # 2026-11-23); the head_dim-64 split config ran slower so and keeps the late load (LATE_V)
        if not LATE_V:
            v = _load_v(V_src, off_z, off_h, start_n, offs_n, offs_d, stride_vn, stride_vk, N_CTX,
                        HEAD_DIM, BLOCK_N, MASKED, USE_TMA)
        qk = tl.dot(q, k, input_precision=DOT_PRECISION)
        if SPLIT == 2:  # both halves' scores first, then each half's softmax and P V
            qk1 = tl.dot(q1, k, input_precision=DOT_PRECISION)
        p, m_ij, alpha, l_i, qk = _softmax_tile(qk, m_i, l_i, qk_scale, offs_m, offs_n, N_CTX, MASKED, CAUSAL)
        # -- rescale acc, then add p @ V_j; acc stays unnormalized until the end (FA2) --
        acc_before = acc
        acc = acc * alpha[:, None]
        if LATE_V:
            v = _load_v(V_src, off_z, off_h, start_n, offs_n, offs_d, stride_vn, stride_vk, N_CTX,
                        HEAD_DIM, BLOCK_N, MASKED, USE_TMA)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PRECISION)
        if SPLIT == 2:
            p1, m1_new, alpha1, l1, _ = _softmax_tile(qk1, m1, l1, qk_scale, offs_m + BLOCK_M // 2, offs_n, N_CTX,
                                                      MASKED, CAUSAL)
            acc1 = tl.dot(p1.to(v.dtype), v, acc1 * alpha1[:, None], input_precision=DOT_PRECISION)
            m1 = m1_new
        m_i = m_ij
        if TRACE:
            j = start_n // BLOCK_N
            row_ok = offs_m < N_CTX
            kv_rows = tl.sum((offs_n < N_CTX).to(tl.int64))
            tl.atomic_add(Counters + 1, kv_rows * HEAD_DIM)  # K_j loaded
            tl.atomic_add(Counters + 2, kv_rows * HEAD_DIM)  # V_j loaded
            tl.store(TraceVisit + start_m * Tk + j, step)
            st = (start_m * Tk + j) * BLOCK_M + tl.arange(0, BLOCK_M)
            plane = Tq * Tk * BLOCK_M
            tl.store(TraceState + st, m_i * LN2, mask=row_ok)  # back to natural units
            tl.store(TraceState + plane + st, l_i, mask=row_ok)
            tl.store(TraceState + 2 * plane + st, alpha, mask=row_ok)
            if slot >= 0:
                tile = (slot * Tk + j).to(tl.int64)
                ok = row_ok[:, None] & (offs_n[None, :] < N_CTX)
                rows = tl.arange(0, BLOCK_M)
                sp = tile * BLOCK_M * BLOCK_N + rows[:, None] * BLOCK_N + offs_nb[None, :]
                tl.store(TraceS + sp, qk * LN2, mask=ok)
                tl.store(TraceP + sp, p, mask=ok)
                ap = tile * BLOCK_M * HEAD_DIM + rows[:, None] * HEAD_DIM + offs_d[None, :]
                acc_plane = n_slots.to(tl.int64) * Tk * BLOCK_M * HEAD_DIM
                tl.store(TraceAcc + ap, acc_before, mask=row_ok[:, None])
                tl.store(TraceAcc + acc_plane + ap, acc, mask=row_ok[:, None])
            step += 1
    return acc, l_i, m_i, acc1, l1, m1, step


@triton.jit
def _load_q(Q, off_z, off_h, row0, offs_m, offs_d, stride_qz, stride_qh, stride_qm, stride_qk, N_CTX,
            ROWS: tl.constexpr, HEAD_DIM: tl.constexpr, USE_TMA: tl.constexpr):
    if USE_TMA:  # rows past seq_len arrive as zeros
        q = tl.reshape(Q.load([off_z, off_h, row0, 0]), [ROWS, HEAD_DIM])
    else:
        q = tl.load(Q + off_z.to(tl.int64) * stride_qz + off_h.to(tl.int64) * stride_qh
                    + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qk,
                    mask=offs_m[:, None] < N_CTX, other=0.0)
    return q


@triton.jit
def _store_out(acc, l_i, m_i, Out, Lse, off_z, off_h, off_hz, row0, offs_m, offs_d,
               stride_oz, stride_oh, stride_om, stride_ok, N_CTX,
               ROWS: tl.constexpr, HEAD_DIM: tl.constexpr, USE_TMA: tl.constexpr):
    # -- epilogue: normalize once, store O_i and the log-sum-exp (natural log) --
    out = acc / l_i[:, None]
    tl.store(Lse + off_hz.to(tl.int64) * N_CTX + offs_m, (m_i + tl.math.log2(l_i)) * LN2, mask=offs_m < N_CTX)
    if USE_TMA:  # rows past seq_len are clipped by the copy engine
        Out.store([off_z, off_h, row0, 0], tl.reshape(out.to(Out.dtype), [1, 1, ROWS, HEAD_DIM]))
    else:
        tl.store(Out + off_z.to(tl.int64) * stride_oz + off_h.to(tl.int64) * stride_oh
                 + offs_m[:, None] * stride_om + offs_d[None, :] * stride_ok,
                 out.to(Out.dtype.element_ty), mask=offs_m[:, None] < N_CTX)


@triton.jit(do_not_specialize=["n_slots"])  # n_slots == 1 must stay a tensor, not a constexpr
def _attn_fwd(
    Q, K, V, sm_scale, Lse, Out,
    stride_qz, stride_qh, stride_qm, stride_qk,
    stride_kz, stride_kh, stride_kn, stride_kk,
    stride_vz, stride_vh, stride_vn, stride_vk,
    stride_oz, stride_oh, stride_om, stride_ok,
    H, N_CTX,
    TraceState, TraceVisit, TraceSlot, TraceS, TraceP, TraceAcc, Counters, n_slots,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, TRACE: tl.constexpr, DOT_PRECISION: tl.constexpr,
    USE_TMA: tl.constexpr = False, WARP_SPEC: tl.constexpr = False, SPLIT: tl.constexpr = 1,
    MASKED_TILES: tl.constexpr = True, LATE_V: tl.constexpr = False,
):
    # MASKED_TILES: some kv-blocks need a mask (causal, or seq_len not a multiple of BLOCK_N). The
    # host sets it; False leaves the masked loop out of the compiled kernel, even empty its
    # pipelined prologue and epilogue cost registers (up to 10% at N=8192 on an H100, 2026-11-23)
    tl.static_assert(SPLIT == 1 or SPLIT == 2, "SPLIT is 1 or 2")
    tl.static_assert(MASKED_TILES or not CAUSAL, "causal attention masks the diagonal band")
    tl.static_assert(SPLIT == 1 or not TRACE, "the trace records whole q-blocks: SPLIT == 1")
    ROWS: tl.constexpr = BLOCK_M // SPLIT  # rows per half (SPLIT == 2) or the whole q-block
    if CAUSAL:  # the last q-blocks have the most kv-blocks: launch them first, fewer idle SMs at the end
        start_m = tl.num_programs(0) - 1 - tl.program_id(0)
    else:
        start_m = tl.program_id(0)
    off_hz = tl.program_id(1)
    off_z = off_hz // H
    off_h = off_hz % H
    if USE_TMA:  # Q, K, V, Out are (batch, heads, seq_len, head_dim) tensor descriptors
        K_src = K
        V_src = V
    else:
        K_src = K + off_z.to(tl.int64) * stride_kz + off_h.to(tl.int64) * stride_kh
        V_src = V + off_z.to(tl.int64) * stride_vz + off_h.to(tl.int64) * stride_vh

    row0 = start_m * BLOCK_M
    offs_m = row0 + tl.arange(0, ROWS)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N_CTX
    # -- Q_i is loaded once and stays on chip for the whole kv loop --
    q = _load_q(Q, off_z, off_h, row0, offs_m, offs_d, stride_qz, stride_qh, stride_qm, stride_qk, N_CTX,
                ROWS, HEAD_DIM, USE_TMA)
    m_i = tl.zeros([ROWS], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([ROWS], dtype=tl.float32)
    acc = tl.zeros([ROWS, HEAD_DIM], dtype=tl.float32)
    if SPLIT == 2:  # the second half of the q-block's rows, with its own softmax state
        q1 = _load_q(Q, off_z, off_h, row0 + ROWS, offs_m + ROWS, offs_d, stride_qz, stride_qh, stride_qm,
                     stride_qk, N_CTX, ROWS, HEAD_DIM, USE_TMA)
        m1 = tl.zeros([ROWS], dtype=tl.float32) - float("inf")
        l1 = tl.zeros([ROWS], dtype=tl.float32)
        acc1 = tl.zeros([ROWS, HEAD_DIM], dtype=tl.float32)
    else:  # stand-ins, never read
        q1 = q
        m1 = m_i
        l1 = l_i
        acc1 = acc
    qk_scale = sm_scale * LOG2E  # exp(x) == exp2(x * log2(e))

    # kv-blocks [0, lo_masked) need no mask; [lo_masked, hi) hold the ragged end of the
    # sequence and, when causal, the diagonal band. Tiles past hi are above the diagonal: skipped.
    if CAUSAL:
        hi = tl.minimum((start_m + 1) * BLOCK_M, N_CTX)
        lo_masked = tl.minimum((start_m * BLOCK_M) // BLOCK_N, N_CTX // BLOCK_N) * BLOCK_N
    else:
        hi = N_CTX
        lo_masked = (N_CTX // BLOCK_N) * BLOCK_N

    slot = -1
    step = 0
    if TRACE:
        slot = tl.load(TraceSlot + start_m)
        tl.atomic_add(Counters + 0, tl.sum(row_ok.to(tl.int64)) * HEAD_DIM)  # Q_i loaded
    Tq = tl.cdiv(N_CTX, BLOCK_M)
    Tk = tl.cdiv(N_CTX, BLOCK_N)
    acc, l_i, m_i, acc1, l1, m1, step = _attn_fwd_inner(
        acc, l_i, m_i, q, acc1, l1, m1, q1, K_src, V_src, off_z, off_h, stride_kn, stride_kk, stride_vn, stride_vk,
        start_m, 0, lo_masked, qk_scale, N_CTX, offs_m, offs_d,
        TraceState, TraceVisit, TraceS, TraceP, TraceAcc, Counters, slot, step, Tq, Tk, n_slots,
        HEAD_DIM, BLOCK_M, BLOCK_N, False, CAUSAL, TRACE, DOT_PRECISION, USE_TMA, WARP_SPEC, SPLIT, LATE_V,
    )
    if MASKED_TILES:
        acc, l_i, m_i, acc1, l1, m1, step = _attn_fwd_inner(
            acc, l_i, m_i, q, acc1, l1, m1, q1, K_src, V_src, off_z, off_h, stride_kn, stride_kk, stride_vn,
            stride_vk, start_m, lo_masked, hi, qk_scale, N_CTX, offs_m, offs_d,
            TraceState, TraceVisit, TraceS, TraceP, TraceAcc, Counters, slot, step, Tq, Tk, n_slots,
            HEAD_DIM, BLOCK_M, BLOCK_N, True, CAUSAL, TRACE, DOT_PRECISION, USE_TMA, WARP_SPEC, SPLIT, LATE_V,
        )
    _store_out(acc, l_i, m_i, Out, Lse, off_z, off_h, off_hz, row0, offs_m, offs_d,
               stride_oz, stride_oh, stride_om, stride_ok, N_CTX, ROWS, HEAD_DIM, USE_TMA)
    if SPLIT == 2:
        _store_out(acc1, l1, m1, Out, Lse, off_z, off_h, off_hz, row0 + ROWS, offs_m + ROWS, offs_d,
                   stride_oz, stride_oh, stride_om, stride_ok, N_CTX, ROWS, HEAD_DIM, USE_TMA)
    if TRACE:
        tl.atomic_add(Counters + 3, tl.sum(row_ok.to(tl.int64)) * HEAD_DIM)  # O_i stored
        tl.atomic_add(Counters + 4, tl.sum(row_ok.to(tl.int64)))  # lse_i stored


# ------------------------------------------------------------------------------ host side
_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def torch_dtype(name: str) -> torch.dtype:
    return _TORCH_DTYPES[name]


def _scale(sm_scale, head_dim) -> float:
    if sm_scale is None:
        return 1.0 / math.sqrt(head_dim)
    if not (isinstance(sm_scale, (int, float)) and math.isfinite(sm_scale) and sm_scale > 0):
        raise ValueError(f"sm_scale must be a finite number > 0, got {sm_scale!r}")
    return float(sm_scale)


def _check_inputs(q, k, v) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise ValueError(f"{name} must be (batch, heads, seq_len, head_dim), got shape {tuple(t.shape)}")
    if not (q.shape == k.shape == v.shape):
        raise ValueError(f"q, k, v must have one shape, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must have one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    allowed = [_TORCH_DTYPES[d] for d in dtypes()]
    if q.dtype not in allowed:
        raise ValueError(f"dtype must be one of {dtypes()} on this backend, got {q.dtype}")
    if q.shape[2] < 1:
        raise ValueError(f"seq_len must be at least 1, got {q.shape[2]}")
    if q.shape[3] not in HEAD_DIMS:
        raise ValueError(f"head_dim must be one of {HEAD_DIMS}, got {q.shape[3]}")
    if q.device.type != backend.DEVICE:
        raise ValueError(f"inputs must be on {backend.DEVICE!r} for this backend, got {q.device}")


class TraceBuffers:
    """Device buffers the kernel writes its trace into (TRACE=True). NaN/-1 = never written."""

    def __init__(self, seq_len, head_dim, block_m, block_n, tile_q_blocks, device):
        tq, tk = math.ceil(seq_len / block_m), math.ceil(seq_len / block_n)
        n = len(tile_q_blocks)
        nan = float("nan")
        self.state = torch.full((3, tq, tk, block_m), nan, dtype=torch.float32, device=device)
        self.visit = torch.full((tq, tk), -1, dtype=torch.int32, device=device)
        self.slot = torch.full((tq,), -1, dtype=torch.int32, device=device)
        for s, i in enumerate(tile_q_blocks):
            self.slot[i] = s
        self.s = torch.full((max(n, 1), tk, block_m, block_n), nan, dtype=torch.float32, device=device)
        self.p = torch.full_like(self.s, nan)
        self.acc = torch.full((2, max(n, 1), tk, block_m, head_dim), nan, dtype=torch.float32, device=device)
        self.counters = torch.zeros(len(COUNTER_KEYS), dtype=torch.int64, device=device)
        self.n_slots = n

    def args(self):
        return (self.state, self.visit, self.slot, self.s, self.p, self.acc, self.counters, self.n_slots)


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


def _descriptors(q, k, v, out, block_m, block_n):
    from triton.tools.tensor_descriptor import TensorDescriptor

    d = q.shape[-1]

    def desc(t, rows):
        return TensorDescriptor(t, shape=list(t.shape), strides=list(t.stride()), block_shape=[1, 1, rows, d])

    return desc(q, block_m), desc(k, block_n), desc(v, block_n), desc(out, block_m)


def _launch(q, k, v, causal, sm_scale, block_m, block_n, trace: TraceBuffers | None = None,
            num_warps=None, num_stages=None, out=None, use_tma=None, warp_spec=False, maxnreg=None, split=1,
            late_v=False):
    backend.require_triton()
    _check_inputs(q, k, v)
    check_blocks(block_m, block_n, q.shape[3])  # both halves' score tiles are live at once: the whole block
    if type(split) is not int or split not in (1, 2) or (split == 2 and block_m < 32):
        raise ValueError(f"split must be 1, or 2 with block_m >= 32, got split={split!r}, block_m={block_m}")
    if split == 2 and trace is not None:
        raise ValueError("a traced launch records whole q-blocks: split must be 1")
    return _launch_checked(q, k, v, causal, _scale(sm_scale, q.shape[3]), block_m, block_n, trace,
                           num_warps, num_stages, out, use_tma, warp_spec, maxnreg, split, bool(late_v))


def _launch_checked(q, k, v, causal, sm_scale, block_m, block_n, trace, num_warps, num_stages, out, use_tma,
                    warp_spec, maxnreg=None, split=1, late_v=False):
    """_launch after validation (sm_scale already a float): the tuned path calls this directly."""
    batch, heads, seq_len, head_dim = q.shape
    if out is None:
        out = torch.empty_like(q)
    lse = torch.empty((batch, heads, seq_len), dtype=torch.float32, device=q.device)
    grid = (triton.cdiv(seq_len, block_m), batch * heads)
    trace_args = trace.args() if trace is not None else (None,) * 7 + (0,)
    extra = {}
    if not backend.INTERPRET:
        extra["num_warps"] = num_warps or (4 if block_m * block_n <= 64 * 64 else 8)
        extra["num_stages"] = num_stages or 2
        if maxnreg:  # a register cap per thread: more programs fit on one SM
            extra["maxnreg"] = maxnreg
    if use_tma is None:
        use_tma = tma_supported(q, k, v, out)
    tensors = _descriptors(q, k, v, out, block_m // split, block_n) if use_tma else (q, k, v, out)
    _attn_fwd[grid](
        *tensors[:3], sm_scale, lse, tensors[3],
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        heads, seq_len,
        *trace_args,
        HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n,
        CAUSAL=bool(causal), TRACE=trace is not None,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        USE_TMA=use_tma, WARP_SPEC=warp_spec, SPLIT=split, MASKED_TILES=bool(causal) or seq_len % block_n != 0,
        LATE_V=late_v, **extra,
    )
    return out, lse


# -- the fast path on a GPU: the same kernel, TRACE off, block sizes / warps / stages autotuned --
def _configs(interpret=None):
    if backend.INTERPRET if interpret is None else interpret:
        return [triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "WARP_SPEC": False, "SPLIT": 1})]
    # (triton.Config only as a record: _ForwardTuner launches each through _launch)
    # the shortlist that won on an H100 (scripts/attn_variants.py, 2026-11-22 and -23): 128-row
    # q-blocks, 8 warps for head_dim 128, 4 for 64; warp specialization pays in the causal case.
    # Two stages with 4 warps leave shared memory for two programs on one SM (head_dim 128,
    # 128 x 64: 96 KiB each), so one program's softmax can run beside the other's matrix products:
    # 534 against 478 TFLOP/s at N=8192 full in the same run, the largest gain any variant gave.
    # SPLIT 2: the q-block as two halves with their own softmax state, sharing each K/V tile
    # (2026-11-23: 256 x 64 at head_dim 128 up to 3% faster at N >= 4096, within the run-to-run
    # spread; 128 x 128 at head_dim 64 16% faster at N=2048 causal). Each is kept for the head_dim
    # it was measured on: at the other it spills registers. Dropped on 2026-11-23, never picked in
    # the day's runs: 128 x 64 with 8 warps warp-specialized, and 128 x 128 with 4 warps, 3 stages.
    # Since V_j is loaded with K_j (2026-11-23), 128 x 128 with 8 warps and 3 stages is the fastest
    # at head_dim 128: 549 against 481 TFLOP/s before, N=8192 full; the head_dim-64 split config
    # keeps the late V load, with which it is the fastest at N=8192 full (446 TFLOP/s).
    out = []
    for bm, bn, warps, stages, ws, split, head_dims in [
        (128, 128, 8, 3, False, 1, None), (128, 128, 8, 3, True, 1, None), (128, 64, 8, 3, False, 1, None),
        (128, 64, 4, 3, False, 1, None), (128, 64, 4, 2, False, 1, None), (64, 128, 4, 2, False, 1, None),
        (64, 64, 4, 3, False, 1, None), (64, 64, 4, 2, False, 1, None),  # short causal: more programs than SMs
        (256, 64, 8, 3, False, 2, (128,)), (128, 128, 4, 2, False, 2, (16, 32, 64)),
    ]:
        kwargs = {"BLOCK_M": bm, "BLOCK_N": bn, "WARP_SPEC": ws, "SPLIT": split}
        if split == 2 and bm == 128:  # with V_j loaded early it ran 0.85-0.93x (H100, 2026-11-23)
            kwargs["LATE_V"] = True
        if head_dims:
            kwargs["HEAD_DIMS"] = head_dims
        out.append(triton.Config(kwargs, num_warps=warps, num_stages=stages))
    return out


def _ieee_only_first(config_list, named_args, kwargs):
    """float32 inputs run `tl.dot` at ieee precision on the FMA units, not the tensor cores, so no
    config is fast and tuning buys nothing; each compile at ieee precision takes ~15 s (H100,
    2026-11-22: nine configs were ~2 min before the first float32 call returned). One config: the
    smallest tile, which needs the least shared memory for float32 K and V."""
    if named_args.get("DOT_PRECISION", kwargs.get("DOT_PRECISION")) == "ieee":
        return [min(config_list, key=lambda c: c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"])]
    return config_list


def _keep(config_list, named_args, **kwargs):
    """The configs worth timing for these arguments."""
    head_dim = named_args.get("HEAD_DIM", kwargs.get("HEAD_DIM"))
    config_list = _ieee_only_first(config_list, named_args, kwargs)
    kept = [c for c in config_list
            if max(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) * head_dim <= MAX_BLOCK_HEAD_ELEMENTS
            and head_dim in c.kwargs.get("HEAD_DIMS", (head_dim,))]
    if not named_args.get("USE_TMA", kwargs.get("USE_TMA", False)):  # pointer loads: no warp specialization
        kept = [c for c in kept if not c.kwargs["WARP_SPEC"]]
    return kept or config_list[:1]


TUNED_CONFIGS = _configs()  # every config the tuner can pick; the GPU tests run each one
TUNE_ROUNDS = 5


class _ForwardTuner:
    """Picks the forward's config once per (seq_len, head_dim, causal, precision, loads, device) by
    timing every candidate in interleaved rounds (a, b, c, a, b, c, ...) and taking each one's median,
    so a GPU that clocks down as it heats costs every candidate alike. triton.autotune times them
    one after the other; on an H100 (2026-11-23) its pick for causal head_dim 128 ran 4-7% below the
    best single config, and which config won moved with the order of the list."""

    def __init__(self):
        self.cache: dict[tuple, triton.Config] = {}
        self.last: triton.Config | None = None

    def pick(self, key, candidates, run, bench=None) -> triton.Config:
        """The config for `key`; on the first call for it, `candidates()` gives the list to time."""
        config = self.cache.get(key)
        if config is None:
            todo = candidates()
            config = self.cache[key] = todo[0] if len(todo) == 1 else self._time(todo, run, bench)
        self.last = config
        return config

    @staticmethod
    def _bench(fn) -> float:
        return triton.testing.do_bench(fn, warmup=10, rep=100, return_mode="median")

    @staticmethod
    def _time(candidates, run, bench=None):
        bench = bench or _ForwardTuner._bench
        ok, error = [], None
        for c in candidates:  # compile each; a config this GPU cannot run is dropped, as triton.autotune does
            try:
                run(c)
                ok.append(c)
            except (triton.runtime.errors.OutOfResources, triton.compiler.errors.CompilationError) as e:
                error = e
        if not ok:
            raise error
        times, failed = interleaved_medians({i: (lambda c=c: run(c)) for i, c in enumerate(ok)}, TUNE_ROUNDS, bench)
        if not times:
            raise RuntimeError(f"every forward config failed while being timed: {failed}")
        return ok[min(times, key=times.get)]


def interleaved_medians(fns: dict, rounds: int, bench) -> tuple[dict, dict]:
    """({name: median}, {name: error}) for callables timed by `bench(fn)` in interleaved rounds
    (a, b, c, a, b, c, ...), the median over the rounds for each: a GPU whose clock drifts as it
    heats costs every one alike, where timing them one after the other favours whichever ran first.
    One that raises RuntimeError (out of memory, say) is dropped from later rounds; its error's
    first line comes back instead. The forward's tuner and kernels.bench both time this way."""
    import statistics

    times = {name: [] for name in fns}
    failed = {}
    for _ in range(rounds):
        for name, fn in fns.items():
            if name in failed:
                continue
            try:
                times[name].append(bench(fn))
            except RuntimeError as e:
                failed[name] = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
    return {name: statistics.median(t) for name, t in times.items() if name not in failed}, failed


_tuner = _ForwardTuner()


def tuned_config_name() -> str | None:
    """The config the forward's tuner picked for its latest call, e.g. 'BM128 BN128 w8 s3 ws' or
    'BM256 BN64 w8 s3 split2' (two 128-row halves)."""
    c = _tuner.last
    if c is None:
        return None
    ws = " ws" if c.kwargs.get("WARP_SPEC") else ""
    split = " split2" if c.kwargs.get("SPLIT", 1) == 2 else ""
    late_v = " late-V" if c.kwargs.get("LATE_V") else ""
    return f"BM{c.kwargs['BLOCK_M']} BN{c.kwargs['BLOCK_N']} w{c.num_warps} s{c.num_stages}{ws}{split}{late_v}"


def launch_config(q, k, v, causal, sm_scale, config: triton.Config, use_tma: bool, out=None):
    """(out, lse) from one of TUNED_CONFIGS, launched as the tuner launches it (sm_scale a float)."""
    kw = config.kwargs
    return _launch_checked(q, k, v, causal, sm_scale, kw["BLOCK_M"], kw["BLOCK_N"], None, config.num_warps,
                           config.num_stages, out, use_tma, kw["WARP_SPEC"], config.maxnreg, kw.get("SPLIT", 1),
                           kw.get("LATE_V", False))


def _launch_tuned(q, k, v, causal, sm_scale):
    backend.require_triton()
    _check_inputs(q, k, v)
    batch, heads, seq_len, head_dim = q.shape
    sm_scale = _scale(sm_scale, head_dim)
    out = torch.empty_like(q)
    # encoding four descriptors costs tens of microseconds a launch: below 4096 that is a large
    # share of the kernel's time (H100, 2026-11-22: N=1024 ran at half speed), so pointers there
    use_tma = seq_len >= TMA_MIN_SEQ_LEN and tma_supported(q, k, v, out)
    precision = "ieee" if q.dtype == torch.float32 else "tf32"

    def run(c):
        return launch_config(q, k, v, causal, sm_scale, c, use_tma, out)

    def candidates():  # only on the first call for a key: later calls look the config up and launch
        return _keep(TUNED_CONFIGS, {"HEAD_DIM": head_dim, "USE_TMA": use_tma, "DOT_PRECISION": precision})

    return run(_tuner.pick((seq_len, head_dim, bool(causal), precision, use_tma, q.device), candidates, run))


def flash_attention_fwd(q, k, v, causal=False, sm_scale=None, block_m=None, block_n=None):
    """(out, lse): out (batch, heads, seq_len, head_dim) in q's dtype, lse float32 natural log.
    Without block sizes: the autotuned fast path on a GPU, 64 x 64 blocks in the interpreter."""
    if block_m is None and block_n is None:
        return _launch_tuned(q, k, v, causal, sm_scale)
    if block_m is None or block_n is None:
        raise ValueError("give both block_m and block_n, or neither (autotuned)")
    return _launch(q, k, v, causal, sm_scale, block_m, block_n)


def flash_attention(q, k, v, causal=False, sm_scale=None) -> torch.Tensor:
    """softmax(q k^T * sm_scale) v, FlashAttention-2. sm_scale defaults to 1/sqrt(head_dim).
    Differentiable: the backward is the FlashAttention-2 backward below (no N x N tensor)."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        return FlashAttentionFunction.apply(q, k, v, causal, sm_scale)
    return flash_attention_fwd(q, k, v, causal=causal, sm_scale=sm_scale)[0]  # no autograd overhead


# ============================================================================== backward
# dS = P o (dP - D) with D = rowsum(P o dP) = rowsum(dO o O): one number per row replaces the
# row's N x N softmax Jacobian diag(P) - P P^T. Three kernels, no N x N tensor anywhere:
#   preprocess  D_i = rowsum(dO_i o O_i)                       read O, dO ; write D
#   dK/dV       one program per kv-block j, q-blocks stream:   read K_j, V_j once ; per tile Q_i, dO_i,
#               P^T recomputed from the stored lse,            lse_i, D_i ; write dK_j, dV_j
#               dV_j += P^T dO_i, dK_j += dS^T Q_i
#   dQ          one program per q-block i, kv-blocks stream:   read Q_i, dO_i, lse_i, D_i once ;
#               dQ_i += dS K_j                                 per tile K_j, V_j ; write dQ_i
# The gradients dQ, dK, dV are written contiguous (batch, heads, seq_len, head_dim).
# COUNT (constexpr) makes every kernel count the elements it loads and stores (masked lanes
# excluded); TRACE makes the dK/dV kernel write its tiles. Both compile out when off.
BWD_COUNTER_KEYS = (
    "pre_o_loads", "pre_do_loads", "pre_d_stores",
    "dkdv_k_loads", "dkdv_v_loads", "dkdv_q_loads", "dkdv_do_loads", "dkdv_lse_loads", "dkdv_d_loads",
    "dkdv_dk_stores", "dkdv_dv_stores",
    "dq_q_loads", "dq_do_loads", "dq_lse_loads", "dq_d_loads", "dq_k_loads", "dq_v_loads", "dq_dq_stores",
)


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
def _attn_bwd_dkdv_inner(
    dk, dv, k, v,
    Q_src, DO_src, Lse_src, Delta_src, stride_qm, stride_qk, stride_dom, stride_dok,
    start_n, lo, hi, qk_scale, sm_scale, N_CTX, offs_n, offs_d,
    TraceVisit, TraceP, TraceDP, TraceDS, TraceAcc, Counters, slot, step, Tq, n_slots,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr, CAUSAL: tl.constexpr, COUNT: tl.constexpr, TRACE: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
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
        if COUNT:
            rows = tl.sum((offs_m < N_CTX).to(tl.int64))
            tl.atomic_add(Counters + 5, rows * HEAD_DIM)  # Q_i
            tl.atomic_add(Counters + 6, rows * HEAD_DIM)  # dO_i
            tl.atomic_add(Counters + 7, rows)  # lse_i
            tl.atomic_add(Counters + 8, rows)  # D_i
        if TRACE:
            i = start_m // BLOCK_M
            tl.store(TraceVisit + (start_n // BLOCK_N) * Tq + i, step)
            if slot >= 0:
                tile = (slot * Tq + i).to(tl.int64)
                ok = (offs_m[None, :] < N_CTX) & (offs_n[:, None] < N_CTX)  # (BLOCK_N, BLOCK_M)
                offs_nb = tl.arange(0, BLOCK_N)
                # stored as (block_m, block_n): query rows down, key columns across, as in the forward
                tp = tile * BLOCK_M * BLOCK_N + offs_mb[None, :] * BLOCK_N + offs_nb[:, None]
                tl.store(TraceP + tp, pT, mask=ok)
                tl.store(TraceDP + tp, dpT, mask=ok)
                tl.store(TraceDS + tp, dsT, mask=ok)
                ap = tile * BLOCK_N * HEAD_DIM + offs_nb[:, None] * HEAD_DIM + offs_d[None, :]
                acc_plane = n_slots.to(tl.int64) * Tq * BLOCK_N * HEAD_DIM
                col_ok = (offs_n < N_CTX)[:, None]
                tl.store(TraceAcc + ap, dk * sm_scale, mask=col_ok)  # textbook units: dK so far
                tl.store(TraceAcc + acc_plane + ap, dv, mask=col_ok)
            step += 1
    return dk, dv, step


@triton.jit(do_not_specialize=["n_slots"])  # n_slots == 1 must stay a tensor, not a constexpr
def _attn_bwd_dkdv(
    Q, K, V, DO, Lse, Delta, DK, DV, sm_scale,
    stride_qz, stride_qh, stride_qm, stride_qk,
    stride_kz, stride_kh, stride_kn, stride_kk,
    stride_vz, stride_vh, stride_vn, stride_vk,
    stride_doz, stride_doh, stride_dom, stride_dok,
    H, N_CTX,
    TraceVisit, TraceSlot, TraceP, TraceDP, TraceDS, TraceAcc, Counters, n_slots,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, COUNT: tl.constexpr, TRACE: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    # causal: the first kv-blocks meet the most q-blocks, and program 0 launches first
    start_n = tl.program_id(0) * BLOCK_N
    off_hz = tl.program_id(1)
    off_z = off_hz // H
    off_h = off_hz % H
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    col_ok = offs_n < N_CTX
    # -- K_j, V_j are loaded once and stay on chip for the whole q loop --
    k = tl.load(K + off_z.to(tl.int64) * stride_kz + off_h.to(tl.int64) * stride_kh
                + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kk, mask=col_ok[:, None], other=0.0)
    v = tl.load(V + off_z.to(tl.int64) * stride_vz + off_h.to(tl.int64) * stride_vh
                + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vk, mask=col_ok[:, None], other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    Q_src = Q + off_z.to(tl.int64) * stride_qz + off_h.to(tl.int64) * stride_qh
    DO_src = DO + off_z.to(tl.int64) * stride_doz + off_h.to(tl.int64) * stride_doh
    Lse_src = Lse + off_hz.to(tl.int64) * N_CTX
    Delta_src = Delta + off_hz.to(tl.int64) * N_CTX
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
        slot = tl.load(TraceSlot + tl.program_id(0))
    if COUNT:
        cols = tl.sum(col_ok.to(tl.int64))
        tl.atomic_add(Counters + 3, cols * HEAD_DIM)  # K_j
        tl.atomic_add(Counters + 4, cols * HEAD_DIM)  # V_j
    Tq = tl.cdiv(N_CTX, BLOCK_M)
    dk, dv, step = _attn_bwd_dkdv_inner(
        dk, dv, k, v, Q_src, DO_src, Lse_src, Delta_src, stride_qm, stride_qk, stride_dom, stride_dok,
        start_n, lo, band_hi, qk_scale, sm_scale, N_CTX, offs_n, offs_d,
        TraceVisit, TraceP, TraceDP, TraceDS, TraceAcc, Counters, slot, step, Tq, n_slots,
        HEAD_DIM, BLOCK_M, BLOCK_N, True, CAUSAL, COUNT, TRACE, DOT_PRECISION,
    )
    dk, dv, step = _attn_bwd_dkdv_inner(
        dk, dv, k, v, Q_src, DO_src, Lse_src, Delta_src, stride_qm, stride_qk, stride_dom, stride_dok,
        start_n, band_hi, mid_hi, qk_scale, sm_scale, N_CTX, offs_n, offs_d,
        TraceVisit, TraceP, TraceDP, TraceDS, TraceAcc, Counters, slot, step, Tq, n_slots,
        HEAD_DIM, BLOCK_M, BLOCK_N, False, CAUSAL, COUNT, TRACE, DOT_PRECISION,
    )
    dk, dv, step = _attn_bwd_dkdv_inner(
        dk, dv, k, v, Q_src, DO_src, Lse_src, Delta_src, stride_qm, stride_qk, stride_dom, stride_dok,
        start_n, mid_hi, N_CTX, qk_scale, sm_scale, N_CTX, offs_n, offs_d,
        TraceVisit, TraceP, TraceDP, TraceDS, TraceAcc, Counters, slot, step, Tq, n_slots,
        HEAD_DIM, BLOCK_M, BLOCK_N, True, CAUSAL, COUNT, TRACE, DOT_PRECISION,
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
    dq, q, do, lse, Di,
    K_src, V_src, stride_kn, stride_kk, stride_vn, stride_vk,
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
            vT = tl.load(V_src + offs_n[None, :] * stride_vn + offs_d[:, None] * stride_vk,
                         mask=offs_n[None, :] < N_CTX, other=0.0)
        else:
            kT = tl.load(K_src + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kk)
            vT = tl.load(V_src + offs_n[None, :] * stride_vn + offs_d[:, None] * stride_vk)
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
    stride_qz, stride_qh, stride_qm, stride_qk,
    stride_kz, stride_kh, stride_kn, stride_kk,
    stride_vz, stride_vh, stride_vn, stride_vk,
    stride_doz, stride_doh, stride_dom, stride_dok,
    H, N_CTX, Counters,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, COUNT: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
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
    # -- Q_i, dO_i, lse_i, D_i are loaded once --
    q = tl.load(Q + off_z.to(tl.int64) * stride_qz + off_h.to(tl.int64) * stride_qh
                + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qk, mask=row_ok[:, None], other=0.0)
    do = tl.load(DO + off_z.to(tl.int64) * stride_doz + off_h.to(tl.int64) * stride_doh
                 + offs_m[:, None] * stride_dom + offs_d[None, :] * stride_dok, mask=row_ok[:, None], other=0.0)
    lse = tl.load(Lse + off_hz.to(tl.int64) * N_CTX + offs_m, mask=row_ok, other=float("inf"))
    Di = tl.load(Delta + off_hz.to(tl.int64) * N_CTX + offs_m, mask=row_ok, other=0.0)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    K_src = K + off_z.to(tl.int64) * stride_kz + off_h.to(tl.int64) * stride_kh
    V_src = V + off_z.to(tl.int64) * stride_vz + off_h.to(tl.int64) * stride_vh
    qk_scale = sm_scale * LOG2E
    # same split as the forward: [0, lo_masked) unmasked, [lo_masked, hi) the ragged end and,
    # when causal, the diagonal band; tiles past hi are above the diagonal: skipped
    if CAUSAL:
        hi = tl.minimum(start_m + BLOCK_M, N_CTX)
        lo_masked = tl.minimum(start_m // BLOCK_N, N_CTX // BLOCK_N) * BLOCK_N
    else:
        hi = N_CTX
        lo_masked = (N_CTX // BLOCK_N) * BLOCK_N
    dq = _attn_bwd_dq_inner(
        dq, q, do, lse, Di, K_src, V_src, stride_kn, stride_kk, stride_vn, stride_vk,
        0, lo_masked, qk_scale, N_CTX, offs_m, offs_d, Counters,
        HEAD_DIM, BLOCK_M, BLOCK_N, False, CAUSAL, COUNT, DOT_PRECISION,
    )
    dq = _attn_bwd_dq_inner(
        dq, q, do, lse, Di, K_src, V_src, stride_kn, stride_kk, stride_vn, stride_vk,
        lo_masked, hi, qk_scale, N_CTX, offs_m, offs_d, Counters,
        HEAD_DIM, BLOCK_M, BLOCK_N, True, CAUSAL, COUNT, DOT_PRECISION,
    )
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


# ------------------------------------------------------------------------------ backward, host side
class BackwardTraceBuffers:
    """Device buffers the dK/dV kernel writes its trace into (TRACE=True). NaN/-1 = never written.
    Tiles are kept for the kv-blocks in tile_kv_blocks (slot order)."""

    def __init__(self, seq_len, head_dim, block_m, block_n, tile_kv_blocks, device):
        tq, tk = math.ceil(seq_len / block_m), math.ceil(seq_len / block_n)
        n = len(tile_kv_blocks)
        nan = float("nan")
        self.visit = torch.full((tk, tq), -1, dtype=torch.int32, device=device)
        self.slot = torch.full((tk,), -1, dtype=torch.int32, device=device)
        for s, j in enumerate(tile_kv_blocks):
            self.slot[j] = s
        self.p = torch.full((max(n, 1), tq, block_m, block_n), nan, dtype=torch.float32, device=device)
        self.dp = torch.full_like(self.p, nan)
        self.ds = torch.full_like(self.p, nan)
        self.acc = torch.full((2, max(n, 1), tq, block_n, head_dim), nan, dtype=torch.float32, device=device)
        self.counters = torch.zeros(len(BWD_COUNTER_KEYS), dtype=torch.int64, device=device)
        self.n_slots = n

    def args(self):
        return (self.visit, self.slot, self.p, self.dp, self.ds, self.acc, self.counters, self.n_slots)


def _check_backward_inputs(q, k, v, out, lse, do) -> None:
    _check_inputs(q, k, v)
    for name, t in (("out", out), ("do", do)):
        if t.shape != q.shape or t.dtype != q.dtype or t.device != q.device:
            raise ValueError(f"{name} must match q: shape {tuple(q.shape)} {q.dtype} on {q.device}, "
                             f"got {tuple(t.shape)} {t.dtype} on {t.device}")
    if lse.shape != q.shape[:3] or lse.dtype != torch.float32 or not lse.is_contiguous():
        raise ValueError(f"lse must be contiguous float32 of shape {tuple(q.shape[:3])} (what the forward "
                         f"returns), got {tuple(lse.shape)} {lse.dtype}")


def _bwd_extra(block_m, block_n, num_warps, num_stages):
    if backend.INTERPRET:
        return {}
    return {"num_warps": num_warps or (4 if block_m * block_n <= 64 * 64 else 8), "num_stages": num_stages or 2}


def _preprocess(out, do, counters, count):
    """D = rowsum(dO o O), float32 (batch, heads, seq_len)."""
    batch, heads, seq_len, head_dim = out.shape
    delta = torch.empty((batch, heads, seq_len), dtype=torch.float32, device=out.device)
    block = 64 if backend.INTERPRET or head_dim > 64 else 128
    _attn_bwd_preprocess[(triton.cdiv(seq_len, block), batch * heads)](
        out, do, delta, counters, *out.stride(), *do.stride(), heads, seq_len,
        HEAD_DIM=head_dim, BLOCK_M=block, COUNT=count,
    )
    return delta


def _launch_bwd(q, k, v, out, lse, do, causal, sm_scale, block_m, block_n,
                trace: BackwardTraceBuffers | None = None, count=False, num_warps=None, num_stages=None):
    """(dq, dk, dv, delta, counters): one block size pair for both kernels. counters is an int64
    tensor in BWD_COUNTER_KEYS order when counting (count=True, or a trace), else None."""
    backend.require_triton()
    _check_backward_inputs(q, k, v, out, lse, do)
    batch, heads, seq_len, head_dim = q.shape
    check_blocks(block_m, block_n, head_dim)
    sm_scale = _scale(sm_scale, head_dim)
    count = count or trace is not None
    counters = trace.counters if trace is not None else (
        torch.zeros(len(BWD_COUNTER_KEYS), dtype=torch.int64, device=q.device) if count else None)
    delta = _preprocess(out, do, counters, count)
    dq, dk, dv = (torch.empty(q.shape, dtype=q.dtype, device=q.device) for _ in range(3))
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    extra = _bwd_extra(block_m, block_n, num_warps, num_stages)
    trace_args = trace.args()[:6] if trace is not None else (None,) * 6
    _attn_bwd_dkdv[(triton.cdiv(seq_len, block_n), batch * heads)](
        q, k, v, do, lse, delta, dk, dv, sm_scale,
        *q.stride(), *k.stride(), *v.stride(), *do.stride(), heads, seq_len,
        *trace_args, counters, trace.n_slots if trace is not None else 0,
        HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=bool(causal), COUNT=count,
        TRACE=trace is not None, DOT_PRECISION=precision, **extra,
    )
    _attn_bwd_dq[(triton.cdiv(seq_len, block_m), batch * heads)](
        q, k, v, do, lse, delta, dq, sm_scale,
        *q.stride(), *k.stride(), *v.stride(), *do.stride(), heads, seq_len, counters,
        HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=bool(causal), COUNT=count,
        DOT_PRECISION=precision, **extra,
    )
    return dq, dk, dv, delta, counters


# -- the fast path on a GPU: the same kernels, COUNT and TRACE off, each autotuned on its own --
def _bwd_configs(kernel: str, interpret=None):
    if backend.INTERPRET if interpret is None else interpret:
        return [triton.Config({"BLOCK_M": 64, "BLOCK_N": 64})]
    # dK/dV keeps (BLOCK_N, d) twice on chip and streams thin q-blocks; dQ the other way round
    # (the shapes of Triton's tutorial 06: 32 x 128 and 128 x 32), plus square 64 x 64 tiles
    shapes = {"dkdv": [(32, 128, 4, 3), (64, 128, 8, 3), (64, 64, 4, 3), (32, 64, 4, 4)],
              "dq": [(128, 32, 4, 3), (128, 64, 8, 3), (64, 64, 4, 3), (64, 32, 4, 4)]}[kernel]
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s) for bm, bn, w, s in shapes]


def _keep_bwd(config_list, named_args, **kwargs):
    head_dim = named_args.get("HEAD_DIM", kwargs.get("HEAD_DIM"))
    config_list = _ieee_only_first(config_list, named_args, kwargs)
    kept = [c for c in config_list
            if max(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) * head_dim <= MAX_BLOCK_HEAD_ELEMENTS
            and head_dim in c.kwargs.get("HEAD_DIMS", (head_dim,))]
    return kept or config_list[:1]


_BWD_KEY = ["N_CTX", "HEAD_DIM", "CAUSAL", "DOT_PRECISION"]
_attn_bwd_dkdv_tuned = triton.autotune(configs=_bwd_configs("dkdv"), key=_BWD_KEY,
                                       prune_configs_by={"early_config_prune": _keep_bwd})(_attn_bwd_dkdv)
_attn_bwd_dq_tuned = triton.autotune(configs=_bwd_configs("dq"), key=_BWD_KEY,
                                     prune_configs_by={"early_config_prune": _keep_bwd})(_attn_bwd_dq)
TUNED_BWD_CONFIGS = {"dkdv": _bwd_configs("dkdv"), "dq": _bwd_configs("dq")}  # the GPU tests run each one


def _launch_bwd_tuned(q, k, v, out, lse, do, causal, sm_scale):
    backend.require_triton()
    _check_backward_inputs(q, k, v, out, lse, do)
    batch, heads, seq_len, head_dim = q.shape
    sm_scale = _scale(sm_scale, head_dim)
    delta = _preprocess(out, do, None, False)
    dq, dk, dv = (torch.empty(q.shape, dtype=q.dtype, device=q.device) for _ in range(3))
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    strides = (*q.stride(), *k.stride(), *v.stride(), *do.stride(), heads, seq_len)
    _attn_bwd_dkdv_tuned[lambda meta: (triton.cdiv(seq_len, meta["BLOCK_N"]), batch * heads)](
        q, k, v, do, lse, delta, dk, dv, sm_scale, *strides, *((None,) * 7 + (0,)),
        HEAD_DIM=head_dim, CAUSAL=bool(causal), COUNT=False, TRACE=False, DOT_PRECISION=precision,
    )
    _attn_bwd_dq_tuned[lambda meta: (triton.cdiv(seq_len, meta["BLOCK_M"]), batch * heads)](
        q, k, v, do, lse, delta, dq, sm_scale, *strides, None,
        HEAD_DIM=head_dim, CAUSAL=bool(causal), COUNT=False, DOT_PRECISION=precision,
    )
    return dq, dk, dv


def _launch_bwd_configs(q, k, v, out, lse, do, causal, sm_scale, dkdv_config, dq_config):
    """(dq, dk, dv) with each kernel launched at one given triton.Config (the GPU tests run each one)."""
    backend.require_triton()
    _check_backward_inputs(q, k, v, out, lse, do)
    batch, heads, seq_len, head_dim = q.shape
    sm_scale = _scale(sm_scale, head_dim)
    delta = _preprocess(out, do, None, False)
    dq, dk, dv = (torch.empty(q.shape, dtype=q.dtype, device=q.device) for _ in range(3))
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    strides = (*q.stride(), *k.stride(), *v.stride(), *do.stride(), heads, seq_len)

    def launch_args(config):
        extra = {} if backend.INTERPRET else {"num_warps": config.num_warps, "num_stages": config.num_stages}
        return dict(HEAD_DIM=head_dim, CAUSAL=bool(causal), COUNT=False, DOT_PRECISION=precision,
                    **config.kwargs, **extra)

    c = dkdv_config.kwargs
    _attn_bwd_dkdv[(triton.cdiv(seq_len, c["BLOCK_N"]), batch * heads)](
        q, k, v, do, lse, delta, dk, dv, sm_scale, *strides, *((None,) * 7 + (0,)),
        TRACE=False, **launch_args(dkdv_config),
    )
    _attn_bwd_dq[(triton.cdiv(seq_len, dq_config.kwargs["BLOCK_M"]), batch * heads)](
        q, k, v, do, lse, delta, dq, sm_scale, *strides, None, **launch_args(dq_config),
    )
    return dq, dk, dv


def flash_attention_bwd(q, k, v, out, lse, do, causal=False, sm_scale=None, block_m=None, block_n=None):
    """(dq, dk, dv) given the forward's out and lse and the output gradient do. Gradients are
    contiguous, in q's dtype. Without block sizes: autotuned on a GPU, 64 x 64 in the interpreter."""
    if block_m is None and block_n is None:
        return _launch_bwd_tuned(q, k, v, out, lse, do, causal, sm_scale)
    if block_m is None or block_n is None:
        raise ValueError("give both block_m and block_n, or neither (autotuned)")
    return _launch_bwd(q, k, v, out, lse, do, causal, sm_scale, block_m, block_n)[:3]


class FlashAttentionFunction(torch.autograd.Function):
    """flash_attention with a backward: saves q, k, v, out and the log-sum-exp (O(N) per row),
    never P."""

    @staticmethod
    def forward(ctx, q, k, v, causal, sm_scale):
        out, lse = flash_attention_fwd(q, k, v, causal=causal, sm_scale=sm_scale)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.causal, ctx.sm_scale = causal, sm_scale
        return out

    @staticmethod
    def backward(ctx, do):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = flash_attention_bwd(q, k, v, out, lse, do, causal=ctx.causal, sm_scale=ctx.sm_scale)
        return dq, dk, dv, None, None
