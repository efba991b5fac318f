"""Row-wise softmax as Triton kernels: naive, safe and online, each streaming its row in chunks
of BLOCK columns, and single-pass, which holds a whole row on chip.

Each program handles ROWS consecutive rows as a (ROWS, BLOCK) tile (default_rows_per_program:
1 for long rows on a GPU, several when rows are short or in the interpreter, where every program
costs milliseconds of Python). Every kernel can count its own loads and stores (COUNT constexpr, masked
lanes excluded) so the app can show them next to kernels/traffic.py; the online kernel can also
write its running (m, d) after each chunk (TRACE constexpr). Both are compiled out when off.

Not for: float64 references (kernels/reference.py) or traffic formulas (kernels/traffic.py).
"""
import math

from kernels import backend, limits

backend.require_triton()

import numpy as np
import torch
import triton
import triton.language as tl

VARIANTS = ("naive", "safe", "online", "single_pass")  # split_row: kernels/softmax_split.py
MIN_BLOCK, MAX_BLOCK = 16, 65536
# single_pass keeps a row in registers: 32768 fp32 is 128 KiB per program, half an H100 SM's file
SINGLE_PASS_MAX_COLS = 32768
# e^x = 2^(x * log2 e); exp2 is the hardware instruction. A jit global must be a tl.constexpr when
# compiled (the interpreter does not check this)
LOG2E = tl.constexpr(1.4426950408889634)
MAX_ROWS_PER_PROGRAM = 256
# rows per program: on a GPU only for short rows, up to a tile of 16K elements (a (ROWS, BLOCK)
# tile of 1 x BLOCK is the measured long-row path and stays one row per program); in the
# interpreter a tile of ~64K elements, where NumPy time per program outweighs Python overhead
GPU_SHORT_ROW_BLOCK = 1024
GPU_TILE_ELEMS = 16384
INTERPRET_TILE_ELEMS = 65536
MAX_TILE_ELEMS = 1 << 20  # triton's limit on the elements of one tensor
# bytes of a row one program streams per loop step on a GPU. H100, 2026-11-23
# (scripts/softmax_probe.py), online softmax of 256 x 1048576: fp16 1789 GB/s at 16 KiB chunks,
# 1908 at 32 KiB; fp32 1870 -> 1945; 1024 x 262144 fp32 unchanged (1911 -> 1936)
GPU_CHUNK_BYTES = 32768


# ---------------------------------------------------------------- kernels
# MATH (naive, safe, online): the dtype the kernel computes in, float32 unless a demonstration asks
# for float16 arithmetic, where e^x overflows 65504 once x > 11.09 (float32: x > 88.72). exp2
# itself takes float32 (the hardware instruction); its result is rounded to MATH like every value.
# Every kernel takes a (ROWS, BLOCK) tile: ROWS consecutive rows, BLOCK columns at a time, and
# keeps its running state (m_i, l_i) as (ROWS,) vectors, reducing along axis=1. The rows of the
# last, ragged group past n_rows are clamped to row n_rows - 1 so their loads stay in bounds and
# their arithmetic finite; every store and every count is masked by row_ok so they never show.
@triton.jit
def _row_tile(pid, n_rows, ROWS: tl.constexpr):
    """(ROWS,) int64 row indices of this program, clamped into [0, n_rows), and which are real."""
    rows = pid.to(tl.int64) * ROWS + tl.arange(0, ROWS)
    row_ok = rows < n_rows
    return tl.minimum(rows, n_rows - 1), row_ok


@triton.jit
def _chunk_mask(start_n, offs_n, n_cols, BLOCK: tl.constexpr, CHUNK: tl.constexpr):
    """The real lanes of the chunk at start_n: a chunk narrower than the hardware tile (a typed row's
    chunk of 3 in a tile of 16) masks its lanes past CHUNK exactly like the row's ragged end."""
    mask = start_n + offs_n < n_cols  # (1, BLOCK)
    if CHUNK < BLOCK:
        mask = mask & (offs_n < CHUNK)
    return mask


