"""FlashAttention-2 forward as one Triton kernel, fast path and trace mode from the same source.

One program per (q-block, batch*head). The kv loop is inside: K_j, V_j stream through the chip,
the running max m_i and sum l_i are rescaled when the max grows, `acc` stays unnormalized and is
divided by l_i once at the end; the log-sum-exp is stored for the backward. S and P never leave
the chip. The kernel works in base 2 (exp2, scores pre-multiplied by log2(e)); the trace converts
back to the textbook units (see kernels/trace.py).

With TRACE=False no trace code is compiled in: that is the kernel the benchmarks time.
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
def _attn_fwd_inner(
    acc, l_i, m_i, q,
    K_src, V_src, off_z, off_h, stride_kn, stride_kk, stride_vn, stride_vk,
    start_m, lo, hi, qk_scale, N_CTX,
    offs_m, offs_d,
    TraceState, TraceVisit, TraceS, TraceP, TraceAcc, Counters, slot, step, Tq, Tk, n_slots,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr, CAUSAL: tl.constexpr, TRACE: tl.constexpr, DOT_PRECISION: tl.constexpr,
    USE_TMA: tl.constexpr, WARP_SPEC: tl.constexpr,
):
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
        qk = tl.dot(q, k, input_precision=DOT_PRECISION)
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
            if TRACE:
                qk = qk * qk_scale
        # -- update l_i: a larger max shrinks everything summed so far by alpha --
        alpha = tl.math.exp2(m_i - m_ij)
        l_i = l_i * alpha + tl.sum(p, 1)
        # -- rescale acc, then add p @ V_j; acc stays unnormalized until the end (FA2) --
        acc_before = acc
        acc = acc * alpha[:, None]
        if USE_TMA:
            v = tl.reshape(V_src.load([off_z, off_h, start_n, 0]), [BLOCK_N, HEAD_DIM])
        elif MASKED:
            v = tl.load(V_src + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vk,
                        mask=offs_n[:, None] < N_CTX, other=0.0)
        else:
            v = tl.load(V_src + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vk)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PRECISION)
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
    return acc, l_i, m_i, step


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
    USE_TMA: tl.constexpr = False, WARP_SPEC: tl.constexpr = False,
):
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

    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < N_CTX
    # -- Q_i is loaded once and stays on chip for the whole kv loop --
    if USE_TMA:
        q = tl.reshape(Q.load([off_z, off_h, start_m * BLOCK_M, 0]), [BLOCK_M, HEAD_DIM])
    else:
        q = tl.load(Q + off_z.to(tl.int64) * stride_qz + off_h.to(tl.int64) * stride_qh
                    + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qk, mask=row_ok[:, None], other=0.0)
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
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
    acc, l_i, m_i, step = _attn_fwd_inner(
        acc, l_i, m_i, q, K_src, V_src, off_z, off_h, stride_kn, stride_kk, stride_vn, stride_vk,
        start_m, 0, lo_masked, qk_scale, N_CTX, offs_m, offs_d,
        TraceState, TraceVisit, TraceS, TraceP, TraceAcc, Counters, slot, step, Tq, Tk, n_slots,
        HEAD_DIM, BLOCK_M, BLOCK_N, False, CAUSAL, TRACE, DOT_PRECISION, USE_TMA, WARP_SPEC,
    )
    acc, l_i, m_i, step = _attn_fwd_inner(
        acc, l_i, m_i, q, K_src, V_src, off_z, off_h, stride_kn, stride_kk, stride_vn, stride_vk,
        start_m, lo_masked, hi, qk_scale, N_CTX, offs_m, offs_d,
        TraceState, TraceVisit, TraceS, TraceP, TraceAcc, Counters, slot, step, Tq, Tk, n_slots,
        HEAD_DIM, BLOCK_M, BLOCK_N, True, CAUSAL, TRACE, DOT_PRECISION, USE_TMA, WARP_SPEC,
    )
    # -- epilogue: normalize once, store O_i and the log-sum-exp (natural log) --
    out = acc / l_i[:, None]
    tl.store(Lse + off_hz.to(tl.int64) * N_CTX + offs_m, (m_i + tl.math.log2(l_i)) * LN2, mask=row_ok)
    if USE_TMA:  # rows past seq_len are clipped by the copy engine
        Out.store([off_z, off_h, start_m * BLOCK_M, 0], tl.reshape(out.to(Out.dtype), [1, 1, BLOCK_M, HEAD_DIM]))
    else:
        tl.store(Out + off_z.to(tl.int64) * stride_oz + off_h.to(tl.int64) * stride_oh
                 + offs_m[:, None] * stride_om + offs_d[None, :] * stride_ok,
                 out.to(Out.dtype.element_ty), mask=row_ok[:, None])
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


def _set_block_shapes(nargs):
    """Autotune pre-hook: each config's block sizes go into the descriptors it is launched with."""
    q = nargs["Q"]
    if hasattr(q, "block_shape"):
        d = nargs["HEAD_DIM"]
        for name, rows in (("Q", "BLOCK_M"), ("K", "BLOCK_N"), ("V", "BLOCK_N"), ("Out", "BLOCK_M")):
            nargs[name].block_shape = [1, 1, nargs[rows], d]


