"""The FlashAttention-2 forward as one Triton kernel: the fast path and the trace from one source.

One program per (q-block, batch * head). Q_i stays on chip; the kv loop streams K_j, V_j through;
the running max m_i and sum l_i are rescaled when the max grows; `acc` stays unnormalized and is
divided by l_i once at the end; the log-sum-exp is stored for the backward. S and P never leave
the chip. The kernel works in base 2 (exp2, scores pre-multiplied by log2 e); the trace is written
back in natural units.

TRACE (constexpr) off compiles no trace code: that is the kernel the benchmarks time. On, every
tile writes the state of its rows, its s and p, and acc before and after (one `trace_tile` call),
and the program counts what it loads and stores.

Not for: validating arguments or picking a config (attention.py, tuning.py), trace objects (trace.py).
"""
import math

import torch
import triton
import triton.language as tl

from kernels import backend, flash_merge, traffic

LOG2E = tl.constexpr(1.4426950408889634)  # constexpr: compiled kernels may not read plain globals
LN2 = tl.constexpr(0.6931471805599453)
COUNTER_KEYS = traffic.FA2_COUNTERS  # Counters, in this order


@triton.jit
def softmax_tile(qk, m_i, l_i, qk_scale, offs_m, offs_n, N_CTX, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
                  EMPTY_ROWS: tl.constexpr = False):
    """One tile's online-softmax update: the new row max m_ij, p = exp2(s - m_ij), the factor alpha
    that shrinks everything summed under the old max, and the running sum l_i. qk comes back
    scaled (log2 units; only the trace reads it). EMPTY_ROWS: a row may have seen no key yet
    (split-KV starting inside the causal band): its m stays -inf, p and l 0."""
    if MASKED:  # ragged last kv-block, and the causal diagonal band
        keep = offs_n[None, :] < N_CTX
        if CAUSAL:
            keep = keep & (offs_m[:, None] >= offs_n[None, :])
        qk = tl.where(keep, qk * qk_scale, float("-inf"))
        m_ij = tl.maximum(m_i, tl.max(qk, 1))
        if EMPTY_ROWS:
            m_use = tl.where(m_ij == float("-inf"), 0.0, m_ij)
            p = tl.math.exp2(qk - m_use[:, None])
            alpha = tl.math.exp2(m_i - m_use)
            return p, m_ij, alpha, l_i * alpha + tl.sum(p, 1), qk
        p = tl.math.exp2(qk - m_ij[:, None])
    else:
        # -- update m_i: the scale folds into one FMA with the subtraction below --
        m_ij = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        p = tl.math.exp2(qk * qk_scale - m_ij[:, None])
        qk = qk * qk_scale
    # -- update l_i: a larger max shrinks everything summed so far by alpha --
    alpha = tl.math.exp2(m_i - m_ij)
    l_i = l_i * alpha + tl.sum(p, 1)
    return p, m_ij, alpha, l_i, qk


@triton.jit
def _load_kT(K_src, off_z, off_h, start_n, offs_n, offs_d, stride_kn, stride_kk, N_CTX,
             HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr, USE_TMA: tl.constexpr):
    """K_j^T, (HEAD_DIM, BLOCK_N); keys past seq_len arrive as zeros."""
    if USE_TMA:  # the bulk copy engine
        kT = tl.reshape(K_src.load([off_z, off_h, start_n, 0]), [BLOCK_N, HEAD_DIM]).T
    elif MASKED:
        kT = tl.load(K_src + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kk,
                     mask=offs_n[None, :] < N_CTX, other=0.0)
    else:
        kT = tl.load(K_src + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kk)
    return kT


@triton.jit
def _load_v(V_src, off_z, off_h, start_n, offs_n, offs_d, stride_vn, stride_vk, N_CTX,
            HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr, USE_TMA: tl.constexpr):
    """V_j, (BLOCK_N, HEAD_DIM); rows past seq_len arrive as zeros."""
    if USE_TMA:
        v = tl.reshape(V_src.load([off_z, off_h, start_n, 0]), [BLOCK_N, HEAD_DIM])
    elif MASKED:
        v = tl.load(V_src + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vk,
                    mask=offs_n[:, None] < N_CTX, other=0.0)
    else:
        v = tl.load(V_src + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vk)
    return v