@triton.jit
def softmax_naive_kernel(
    Y_ptr, X_ptr, Counts_ptr, stride_ym, stride_xm, n_rows, n_cols,
    BLOCK: tl.constexpr, CHUNK: tl.constexpr, ROWS: tl.constexpr, COUNT: tl.constexpr, MATH: tl.constexpr = tl.float32,
):
    rows, row_ok = _row_tile(tl.program_id(0), n_rows, ROWS)
    x_row_ptr = X_ptr + rows[:, None] * stride_xm  # (ROWS, 1)
    y_row_ptr = Y_ptr + rows[:, None] * stride_ym
    offs_n = tl.arange(0, BLOCK)[None, :]  # (1, BLOCK)
    if COUNT:  # per lane, summed once after the loops (a scalar sum carried through the loop
        # crashes triton 3.6's thread-locality pass at 16 warps)
        n_loads = tl.zeros((ROWS, BLOCK), dtype=tl.int32)
        n_stores = tl.zeros((ROWS, BLOCK), dtype=tl.int32)
    # -- pass 1: d = sum e^x, no max subtracted: overflows to inf once x > ~88 --
    l_i = tl.zeros((ROWS,), dtype=MATH)
    for start_n in range(0, n_cols, CHUNK):
        mask = _chunk_mask(start_n, offs_n, n_cols, BLOCK, CHUNK)  # (1, BLOCK)
        x = tl.load(x_row_ptr + start_n + offs_n, mask=mask, other=-float("inf")).to(MATH)  # read cols elements
        l_i += tl.sum(tl.exp2((x * LOG2E).to(tl.float32)).to(MATH), axis=1).to(MATH)  # masked lanes: e^-inf = 0
        if COUNT:
            n_loads += (row_ok[:, None] & mask).to(tl.int32)
    # -- pass 2: y = e^x / d --
    for start_n in range(0, n_cols, CHUNK):
        mask = _chunk_mask(start_n, offs_n, n_cols, BLOCK, CHUNK)
        x = tl.load(x_row_ptr + start_n + offs_n, mask=mask, other=-float("inf")).to(MATH)  # read cols elements
        p = tl.exp2((x * LOG2E).to(tl.float32)).to(MATH) / l_i[:, None]
        mask_st = row_ok[:, None] & mask  # (ROWS, BLOCK)
        tl.store(y_row_ptr + start_n + offs_n, p.to(Y_ptr.dtype.element_ty), mask=mask_st)  # write cols elements
        if COUNT:
            n_loads += mask_st.to(tl.int32)
            n_stores += mask_st.to(tl.int32)
    if COUNT:
        tl.atomic_add(Counts_ptr, tl.sum(tl.sum(n_loads, axis=1), axis=0).to(tl.int64))
        tl.atomic_add(Counts_ptr + 1, tl.sum(tl.sum(n_stores, axis=1), axis=0).to(tl.int64))