def _launch(q, k, v, causal, sm_scale, block_m, block_n, trace: TraceBuffers | None = None,
            num_warps=None, num_stages=None, out=None, use_tma=None, warp_spec=False):
    backend.require_triton()
    _check_inputs(q, k, v)
    batch, heads, seq_len, head_dim = q.shape
    check_blocks(block_m, block_n, head_dim)
    sm_scale = _scale(sm_scale, head_dim)
    if out is None:
        out = torch.empty_like(q)
    lse = torch.empty((batch, heads, seq_len), dtype=torch.float32, device=q.device)
    grid = (triton.cdiv(seq_len, block_m), batch * heads)
    trace_args = trace.args() if trace is not None else (None,) * 7 + (0,)
    extra = {}
    if not backend.INTERPRET:
        extra["num_warps"] = num_warps or (4 if block_m * block_n <= 64 * 64 else 8)
        extra["num_stages"] = num_stages or 2
    if use_tma is None:
        use_tma = tma_supported(q, k, v, out)
    tensors = _descriptors(q, k, v, out, block_m, block_n) if use_tma else (q, k, v, out)
    _attn_fwd[grid](
        *tensors[:3], sm_scale, lse, tensors[3],
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        heads, seq_len,
        *trace_args,
        HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n,
        CAUSAL=bool(causal), TRACE=trace is not None,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        USE_TMA=use_tma, WARP_SPEC=warp_spec,
        **extra,
    )
    return out, lse


# -- the fast path on a GPU: the same kernel, TRACE off, block sizes / warps / stages autotuned --
def _configs():
    if backend.INTERPRET:
        return [triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "WARP_SPEC": False})]
    # the shortlist that won on an H100 (scripts/attn_variants.py, 2026-11-22): 128-row q-blocks,
    # 8 warps for head_dim 128, 4 for 64; warp specialization pays in the causal case
    out = []
    for bm, bn, warps, stages, ws in [
        (128, 128, 8, 3, False), (128, 128, 8, 3, True), (128, 64, 8, 3, False), (128, 64, 8, 3, True),
        (128, 64, 4, 3, False), (128, 128, 4, 3, False), (128, 64, 4, 4, False),
        (64, 64, 4, 3, False), (64, 64, 4, 4, False),  # short causal sequences: more programs than SMs
    ]:
        out.append(triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "WARP_SPEC": ws}, num_warps=warps,
                                 num_stages=stages, pre_hook=_set_block_shapes))
    return out


def _keep(config_list, named_args, **kwargs):
    head_dim = named_args.get("HEAD_DIM", kwargs.get("HEAD_DIM"))
    kept = [c for c in config_list
            if max(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) * head_dim <= MAX_BLOCK_HEAD_ELEMENTS]
    if not named_args.get("USE_TMA", kwargs.get("USE_TMA", False)):  # pointer loads: no warp specialization
        kept = [c for c in kept if not c.kwargs["WARP_SPEC"]]
    return kept or config_list[:1]


_attn_fwd_tuned = triton.autotune(
    configs=_configs(), key=["N_CTX", "HEAD_DIM", "CAUSAL", "DOT_PRECISION"],
    prune_configs_by={"early_config_prune": _keep},
)(_attn_fwd)
TUNED_CONFIGS = _configs()  # every config the autotuner can pick; the GPU tests run each one


def _launch_tuned(q, k, v, causal, sm_scale):
    backend.require_triton()
    _check_inputs(q, k, v)
    batch, heads, seq_len, head_dim = q.shape
    sm_scale = _scale(sm_scale, head_dim)
    out = torch.empty_like(q)
    lse = torch.empty((batch, heads, seq_len), dtype=torch.float32, device=q.device)

    def grid(meta):
        return (triton.cdiv(seq_len, meta["BLOCK_M"]), batch * heads)

    # encoding four descriptors costs tens of microseconds a launch: below 4096 that is a large
    # share of the kernel's time (H100, 2026-11-22: N=1024 ran at half speed), so pointers there
    use_tma = seq_len >= TMA_MIN_SEQ_LEN and tma_supported(q, k, v, out)
    # descriptors get each config's block shape from its pre-hook; 64 is a placeholder
    tensors = _descriptors(q, k, v, out, 64, 64) if use_tma else (q, k, v, out)
    _attn_fwd_tuned[grid](
        *tensors[:3], sm_scale, lse, tensors[3],
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        heads, seq_len,
        *((None,) * 7 + (0,)),
        HEAD_DIM=head_dim, CAUSAL=bool(causal), TRACE=False,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32", USE_TMA=use_tma,
    )
    return out, lse


def flash_attention_fwd(q, k, v, causal=False, sm_scale=None, block_m=None, block_n=None):
    """(out, lse): out (batch, heads, seq_len, head_dim) in q's dtype, lse float32 natural log.
    Without block sizes: the autotuned fast path on a GPU, 64 x 64 blocks in the interpreter."""
    if block_m is None and block_n is None:
        return _launch_tuned(q, k, v, causal, sm_scale)
    if block_m is None or block_n is None:
        raise ValueError("give both block_m and block_n, or neither (autotuned)")
    return _launch(q, k, v, causal, sm_scale, block_m, block_n)


def flash_attention(q, k, v, causal=False, sm_scale=None) -> torch.Tensor:
    """softmax(q k^T * sm_scale) v, FlashAttention-2 forward. sm_scale defaults to 1/sqrt(head_dim)."""
    return flash_attention_fwd(q, k, v, causal=causal, sm_scale=sm_scale)[0]
