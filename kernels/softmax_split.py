"""Long-row softmax in one pass: a row too long for one program is split across cooperating programs.

Each of a row's S programs holds its slice of the row on chip, computes the slice's partial
(m_s, l_s) = (max x, sum e^(x - m_s)), publishes it, waits until the row's other S - 1 partials
are there, merges them with the source documents' formula

    M = max_s m_s,   L = sum_s l_s e^(m_s - M)

and writes its slice of y = e^(x - M) / L from the registers it loaded it into: one read and one
write per element, where the online kernel reads twice. Programs form G groups of S; group g
handles rows g, g + G, ... with a counter per group as the barrier.

A barrier between programs deadlocks unless they are all resident at once, so on a GPU the grid
is sized from the SM count and the kernel's occupancy and launched as a cooperative grid (CUDA
refuses a grid that cannot be co-resident; then the online kernel runs instead). Triton's
interpreter runs programs one after another, so there the same kernel runs in two launches: the
partials (MODE 1), then the merge and the write (MODE 2), which reads the row a second time.

Not for: the other variants (softmax.py) or references (reference.py).
"""
import math

from kernels import backend, limits

backend.require_triton()

import torch
import triton
import triton.language as tl

from kernels.softmax import LOG2E, check_x, next_pow2

MAX_SPLITS = 64  # programs per row
GPU_SLICE_BYTES = 65536  # of a row, per program: 16384 fp32, 32768 fp16 (32 or 64 registers a thread)
INTERPRET_SLICE = 1024
# MODE: one cooperative launch, or the interpreter's two launches (constexpr: compiled kernels may not read plain globals)
COOPERATIVE, PARTIALS, MERGE = tl.constexpr(0), tl.constexpr(1), tl.constexpr(2)


@triton.jit
def _merge(Part_ptr, base, plane, SPLITS: tl.constexpr):
    """(M, L) of a row from its SPLITS partials at Part_ptr[base + s] (m) and [plane + base + s] (l)."""
    s = tl.arange(0, SPLITS)
    m_s = tl.load(Part_ptr + base + s)
    l_s = tl.load(Part_ptr + plane + base + s)
    m = tl.max(m_s, 0)
    return m, tl.sum(l_s * tl.exp2((m_s - m) * LOG2E), 0)  # L = sum_s l_s e^(m_s - M)