@triton.jit
def softmax_safe_kernel(
    Y_ptr, X_ptr, Counts_ptr, stride_ym, stride_xm, n_rows, n_cols,
    BLOCK: tl.constexpr, CHUNK: tl.constexpr, ROWS: tl.constexpr, COUNT: tl.constexpr, MATH: tl.constexpr = tl.float32,
):
    rows, row_ok = _row_tile(tl.program_id(0), n_rows, ROWS)
    x_row_ptr = X_ptr + rows[:, None] * stride_xm  # (ROWS, 1)
    y_row_ptr = Y_ptr + rows[:, None] * stride_ym
    offs_n = tl.arange(0, BLOCK)[None, :]  # (1, BLOCK)
    if COUNT:  # per lane, summed once after the loops (a scalar sum carried through the loop
        # crashes triton 3.6's thread-locality pass at 16 warps)
        n_loads = tl.zeros((ROWS, BLOCK), dtype=tl.int32)
        n_stores = tl.zeros((ROWS, BLOCK), dtype=tl.int32)
    # -- pass 1: m = max x, per lane in the loop and across lanes once after it (reducing
    # inside the loop here crashes triton 3.6's thread-locality pass) --
    m_lane = tl.full((ROWS, BLOCK), -float("inf"), dtype=MATH)
    for start_n in range(0, n_cols, CHUNK):
        mask = _chunk_mask(start_n, offs_n, n_cols, BLOCK, CHUNK)
        x = tl.load(x_row_ptr + start_n + offs_n, mask=mask, other=-float("inf")).to(MATH)  # read cols elements
        m_lane = tl.maximum(m_lane, x)
        if COUNT:
            n_loads += (row_ok[:, None] & mask).to(tl.int32)
    m_i = tl.max(m_lane, axis=1)
    # -- pass 2: d = sum e^(x - m), every term <= 1 so nothing overflows --
    l_lane = tl.zeros((ROWS, BLOCK), dtype=MATH)
    for start_n in range(0, n_cols, CHUNK):
        mask = _chunk_mask(start_n, offs_n, n_cols, BLOCK, CHUNK)
        x = tl.load(x_row_ptr + start_n + offs_n, mask=mask, other=-float("inf")).to(MATH)  # read cols elements
        l_lane += tl.exp2(((x - m_i[:, None]) * LOG2E).to(tl.float32)).to(MATH)
        if COUNT:
            n_loads += (row_ok[:, None] & mask).to(tl.int32)
    l_i = tl.sum(l_lane, axis=1)
    # -- pass 3: y = e^(x - m) / d --
    for start_n in range(0, n_cols, CHUNK):
        mask = _chunk_mask(start_n, offs_n, n_cols, BLOCK, CHUNK)
        x = tl.load(x_row_ptr + start_n + offs_n, mask=mask, other=-float("inf")).to(MATH)  # read cols elements
        p = tl.exp2(((x - m_i[:, None]) * LOG2E).to(tl.float32)).to(MATH) / l_i[:, None]
        mask_st = row_ok[:, None] & mask  # (ROWS, BLOCK)
        tl.store(y_row_ptr + start_n + offs_n, p.to(Y_ptr.dtype.element_ty), mask=mask_st)  # write cols elements
        if COUNT:
            n_loads += mask_st.to(tl.int32)
            n_stores += mask_st.to(tl.int32)
    if COUNT:
        tl.atomic_add(Counts_ptr, tl.sum(tl.sum(n_loads, axis=1), axis=0).to(tl.int64))
        tl.atomic_add(Counts_ptr + 1, tl.sum(tl.sum(n_stores, axis=1), axis=0).to(tl.int64))