@triton.jit
def trace_tile(Trace, TraceIdx, start_m, j, step, slot, n_slots, m_i, l_i, alpha, qk, p,
                acc_before, acc, offs_m, offs_n, offs_d, N_CTX,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr):
    """Record tile (q-block start_m, kv-block j): the step it was computed at, the state of its
    rows after it (m_i in log2 units, converted back), and, for q-blocks with a tile slot, s, p
    and acc before / after. Layout: TraceBuffers. The FA1-order kernel records the same way."""
    Tq = tl.cdiv(N_CTX, BLOCK_M).to(tl.int64)
    Tk = tl.cdiv(N_CTX, BLOCK_N).to(tl.int64)
    row_ok = offs_m < N_CTX
    tl.store(TraceIdx + Tq + start_m * Tk + j, step)  # visit order
    plane = Tq * Tk * BLOCK_M
    rows = tl.arange(0, BLOCK_M)
    st = (start_m * Tk + j) * BLOCK_M + rows
    tl.store(Trace + st, m_i * LN2, mask=row_ok)  # back to natural units
    tl.store(Trace + plane + st, l_i, mask=row_ok)
    tl.store(Trace + 2 * plane + st, alpha, mask=row_ok)
    if slot >= 0:
        n_tiles = n_slots.to(tl.int64) * Tk
        tile = slot.to(tl.int64) * Tk + j
        ok = row_ok[:, None] & (offs_n[None, :] < N_CTX)
        s_base = Trace + 3 * plane
        sp = tile * BLOCK_M * BLOCK_N + rows[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
        tl.store(s_base + sp, qk * LN2, mask=ok)
        tl.store(s_base + n_tiles * BLOCK_M * BLOCK_N + sp, p, mask=ok)
        acc_base = s_base + 2 * n_tiles * BLOCK_M * BLOCK_N
        ap = tile * BLOCK_M * HEAD_DIM + rows[:, None] * HEAD_DIM + offs_d[None, :]
        tl.store(acc_base + ap, acc_before, mask=row_ok[:, None])
        tl.store(acc_base + n_tiles * BLOCK_M * HEAD_DIM + ap, acc, mask=row_ok[:, None])
    return step + 1


@triton.jit
def _attn_fwd_inner(
    acc, l_i, m_i, q, acc1, l1, m1, q1,
    K_src, V_src, off_z, off_h, stride_kn, stride_kk,
    start_m, lo, hi, qk_scale, N_CTX, offs_m, offs_d,
    Trace, TraceIdx, Counters, slot, step, n_slots,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr, CAUSAL: tl.constexpr, TRACE: tl.constexpr, DOT_PRECISION: tl.constexpr,
    USE_TMA: tl.constexpr, WARP_SPEC: tl.constexpr, SPLIT: tl.constexpr, LATE_V: tl.constexpr,
    KV_SPLITS: tl.constexpr,
):
    # SPLIT == 2: the program's q-block is two halves of rows (q, acc, l_i, m_i) and (q1, acc1, l1,
    # m1), each with its own softmax state, sharing every K_j and V_j tile. SPLIT == 1: q1, acc1,
    # l1 and m1 are unused stand-ins.
    offs_nb = tl.arange(0, BLOCK_N)
    for start_n in tl.range(lo, hi, BLOCK_N, warp_specialize=WARP_SPEC):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        offs_n = start_n + offs_nb
        # -- compute qk: K_j streams in, the (BLOCK_M, BLOCK_N) scores never leave the chip --
        kT = _load_kT(K_src, off_z, off_h, start_n, offs_n, offs_d, stride_kn, stride_kk, N_CTX,
                      HEAD_DIM, BLOCK_N, MASKED, USE_TMA)
        # V_j with K_j, before the softmax between their products, keeps the loads ahead of the
        # tensor cores; the head_dim-64 split config ran faster with the late load (LATE_V)
        if not LATE_V:
            v = _load_v(V_src, off_z, off_h, start_n, offs_n, offs_d, stride_kn, stride_kk, N_CTX,
                        HEAD_DIM, BLOCK_N, MASKED, USE_TMA)
        qk = tl.dot(q, kT, input_precision=DOT_PRECISION)
        if SPLIT == 2:  # both halves' scores first, then each half's softmax and P V
            qk1 = tl.dot(q1, kT, input_precision=DOT_PRECISION)
        p, m_ij, alpha, l_i, qk = softmax_tile(qk, m_i, l_i, qk_scale, offs_m, offs_n, N_CTX, MASKED, CAUSAL,
                                                KV_SPLITS > 1)
        # -- rescale acc, then add p V_j; acc stays unnormalized until the end (FA2) --
        acc_before = acc
        acc = acc * alpha[:, None]
        if LATE_V:
            v = _load_v(V_src, off_z, off_h, start_n, offs_n, offs_d, stride_kn, stride_kk, N_CTX,
                        HEAD_DIM, BLOCK_N, MASKED, USE_TMA)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PRECISION)
        if SPLIT == 2:
            p1, m1_new, alpha1, l1, _ = softmax_tile(qk1, m1, l1, qk_scale, offs_m + BLOCK_M // 2, offs_n, N_CTX,
                                                      MASKED, CAUSAL)
            acc1 = tl.dot(p1.to(v.dtype), v, acc1 * alpha1[:, None], input_precision=DOT_PRECISION)
            m1 = m1_new
        m_i = m_ij
        if TRACE:
            kv_rows = tl.sum((offs_n < N_CTX).to(tl.int64))
            tl.atomic_add(Counters + 1, kv_rows * HEAD_DIM)  # K_j loaded
            tl.atomic_add(Counters + 2, kv_rows * HEAD_DIM)  # V_j loaded
            step = trace_tile(Trace, TraceIdx, start_m, start_n // BLOCK_N, step, slot, n_slots,
                               m_i, l_i, alpha, qk, p, acc_before, acc, offs_m, offs_n, offs_d, N_CTX,
                               BLOCK_M, BLOCK_N, HEAD_DIM)
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
    stride_qz, stride_qh, stride_qm, stride_qk,  # Q, K and V share these (the host makes sure)
    stride_oz, stride_oh, stride_om, stride_ok,
    H, N_CTX,
    Trace, TraceIdx, Counters, n_slots,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, TRACE: tl.constexpr, DOT_PRECISION: tl.constexpr,
    USE_TMA: tl.constexpr = False, WARP_SPEC: tl.constexpr = False, SPLIT: tl.constexpr = 1,
    MASKED_TILES: tl.constexpr = True, LATE_V: tl.constexpr = False, KV_SPLITS: tl.constexpr = 1,
):
    # MASKED_TILES: some kv-block needs a mask (causal, or seq_len not a multiple of BLOCK_N). The
    # host sets it; False leaves the masked loop out of the compiled kernel: even empty, its
    # pipelined prologue and epilogue cost registers.
    # KV_SPLITS > 1 (split-KV, as flash-decoding does): program (i, bh, split) folds in only its
    # split's contiguous share of the kv-blocks and writes its partial (m, l, O = acc / l) into
    # Out viewed as (batch, heads * KV_SPLITS, N, d) and Lse as (2, batch * heads * KV_SPLITS, N);
    # kernels/flash_merge.py merges them.
    tl.static_assert(SPLIT == 1 or SPLIT == 2, "SPLIT is 1 or 2")
    tl.static_assert(KV_SPLITS == 1 or (SPLIT == 1 and not USE_TMA), "split-KV runs whole q-blocks, pointer loads")
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
        K_src = K + off_z.to(tl.int64) * stride_qz + off_h.to(tl.int64) * stride_qh
        V_src = V + off_z.to(tl.int64) * stride_qz + off_h.to(tl.int64) * stride_qh

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
    lo = 0
    if KV_SPLITS > 1:  # this program's share of the kv-blocks: [lo, split_hi)
        split = tl.program_id(2)
        n_kv = tl.cdiv(N_CTX, BLOCK_N)
        lo = (split * n_kv // KV_SPLITS) * BLOCK_N
        split_hi = tl.minimum(((split + 1) * n_kv // KV_SPLITS) * BLOCK_N, N_CTX)
        hi = tl.minimum(hi, split_hi)
        lo_masked = tl.maximum(tl.minimum(lo_masked, split_hi), lo)

    slot = -1
    step = 0
    if TRACE:
        slot = tl.load(TraceIdx + start_m)
        tl.atomic_add(Counters + 0, tl.sum(row_ok.to(tl.int64)) * HEAD_DIM)  # Q_i loaded
    acc, l_i, m_i, acc1, l1, m1, step = _attn_fwd_inner(
        acc, l_i, m_i, q, acc1, l1, m1, q1, K_src, V_src, off_z, off_h, stride_qm, stride_qk,
        start_m, lo, lo_masked, qk_scale, N_CTX, offs_m, offs_d, Trace, TraceIdx, Counters, slot, step, n_slots,
        HEAD_DIM, BLOCK_M, BLOCK_N, False, CAUSAL, TRACE, DOT_PRECISION, USE_TMA, WARP_SPEC, SPLIT, LATE_V,
        KV_SPLITS,
    )
    if MASKED_TILES:
        acc, l_i, m_i, acc1, l1, m1, step = _attn_fwd_inner(
            acc, l_i, m_i, q, acc1, l1, m1, q1, K_src, V_src, off_z, off_h, stride_qm, stride_qk,
            start_m, lo_masked, hi, qk_scale, N_CTX, offs_m, offs_d, Trace, TraceIdx, Counters, slot, step, n_slots,
            HEAD_DIM, BLOCK_M, BLOCK_N, True, CAUSAL, TRACE, DOT_PRECISION, USE_TMA, WARP_SPEC, SPLIT, LATE_V,
            KV_SPLITS,
        )
    if KV_SPLITS > 1:  # the partial (m, l, O): a split with no kv-block of this q-block has l = 0, O = 0
        part = off_hz.to(tl.int64) * KV_SPLITS + split
        o = tl.where(l_i[:, None] > 0, acc / tl.where(l_i > 0, l_i, 1.0)[:, None], 0.0)
        tl.store(Out + off_z.to(tl.int64) * stride_oz + (off_h.to(tl.int64) * KV_SPLITS + split) * stride_oh
                 + offs_m[:, None] * stride_om + offs_d[None, :] * stride_ok, o, mask=row_ok[:, None])
        ml_plane = tl.num_programs(1).to(tl.int64) * KV_SPLITS * N_CTX
        tl.store(Lse + part * N_CTX + offs_m, m_i * LN2, mask=row_ok)
        tl.store(Lse + ml_plane + part * N_CTX + offs_m, l_i, mask=row_ok)
    else:
        _store_out(acc, l_i, m_i, Out, Lse, off_z, off_h, off_hz, row0, offs_m, offs_d,
                   stride_oz, stride_oh, stride_om, stride_ok, N_CTX, ROWS, HEAD_DIM, USE_TMA)
    if SPLIT == 2:
        _store_out(acc1, l1, m1, Out, Lse, off_z, off_h, off_hz, row0 + ROWS, offs_m + ROWS, offs_d,
                   stride_oz, stride_oh, stride_om, stride_ok, N_CTX, ROWS, HEAD_DIM, USE_TMA)
    if TRACE:
        tl.atomic_add(Counters + 3, tl.sum(row_ok.to(tl.int64)) * HEAD_DIM)  # O_i (a partial O_i) stored
        tl.atomic_add(Counters + 4, tl.sum(row_ok.to(tl.int64)) * (2 if KV_SPLITS > 1 else 1))  # lse_i (m_i, l_i)


# ------------------------------------------------------------------------------ host side
class TraceBuffers:
    """Device buffers the traced kernel writes into; NaN / -1 = never written. One float32 buffer
    holds, in order, the state planes m, l, alpha (3, Tq, Tk, block_m), then for the q-blocks in
    tile_q_blocks (slot order) s, p (n, Tk, block_m, block_n) and acc before, after
    (n, Tk, block_m, head_dim). One int32 buffer: the slot of each q-block (Tq), then the
    visit order (Tq, Tk)."""

    def __init__(self, seq_len, head_dim, block_m, block_n, tile_q_blocks, device, counter_keys=COUNTER_KEYS):
        tq, tk = math.ceil(seq_len / block_m), math.ceil(seq_len / block_n)
        n = len(tile_q_blocks)
        sizes = [3 * tq * tk * block_m] + [n * tk * block_m * block_n] * 2 + [n * tk * block_m * head_dim] * 2
        self.trace = torch.full((sum(sizes),), float("nan"), dtype=torch.float32, device=device)
        state, s, p, acc_before, acc_after = torch.split(self.trace, sizes)
        self.state = state.view(3, tq, tk, block_m)
        self.s, self.p = (t.view(n, tk, block_m, block_n) for t in (s, p))
        self.acc_before, self.acc_after = (t.view(n, tk, block_m, head_dim) for t in (acc_before, acc_after))
        self.idx = torch.full((tq + tq * tk,), -1, dtype=torch.int32, device=device)
        for slot, i in enumerate(tile_q_blocks):
            self.idx[i] = slot
        self.visit = self.idx[tq:].view(tq, tk)
        self.counters = torch.zeros(len(counter_keys), dtype=torch.int64, device=device)
        self.counter_keys = counter_keys
        self.n_slots = n
        self.split_o = self.split_ml = None  # a split-KV launch's partials, when it keeps them

    def args(self):
        return self.trace, self.idx, self.counters, self.n_slots


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


def launch(q, k, v, causal: bool, sm_scale: float, block_m: int, block_n: int, *, trace: TraceBuffers | None = None,
           num_warps=None, num_stages=None, out=None, use_tma=None, warp_spec=False, maxnreg=None, split=1,
           late_v=False, kv_splits=1):
    """(out, lse) of one launch with this config. Arguments already checked (attention.py does):
    q, k, v (batch, heads, seq_len, head_dim) with one set of strides, sm_scale a float.
    kv_splits > 1: split-KV, each q-block's kv range in kv_splits programs, then flash_merge."""
    batch, heads, seq_len, head_dim = q.shape
    if out is None:
        out = torch.empty_like(q)
    lse = torch.empty((batch, heads, seq_len), dtype=torch.float32, device=q.device)
    grid = (triton.cdiv(seq_len, block_m), batch * heads) + ((kv_splits,) if kv_splits > 1 else ())
    extra = {}
    if not backend.INTERPRET:
        extra["num_warps"] = num_warps or (4 if block_m * block_n <= 64 * 64 else 8)
        extra["num_stages"] = num_stages or 2
        if maxnreg:  # a register cap per thread: more programs fit on one SM
            extra["maxnreg"] = maxnreg
    if kv_splits > 1:  # the kernel writes partials; the merge writes out and lse
        use_tma = False
        part_o = torch.empty((batch, heads * kv_splits, seq_len, head_dim), dtype=torch.float32, device=q.device)
        part_ml = torch.empty((2, batch * heads * kv_splits, seq_len), dtype=torch.float32, device=q.device)
        dest = (part_o, part_ml)
    else:
        dest = (out, lse)
    if use_tma is None:
        use_tma = tma_supported(q, k, v, out)
    tensors = (_descriptors((q, k, v, out), (block_m // split, block_n, block_n, block_m // split))
               if use_tma else (q, k, v, dest[0]))
    _attn_fwd[grid](
        *tensors[:3], sm_scale, dest[1], tensors[3], *q.stride(), *dest[0].stride(), heads, seq_len,
        *(trace.args() if trace is not None else (None, None, None, 0)),
        HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=bool(causal), TRACE=trace is not None,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32", USE_TMA=use_tma, WARP_SPEC=warp_spec,
        SPLIT=split, MASKED_TILES=bool(causal) or seq_len % block_n != 0 or kv_splits > 1, LATE_V=late_v,
        KV_SPLITS=kv_splits, **extra,
    )
    if kv_splits > 1:
        flash_merge.merge(part_o, part_ml, out, lse, kv_splits, trace.counters if trace is not None else None)
        if trace is not None:
            trace.split_o, trace.split_ml = part_o, part_ml
    return out, lse