@triton.jit
def softmax_split_row_kernel(
    Y_ptr, X_ptr, Part_ptr, Sync_ptr, Counts_ptr, Keep_ptr, stride_ym, stride_xm, n_rows, n_cols, n_groups,
    SLICE: tl.constexpr, SPLITS: tl.constexpr, MODE: tl.constexpr, COUNT: tl.constexpr, KEEP: tl.constexpr = False,
    CHUNK: tl.constexpr = None,
):
    # KEEP (cooperative): also write every row's partials to Keep_ptr (2, n_rows, SPLITS), for the page.
    # CHUNK (None: SLICE): the row's columns a program holds, when fewer than its tile of SLICE lanes
    # (a typed row in slices of 3); the lanes past it are masked like the row's ragged end
    g = tl.program_id(0) // SPLITS
    s = tl.program_id(0) % SPLITS
    if CHUNK is None:
        offs = s * SLICE + tl.arange(0, SLICE)
        mask = offs < n_cols
    else:
        offs = s * CHUNK + tl.arange(0, SLICE)
        mask = (offs < n_cols) & (tl.arange(0, SLICE) < CHUNK)
    plane = n_groups * 2 * SPLITS if MODE == 0 else n_rows * SPLITS  # m plane, then l plane
    n_local = tl.cdiv(n_rows - g, n_groups)
    row = g.to(tl.int64)
    x = tl.load(X_ptr + row * stride_xm + offs, mask=mask, other=-float("inf")).to(tl.float32)  # read SLICE
    for it in range(0, n_local):
        if MODE != MERGE:
            # -- the slice's partial (m_s, l_s), on chip --
            m_s = tl.max(x, 0)
            m_safe = tl.where(m_s == -float("inf"), 0.0, m_s)  # a slice wholly past n_cols: l_s = 0
            l_s = tl.sum(tl.exp2((x - m_safe) * LOG2E), 0)
            base = ((g * 2 + it % 2) * SPLITS) if MODE == 0 else row * SPLITS  # two slots: rows it, it + 1
            tl.store(Part_ptr + base + s, m_s)
            tl.store(Part_ptr + plane + base + s, l_s)
            if KEEP:
                tl.store(Keep_ptr + row * SPLITS + s, m_s)
                tl.store(Keep_ptr + n_rows * SPLITS + row * SPLITS + s, l_s)
        if MODE == COOPERATIVE:
            # -- barrier: every program of the group has published its partial of this row --
            tl.debug_barrier()
            tl.atomic_add(Sync_ptr + g, 1, sem="release")
            nxt = tl.minimum(row + n_groups, n_rows - 1)  # the next row's slice, loaded while the others arrive
            x_next = tl.load(X_ptr + nxt * stride_xm + offs, mask=mask, other=-float("inf"))
            target = (it + 1) * SPLITS
            arrived = tl.atomic_add(Sync_ptr + g, 0, sem="acquire")
            while arrived < target:
                arrived = tl.atomic_add(Sync_ptr + g, 0, sem="acquire")
            tl.debug_barrier()
        if MODE != PARTIALS:
            # -- merge the row's partials, then write this slice from the registers it came in --
            m, l = _merge(Part_ptr, base if MODE == 0 else row * SPLITS, plane, SPLITS)
            y = tl.exp2((x - m) * LOG2E) / l
            tl.store(Y_ptr + row * stride_ym + offs, y.to(Y_ptr.dtype.element_ty), mask=mask)  # write SLICE
            if COUNT:
                tl.atomic_add(Counts_ptr + 1, tl.sum(mask.to(tl.int64), 0))
        if COUNT:
            tl.atomic_add(Counts_ptr, tl.sum(mask.to(tl.int64), 0))  # the slice was read once in this launch
        row += n_groups
        if MODE == COOPERATIVE:
            x = x_next.to(tl.float32)
        else:
            nxt = tl.minimum(row, n_rows - 1)  # past the last row: a valid address, never used
            x = tl.load(X_ptr + nxt * stride_xm + offs, mask=mask, other=-float("inf")).to(tl.float32)