@triton.jit
def softmax_online_kernel(
    Y_ptr, X_ptr, Counts_ptr, M_trace_ptr, L_trace_ptr, stride_ym, stride_xm, stride_tm, n_rows, n_cols,
    BLOCK: tl.constexpr, CHUNK: tl.constexpr, ROWS: tl.constexpr, COUNT: tl.constexpr, TRACE: tl.constexpr,
    MATH: tl.constexpr = tl.float32,
):
    rows, row_ok = _row_tile(tl.program_id(0), n_rows, ROWS)
    x_row_ptr = X_ptr + rows[:, None] * stride_xm  # (ROWS, 1)
    y_row_ptr = Y_ptr + rows[:, None] * stride_ym
    offs_n = tl.arange(0, BLOCK)[None, :]  # (1, BLOCK)
    if COUNT:  # per lane, summed once after the loops (a scalar sum carried through the loop
        # crashes triton 3.6's thread-locality pass at 16 warps)
        n_loads = tl.zeros((ROWS, BLOCK), dtype=tl.int32)
        n_stores = tl.zeros((ROWS, BLOCK), dtype=tl.int32)
    # -- pass 1: running max m_i and running sum l_i (d in the reference) in one sweep, per row --
    m_i = tl.full((ROWS,), -float("inf"), dtype=MATH)
    l_i = tl.zeros((ROWS,), dtype=MATH)
    for start_n in range(0, n_cols, CHUNK):
        mask = _chunk_mask(start_n, offs_n, n_cols, BLOCK, CHUNK)
        x = tl.load(x_row_ptr + start_n + offs_n, mask=mask, other=-float("inf")).to(MATH)  # read cols elements
        m_new = tl.maximum(m_i, tl.max(x, axis=1).to(MATH))
        # -- rescale l_i: its terms were e^(x - m_old); 0 on the first chunk (m_old = -inf) --
        alpha = tl.exp2(((m_i - m_new) * LOG2E).to(tl.float32)).to(MATH)
        l_i = (l_i * alpha + tl.sum(tl.exp2(((x - m_new[:, None]) * LOG2E).to(tl.float32)).to(MATH), axis=1)).to(MATH)
        m_i = m_new
        if TRACE:
            tl.store(M_trace_ptr + rows * stride_tm + start_n // CHUNK, m_i, mask=row_ok)
            tl.store(L_trace_ptr + rows * stride_tm + start_n // CHUNK, l_i, mask=row_ok)
        if COUNT:
            n_loads += (row_ok[:, None] & mask).to(tl.int32)
    # -- pass 2: y = e^(x - m) / d with the final m, d --
    for start_n in range(0, n_cols, CHUNK):
        mask = _chunk_mask(start_n, offs_n, n_cols, BLOCK, CHUNK)
        x = tl.load(x_row_ptr + start_n + offs_n, mask=mask, other=-float("inf")).to(MATH)  # read cols elements
        p = tl.exp2(((x - m_i[:, None]) * LOG2E).to(tl.float32)).to(MATH) / l_i[:, None]
        mask_st = row_ok[:, None] & mask  # (ROWS, BLOCK)
        tl.store(y_row_ptr + start_n + offs_n, p.to(Y_ptr.dtype.element_ty), mask=mask_st)  # write cols elements
        if COUNT:
            n_loads += mask_st.to(tl.int32)
            n_stores += mask_st.to(tl.int32)
    if COUNT:
        tl.atomic_add(Counts_ptr, tl.sum(tl.sum(n_loads, axis=1), axis=0).to(tl.int64))
        tl.atomic_add(Counts_ptr + 1, tl.sum(tl.sum(n_stores, axis=1), axis=0).to(tl.int64))


@triton.jit
def softmax_single_pass_kernel(
    Y_ptr, X_ptr, Counts_ptr, stride_ym, stride_xm, n_rows, n_cols,
    BLOCK: tl.constexpr, ROWS: tl.constexpr, COUNT: tl.constexpr,
):
    rows, row_ok = _row_tile(tl.program_id(0), n_rows, ROWS)
    offs_n = tl.arange(0, BLOCK)[None, :]  # (1, BLOCK)
    mask = offs_n < n_cols
    # -- whole rows on chip: max, sum and write without going back to memory --
    x = tl.load(X_ptr + rows[:, None] * stride_xm + offs_n, mask=mask, other=-float("inf")).to(tl.float32)  # read cols elements
    m_i = tl.max(x, axis=1)
    p = tl.exp2((x - m_i[:, None]) * LOG2E)
    l_i = tl.sum(p, axis=1)
    mask_st = row_ok[:, None] & mask  # (ROWS, BLOCK)
    y = (p / l_i[:, None]).to(Y_ptr.dtype.element_ty)
    tl.store(Y_ptr + rows[:, None] * stride_ym + offs_n, y, mask=mask_st)  # write cols elements
    if COUNT:
        n = tl.sum(mask_st.to(tl.int32))
        tl.atomic_add(Counts_ptr, n.to(tl.int64))
        tl.atomic_add(Counts_ptr + 1, n.to(tl.int64))


# ---------------------------------------------------------------- host side
def variants_for(cols: int) -> tuple[str, ...]:
    """The variants that run on rows of this length: single_pass only where a row fits on chip."""
    return tuple(v for v in VARIANTS if v != "single_pass" or cols <= SINGLE_PASS_MAX_COLS)


def next_pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def _supported_dtypes() -> tuple:
    if backend.INTERPRET:  # the interpreter has no bfloat16 arithmetic
        return (torch.float32, torch.float16)
    return (torch.float32, torch.float16, torch.bfloat16)


def default_block(cols: int, dtype=torch.float32, variant: str = "online") -> int:
    """Chunk width: the whole row for single_pass; for the streamed variants the whole row when it
    is short, else GPU_CHUNK_BYTES of input per chunk on a GPU (8192 fp32, 16384 fp16) and 1024
    elements in the interpreter (small, so a trace has several chunks and tests stay fast)."""
    if variant == "single_pass":
        return max(MIN_BLOCK, next_pow2(cols))
    itemsize = torch.empty((), dtype=dtype).element_size()
    cap = 1024 if backend.INTERPRET else GPU_CHUNK_BYTES // itemsize
    return max(MIN_BLOCK, min(next_pow2(cols), cap))


def default_rows_per_program(rows: int, block: int) -> int:
    """Rows per program for a (rows, cols) input chunked `block` wide: a power of two, at most
    next_pow2(rows) and MAX_ROWS_PER_PROGRAM. GPU: 1 unless block <= GPU_SHORT_ROW_BLOCK, then as
    many as fit GPU_TILE_ELEMS (8192 x 128 -> 128 rows a program). Interpreter: ~64K elements a tile."""
    if backend.INTERPRET:
        tile = INTERPRET_TILE_ELEMS
    elif block <= GPU_SHORT_ROW_BLOCK:
        tile = GPU_TILE_ELEMS
    else:
        return 1
    return max(1, min(tile // block, next_pow2(rows), MAX_ROWS_PER_PROGRAM))


def _num_warps(block: int) -> int:
    # after tutorial 02: more warps for wider blocks keeps ~8-16 elements per thread
    return 16 if block >= 8192 else 8 if block >= 2048 else 4


def _check_variant(variant: str) -> None:
    limits.check_choice("variant", variant, VARIANTS)


def _check_block(block) -> int:
    return limits.check_pow2("block", block, MIN_BLOCK, MAX_BLOCK)


def check_x(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor (rows, cols), got {type(x).__name__}")
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


def _check_rows_per_program(rows_per_program, block: int) -> int:
    r = limits.check_pow2("rows_per_program", rows_per_program, 1, MAX_ROWS_PER_PROGRAM)
    if r * block > MAX_TILE_ELEMS:
        raise ValueError(
            f"rows_per_program * block must be at most {MAX_TILE_ELEMS} elements (one tile), "
            f"got {r} * {block}"
        )
    return r


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


MATH_DTYPES = {"float32": tl.float32, "float16": tl.float16}


def _check_chunk(chunk, block: int) -> int:
    """Columns one loop step takes: the whole tile (None), or fewer, from 1 (a typed row's chunk of 3)."""
    return block if chunk is None else limits.check_int("chunk", chunk, 1, block)


def _launch(variant, x, y, block, rows_per_program, counts=None, m_trace=None, l_trace=None, math="float32",
            chunk=None) -> None:
    rows, cols = x.shape
    count, trace = counts is not None, m_trace is not None
    counts = counts if count else y  # placeholder pointer, never touched when COUNT is off
    grid = (triton.cdiv(rows, rows_per_program),)
    meta = dict(BLOCK=block, ROWS=rows_per_program, COUNT=count, num_warps=_num_warps(rows_per_program * block))
    if variant != "single_pass":
        meta["CHUNK"] = block if chunk is None else chunk
    if math != "float32":
        meta["MATH"] = MATH_DTYPES[math]
    if variant == "online":
        m_trace = m_trace if trace else y
        l_trace = l_trace if trace else y
        stride_tm = m_trace.stride(0) if trace else 0
        softmax_online_kernel[grid](
            y, x, counts, m_trace, l_trace, y.stride(0), x.stride(0), stride_tm, rows, cols, TRACE=trace, **meta
        )
        return
    kernel = {
        "naive": softmax_naive_kernel,
        "safe": softmax_safe_kernel,
        "single_pass": softmax_single_pass_kernel,
    }[variant]
    kernel[grid](y, x, counts, y.stride(0), x.stride(0), rows, cols, **meta)


def softmax(x: torch.Tensor, variant: str = "online", block: int | None = None, return_counts: bool = False,
            out: torch.Tensor | None = None, rows_per_program: int | None = None, math: str = "float32",
            chunk: int | None = None):
    """Row-wise softmax of a 2-D tensor with one of VARIANTS. Returns y, or (y, {"loads", "stores"})
    counted by the kernel itself when return_counts. `out` (same shape and dtype) is written in place.
    rows_per_program (a power of two, 1..256) forces how many rows one program handles; None picks
    default_rows_per_program. math: the dtype the kernel computes in ("float16" for naive, safe and
    online only: the overflow demonstration). chunk (1..block, naive, safe and online): the columns each
    loop step takes, when fewer than the hardware tile `block` (a power of two from 16): the tile's lanes
    past it are masked like a ragged end, so a row streams in chunks of 1, 3 or 5 through the same kernel."""
    _check_variant(variant)
    limits.check_choice("math", math, tuple(MATH_DTYPES))
    if math != "float32" and variant == "single_pass":
        raise ValueError("math must be 'float32' for single_pass (float16 arithmetic is for naive, safe, online)")
    return_counts = limits.check_bool("return_counts", return_counts)
    x = check_x(x)
    rows, cols = x.shape
    block = _resolve_block(variant, block, cols, x.dtype)
    if chunk is not None and variant == "single_pass":
        raise ValueError("chunk is for naive, safe and online: single_pass holds the whole row in one block")
    chunk = _check_chunk(chunk, block)
    if rows_per_program is None:
        rows_per_program = default_rows_per_program(rows, block)
    rows_per_program = _check_rows_per_program(rows_per_program, block)
    if out is None:
        y = torch.empty((rows, cols), dtype=x.dtype, device=x.device)
    else:
        if (not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype != x.dtype
                or out.device != x.device or out.stride(1) != 1 or (out.shape[0] > 1 and out.stride(0) < out.shape[1])):
            raise ValueError(
                f"out must match x ({tuple(x.shape)}, {x.dtype}, {x.device}) with dense columns and rows that do not "
                f"overlap (an expanded tensor has overlapping rows), "
                f"got {tuple(out.shape)}, {out.dtype}, {out.device}, strides {out.stride()}"
            )
        y = out
    counts = torch.zeros(2, dtype=torch.int64, device=x.device) if return_counts else None  # (loads, stores)
    _launch(variant, x, y, block, rows_per_program, counts, math=math, chunk=chunk)
    if not return_counts:
        return y
    loads, stores = counts.tolist()
    return y, {"loads": loads, "stores": stores}


def online_trajectory(x_row, block: int, rows_per_program: int | None = None,
                      chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Running max m and running sum d after each chunk of the online kernel's first pass, as the
    kernel wrote them (TRACE on). A row (cols,) gives two float32 arrays of length
    ceil(cols / chunk); a matrix (rows, cols) gives (rows, ceil(cols / chunk)) each. chunk: as in
    softmax(), the columns a step takes in the tile of `block` (default: all of them)."""
    if isinstance(x_row, np.ndarray):
        x_row = torch.from_numpy(np.ascontiguousarray(x_row, dtype=np.float32))
    if not isinstance(x_row, torch.Tensor) or x_row.dim() not in (1, 2):
        raise ValueError(f"x_row must be 1-D (cols,) or 2-D (rows, cols), got shape {tuple(getattr(x_row, 'shape', ()))}")
    one_row = x_row.dim() == 1
    x = check_x(x_row[None, :] if one_row else x_row)  # (rows, cols)
    _check_block(block)
    chunk = _check_chunk(chunk, block)
    rows, cols = x.shape
    if rows_per_program is None:
        rows_per_program = default_rows_per_program(rows, block)
    rows_per_program = _check_rows_per_program(rows_per_program, block)
    n_chunks = math.ceil(cols / chunk)
    m_trace = torch.full((rows, n_chunks), float("nan"), dtype=torch.float32, device=x.device)  # (rows, chunks)
    l_trace = torch.full((rows, n_chunks), float("nan"), dtype=torch.float32, device=x.device)
    y = torch.empty_like(x)
    _launch("online", x, y, block, rows_per_program, m_trace=m_trace, l_trace=l_trace, chunk=chunk)
    m, d = m_trace.cpu().numpy(), l_trace.cpu().numpy()
    return (m[0], d[0]) if one_row else (m, d)
