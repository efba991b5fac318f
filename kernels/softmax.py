"""Row-wise softmax as Triton kernels: naive, safe and online, each streaming its row in chunks
of BLOCK columns, and single-pass, which holds a whole row on chip.

One program per row. Every kernel can count its own loads and stores (COUNT constexpr, masked
lanes excluded) so the app can show them next to kernels/traffic.py; the online kernel can also
write its running (m, d) after each chunk (TRACE constexpr). Both are compiled out when off.

Not for: float64 references (kernels/reference.py) or traffic formulas (kernels/traffic.py).
"""
import math

from kernels import backend  # before triton: picks GPU or interpreter
from kernels import traffic

backend.require_triton()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

VARIANTS = traffic.SOFTMAX_VARIANTS  # ("naive", "safe", "online", "single_pass")
MIN_BLOCK, MAX_BLOCK = 16, 65536
# single_pass keeps a row in registers: 32768 fp32 is 128 KiB per program, half an H100 SM's file
SINGLE_PASS_MAX_COLS = 32768
# e^x = 2^(x * log2 e); exp2 is the hardware instruction. A jit global must be a tl.constexpr when
# compiled (the interpreter does not check this)
LOG2E = tl.constexpr(1.4426950408889634)


# ---------------------------------------------------------------- kernels
@triton.jit
def softmax_naive_kernel(
    Y_ptr, X_ptr, Counts_ptr, stride_ym, stride_xm, n_cols,
    BLOCK: tl.constexpr, COUNT: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    x_row_ptr = X_ptr + row * stride_xm
    y_row_ptr = Y_ptr + row * stride_ym
    offs_n = tl.arange(0, BLOCK)
    if COUNT:
        n_loads = 0
        n_stores = 0
    # -- pass 1: d = sum e^x, no max subtracted: overflows to inf once x > ~88 --
    l_i = 0.0
    for start_n in range(0, n_cols, BLOCK):
        mask = start_n + offs_n < n_cols
        x = tl.load(x_row_ptr + start_n + offs_n, mask=mask, other=-float("inf")).to(tl.float32)  # read cols elements
        l_i += tl.sum(tl.exp2(x * LOG2E), axis=0)  # masked lanes: e^-inf = 0
        if COUNT:
            n_loads += tl.sum(mask.to(tl.int32), axis=0)
    # -- pass 2: y = e^x / d --
    for start_n in range(0, n_cols, BLOCK):
        mask = start_n + offs_n < n_cols
        x = tl.load(x_row_ptr + start_n + offs_n, mask=mask, other=-float("inf")).to(tl.float32)  # read cols elements
        p = tl.exp2(x * LOG2E) / l_i
        tl.store(y_row_ptr + start_n + offs_n, p.to(Y_ptr.dtype.element_ty), mask=mask)  # write cols elements
        if COUNT:
            n_loads += tl.sum(mask.to(tl.int32), axis=0)
            n_stores += tl.sum(mask.to(tl.int32), axis=0)
    if COUNT:
        tl.atomic_add(Counts_ptr, n_loads.to(tl.int64))
        tl.atomic_add(Counts_ptr + 1, n_stores.to(tl.int64))


@triton.jit
def softmax_safe_kernel(
    Y_ptr, X_ptr, Counts_ptr, stride_ym, stride_xm, n_cols,
    BLOCK: tl.constexpr, COUNT: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    x_row_ptr = X_ptr + row * stride_xm
    y_row_ptr = Y_ptr + row * stride_ym
    offs_n = tl.arange(0, BLOCK)
    if COUNT:
        n_loads = 0
        n_stores = 0
    # -- pass 1: m = max x --
    m_i = -float("inf")
    for start_n in range(0, n_cols, BLOCK):
        mask = start_n + offs_n < n_cols
        x = tl.load(x_row_ptr + start_n + offs_n, mask=mask, other=-float("inf")).to(tl.float32)  # read cols elements
        m_i = tl.maximum(m_i, tl.max(x, axis=0))
        if COUNT:
            n_loads += tl.sum(mask.to(tl.int32), axis=0)
    # -- pass 2: d = sum e^(x - m), every term <= 1 so nothing overflows --
    l_i = 0.0
    for start_n in range(0, n_cols, BLOCK):
        mask = start_n + offs_n < n_cols
        x = tl.load(x_row_ptr + start_n + offs_n, mask=mask, other=-float("inf")).to(tl.float32)  # read cols elements
        l_i += tl.sum(tl.exp2((x - m_i) * LOG2E), axis=0)
        if COUNT:
            n_loads += tl.sum(mask.to(tl.int32), axis=0)
    # -- pass 3: y = e^(x - m) / d --
    for start_n in range(0, n_cols, BLOCK):
        mask = start_n + offs_n < n_cols
        x = tl.load(x_row_ptr + start_n + offs_n, mask=mask, other=-float("inf")).to(tl.float32)  # read cols elements
        p = tl.exp2((x - m_i) * LOG2E) / l_i
        tl.store(y_row_ptr + start_n + offs_n, p.to(Y_ptr.dtype.element_ty), mask=mask)  # write cols elements
        if COUNT:
            n_loads += tl.sum(mask.to(tl.int32), axis=0)
            n_stores += tl.sum(mask.to(tl.int32), axis=0)
    if COUNT:
        tl.atomic_add(Counts_ptr, n_loads.to(tl.int64))
        tl.atomic_add(Counts_ptr + 1, n_stores.to(tl.int64))


@triton.jit
def softmax_online_kernel(
    Y_ptr, X_ptr, Counts_ptr, M_trace_ptr, L_trace_ptr, stride_ym, stride_xm, stride_tm, n_cols,
    BLOCK: tl.constexpr, COUNT: tl.constexpr, TRACE: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    x_row_ptr = X_ptr + row * stride_xm
    y_row_ptr = Y_ptr + row * stride_ym
    offs_n = tl.arange(0, BLOCK)
    if COUNT:
        n_loads = 0
        n_stores = 0
    # -- pass 1: running max m_i and running sum l_i (d in the reference) in one sweep --
    m_i = -float("inf")
    l_i = 0.0
    for start_n in range(0, n_cols, BLOCK):
        mask = start_n + offs_n < n_cols
        x = tl.load(x_row_ptr + start_n + offs_n, mask=mask, other=-float("inf")).to(tl.float32)  # read cols elements
        m_new = tl.maximum(m_i, tl.max(x, axis=0))
        # -- rescale l_i: its terms were e^(x - m_old); 0 on the first chunk (m_old = -inf) --
        alpha = tl.exp2((m_i - m_new) * LOG2E)
        l_i = l_i * alpha + tl.sum(tl.exp2((x - m_new) * LOG2E), axis=0)
        m_i = m_new
        if TRACE:
            tl.store(M_trace_ptr + row * stride_tm + start_n // BLOCK, m_i)
            tl.store(L_trace_ptr + row * stride_tm + start_n // BLOCK, l_i)
        if COUNT:
            n_loads += tl.sum(mask.to(tl.int32), axis=0)
    # -- pass 2: y = e^(x - m) / d with the final m, d --
    for start_n in range(0, n_cols, BLOCK):
        mask = start_n + offs_n < n_cols
        x = tl.load(x_row_ptr + start_n + offs_n, mask=mask, other=-float("inf")).to(tl.float32)  # read cols elements
        p = tl.exp2((x - m_i) * LOG2E) / l_i
        tl.store(y_row_ptr + start_n + offs_n, p.to(Y_ptr.dtype.element_ty), mask=mask)  # write cols elements
        if COUNT:
            n_loads += tl.sum(mask.to(tl.int32), axis=0)
            n_stores += tl.sum(mask.to(tl.int32), axis=0)
    if COUNT:
        tl.atomic_add(Counts_ptr, n_loads.to(tl.int64))
        tl.atomic_add(Counts_ptr + 1, n_stores.to(tl.int64))


@triton.jit
def softmax_single_pass_kernel(
    Y_ptr, X_ptr, Counts_ptr, stride_ym, stride_xm, n_cols,
    BLOCK: tl.constexpr, COUNT: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    offs_n = tl.arange(0, BLOCK)
    mask = offs_n < n_cols
    # -- the whole row on chip: max, sum and write without going back to memory --
    x = tl.load(X_ptr + row * stride_xm + offs_n, mask=mask, other=-float("inf")).to(tl.float32)  # read cols elements
    m_i = tl.max(x, axis=0)
    p = tl.exp2((x - m_i) * LOG2E)
    l_i = tl.sum(p, axis=0)
    tl.store(Y_ptr + row * stride_ym + offs_n, (p / l_i).to(Y_ptr.dtype.element_ty), mask=mask)  # write cols elements
    if COUNT:
        n = tl.sum(mask.to(tl.int32), axis=0)
        tl.atomic_add(Counts_ptr, n.to(tl.int64))
        tl.atomic_add(Counts_ptr + 1, n.to(tl.int64))


# ---------------------------------------------------------------- host side
def _next_pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _supported_dtypes() -> tuple:
    if backend.INTERPRET:  # the interpreter has no bfloat16 arithmetic
        return (torch.float32, torch.float16)
    return (torch.float32, torch.float16, torch.bfloat16)


def default_block(cols: int, dtype=torch.float32, variant: str = "online") -> int:
    """Chunk width: the whole row for single_pass; for the streamed variants the whole row when it
    is short, else 16 KiB of input per chunk on a GPU (4096 fp32, 8192 fp16) and 1024 elements in
    the interpreter (small, so a trace has several chunks and tests stay fast)."""
    if variant == "single_pass":
        return max(MIN_BLOCK, _next_pow2(cols))
    itemsize = torch.empty((), dtype=dtype).element_size()
    cap = 1024 if backend.INTERPRET else 16384 // itemsize
    return max(MIN_BLOCK, min(_next_pow2(cols), cap))


def _num_warps(block: int) -> int:
    # after tutorial 02: more warps for wider blocks keeps ~8-16 elements per thread
    return 16 if block >= 8192 else 8 if block >= 2048 else 4


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def _check_block(block) -> int:
    if not isinstance(block, int) or block < MIN_BLOCK or block > MAX_BLOCK or block & (block - 1):
        raise ValueError(f"block must be a power of two between {MIN_BLOCK} and {MAX_BLOCK}, got {block}")
    return block


def _check_x(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D (rows, cols), got shape {tuple(x.shape)}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must have at least 1 row and 1 column, got shape {tuple(x.shape)}")
    allowed = _supported_dtypes()
    if x.dtype not in allowed:
        names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
        note = " (no bfloat16 in the interpreter: it has no bfloat16 arithmetic)" if backend.INTERPRET else ""
        raise ValueError(f"x.dtype must be one of {names}{note}, got {x.dtype}")
    if x.device.type != backend.DEVICE:
        x = x.to(backend.DEVICE)
    if x.stride(1) != 1:
        x = x.contiguous()  # rows may be strided (stride_xm), columns must be dense
    return x


def _resolve_block(variant: str, block, cols: int, dtype) -> int:
    if variant == "single_pass":
        if cols > SINGLE_PASS_MAX_COLS:
            raise ValueError(
                f"single_pass keeps a whole row on chip: cols must be at most {SINGLE_PASS_MAX_COLS}, "
                f"got {cols}; use 'online' for longer rows"
            )
        if block is None:
            return default_block(cols, dtype, variant)
        _check_block(block)
        if block < cols:
            raise ValueError(f"single_pass holds the whole row in one block: block must be >= cols ({cols}), got {block}")
        return block
    return default_block(cols, dtype, variant) if block is None else _check_block(block)


def _launch(variant, x, y, block, counts=None, m_trace=None, l_trace=None) -> None:
    rows, cols = x.shape
    count, trace = counts is not None, m_trace is not None
    counts = counts if count else y  # placeholder pointer, never touched when COUNT is off
    grid = (rows,)
    meta = dict(BLOCK=block, COUNT=count, num_warps=_num_warps(block))
    if variant == "online":
        m_trace = m_trace if trace else y
        l_trace = l_trace if trace else y
        stride_tm = m_trace.stride(0) if trace else 0
        softmax_online_kernel[grid](
            y, x, counts, m_trace, l_trace, y.stride(0), x.stride(0), stride_tm, cols, TRACE=trace, **meta
        )
        return
    kernel = {
        "naive": softmax_naive_kernel,
        "safe": softmax_safe_kernel,
        "single_pass": softmax_single_pass_kernel,
    }[variant]
    kernel[grid](y, x, counts, y.stride(0), x.stride(0), cols, **meta)


def softmax(x: torch.Tensor, variant: str = "online", block: int | None = None, return_counts: bool = False,
            out: torch.Tensor | None = None):
    """Row-wise softmax of a 2-D tensor with one of VARIANTS. Returns y, or (y, {"loads", "stores"})
    counted by the kernel itself when return_counts. `out` (same shape and dtype) is written in place."""
    _check_variant(variant)
    x = _check_x(x)
    rows, cols = x.shape
    block = _resolve_block(variant, block, cols, x.dtype)
    if out is None:
        y = torch.empty((rows, cols), dtype=x.dtype, device=x.device)
    else:
        if out.shape != x.shape or out.dtype != x.dtype or out.device != x.device or out.stride(1) != 1:
            raise ValueError(
                f"out must match x ({tuple(x.shape)}, {x.dtype}, {x.device}) with dense columns, "
                f"got {tuple(out.shape)}, {out.dtype}, {out.device}, strides {out.stride()}"
            )
        y = out
    counts = torch.zeros(2, dtype=torch.int64, device=x.device) if return_counts else None  # (loads, stores)
    _launch(variant, x, y, block, counts)
    if not return_counts:
        return y
    loads, stores = counts.tolist()
    return y, {"loads": loads, "stores": stores}


def online_trajectory(x_row, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Running max m and running sum d after each chunk of the online kernel's first pass over one
    row, as the kernel wrote them (TRACE on). Two float32 arrays of length ceil(cols / block)."""
    if isinstance(x_row, np.ndarray):
        x_row = torch.from_numpy(np.ascontiguousarray(x_row, dtype=np.float32))
    if not isinstance(x_row, torch.Tensor) or x_row.dim() != 1:
        raise ValueError(f"x_row must be 1-D (cols,), got shape {tuple(getattr(x_row, 'shape', ()))}")
    x = _check_x(x_row[None, :])  # (1, cols)
    _check_block(block)
    n_chunks = math.ceil(x.shape[1] / block)
    m_trace = torch.full((1, n_chunks), float("nan"), dtype=torch.float32, device=x.device)  # (1, chunks)
    l_trace = torch.full((1, n_chunks), float("nan"), dtype=torch.float32, device=x.device)
    y = torch.empty_like(x)
    _launch("online", x, y, block, m_trace=m_trace, l_trace=l_trace)
    return m_trace[0].cpu().numpy(), l_trace[0].cpu().numpy()