# ---------------------------------------------------------------- host side
def default_slice(cols: int, dtype) -> int:
    """Columns per program: GPU_SLICE_BYTES of the row on a GPU (at least cols / MAX_SPLITS),
    INTERPRET_SLICE in the interpreter."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    cap = INTERPRET_SLICE if backend.INTERPRET else GPU_SLICE_BYTES // itemsize
    return max(16, min(next_pow2(cols), max(cap, next_pow2(math.ceil(cols / MAX_SPLITS)))))


def _num_warps(slice_cols: int) -> int:
    # no spills under triton's sm_90 build: 16384 columns with 32 warps is 62 registers a thread,
    # with 16 warps 128 and a spill (experiments/README.md, "split-row registers")
    return 32 if slice_cols >= 16384 else 16 if slice_cols >= 4096 else 8 if slice_cols >= 2048 else 4


def resident_groups(kernel_args, splits: int, rows: int, meta: dict) -> int:
    """How many groups of `splits` programs fit on the GPU at once: SMs x programs per SM (from the
    compiled kernel's registers and shared memory), never more groups than rows."""
    compiled = softmax_split_row_kernel.warmup(*kernel_args, grid=(1,), **meta)
    compiled._init_handles()  # loads it onto the device: n_regs is known from here on
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    threads = meta["num_warps"] * 32
    shared = compiled.metadata.shared
    per_sm = min(getattr(props, "max_threads_per_multi_processor", 2048) // threads,
                 getattr(props, "regs_per_multiprocessor", 65536) // max(1, compiled.n_regs * threads),
                 getattr(props, "shared_memory_per_multiprocessor", 233472) // shared if shared else 32)
    return max(0, min(rows, props.multi_processor_count * per_sm // splits))


def softmax_split_row(x: torch.Tensor, slice_cols: int | None = None, return_counts: bool = False,
                      return_partials: bool = False, chunk: int | None = None):
    """Row-wise softmax, each row split across cooperating programs (module docstring). Returns y,
    plus {"loads", "stores"} when return_counts, plus {"m", "l"} (rows, S) partials of every slice
    when return_partials (None when the online kernel ran instead). `path` in the counts says what
    ran: "cooperative", "two launches" (the interpreter) or "online (cooperative launch refused ...)".
    chunk (1..slice_cols): the columns each program holds, when fewer than its tile of slice_cols."""
    x = check_x(x)
    rows, cols = x.shape
    return_counts = limits.check_bool("return_counts", return_counts)
    slice_cols = (default_slice(cols, x.dtype) if slice_cols is None
                  else limits.check_pow2("slice_cols", slice_cols, 16, 65536))
    chunk = slice_cols if chunk is None else limits.check_int("chunk", chunk, 1, slice_cols)
    splits = next_pow2(math.ceil(cols / chunk))
    if splits > MAX_SPLITS:
        raise ValueError(f"slice_cols must cut a row into at most {MAX_SPLITS} slices, got {splits} of {chunk} "
                         f"for {cols} columns: use a larger slice_cols")
    y = torch.empty_like(x)
    counts = torch.zeros(2, dtype=torch.int64, device=x.device)
    sync = torch.zeros(rows, dtype=torch.int32, device=x.device)
    meta = dict(SLICE=slice_cols, SPLITS=splits, COUNT=return_counts or return_partials,
                CHUNK=None if chunk == slice_cols else chunk)
    if not backend.INTERPRET:
        meta["num_warps"] = _num_warps(slice_cols)
    path = "two launches"
    keep = torch.full((2, rows, splits), float("nan"), dtype=torch.float32, device=x.device) if return_partials else None
    if backend.INTERPRET:
        part = torch.full((2, rows, splits), float("nan"), dtype=torch.float32, device=x.device)
        args = (y, x, part, sync, counts, None, y.stride(0), x.stride(0), rows, cols, rows)
        softmax_split_row_kernel[(rows * splits,)](*args, MODE=PARTIALS, **meta)
        softmax_split_row_kernel[(rows * splits,)](*args, MODE=MERGE, **meta)
        keep = part
    else:
        probe = (y, x, x, sync, counts, None, y.stride(0), x.stride(0), rows, cols, 1)
        groups = resident_groups(probe, splits, rows, {**meta, "MODE": COOPERATIVE})
        try:
            if groups < 1:
                raise RuntimeError("not one group of programs fits")
            part = torch.empty((2, groups, 2, splits), dtype=torch.float32, device=x.device)
            softmax_split_row_kernel[(groups * splits,)](
                y, x, part, sync, counts, keep, y.stride(0), x.stride(0), rows, cols, groups, MODE=COOPERATIVE,
                KEEP=keep is not None, launch_cooperative_grid=True, **meta)
            path = "cooperative"
        except RuntimeError as e:  # CUDA refused a grid that cannot be co-resident: never wait for it
            from kernels import softmax

            y = softmax.softmax(x, "online", out=y)
            path = f"online (cooperative launch refused: {str(e).splitlines()[0][:80]})"
    out = [y]
    if return_counts:
        loads, stores = counts.tolist()
        out.append({"loads": loads, "stores": stores, "path": path, "splits": splits})
    if return_partials:
        out.append(None if keep is None or path.startswith("online") else
                   {"m": keep[0].cpu().numpy(), "l": keep[1].cpu().numpy()})
    return out[0] if len(out) == 1 else tuple(out)
