"""One row through every softmax kernel, recorded: what the Softmax page shows, and what its scenes replay.

capture_softmax(SoftmaxConfig) feeds a row to the kernels of softmax.py and softmax_split.py and
keeps what they computed: the online kernel's running (m, d) after every chunk (its TRACE), each
variant's counted loads and stores, the split-row kernel's partial (m, l) of every slice and how
it ran, and the two overflow demonstrations, labelled with the dtype the kernels compute in:
  * float32 arithmetic on the row x 100 (the source document's example): e^x overflows float32 once
    x > 88.72, so naive gives NaN and 0 where safe and online stay right;
  * float16 arithmetic on a float16 row around 8 +- 4: e^x overflows 65504 once x > 11.09, so naive
    breaks there, while the same row through the float32 kernels stays finite.
float64 references are attached. A typed row (`capture_softmax(cfg, row=[3, 1, 4, 1, 5])`, scenario
"typed") runs through the same kernels at any chunk from 1: the kernels keep their hardware tile of
at least 16 lanes and mask the lanes past the chunk like a ragged end, so the trace holds only the
row's own entries. Not for: drawing (viz/) or the file format (trace_io.py).
"""
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from kernels import backend, inputs, limits, reference
from kernels.schema import array

VARIANTS = ("naive", "safe", "online", "single_pass", "split_row")
OVERFLOW_VARIANTS = ("naive", "safe", "online")
MAX_LENGTH = 4096  # one row on the page: its cells stay visible
MAX_BLOCK = 1024  # a chunk: any width from 1 to this
MIN_TILE = 16  # the kernels' smallest hardware tile (softmax.MIN_BLOCK): a narrower chunk masks the rest
MAX_SLICES = 64  # the split-row kernel's programs per row
SCENARIOS = limits.SCENARIOS + ("typed",)  # typed: the row handed to capture_softmax


def tile_for(block: int) -> int:
    """The hardware tile a chunk of `block` columns runs in: a power of two, at least MIN_TILE."""
    return max(MIN_TILE, 1 << max(0, block - 1).bit_length())


def max_length(block: int) -> int:
    """The longest row the page runs at this chunk: MAX_SLICES slices of `block`, at most MAX_LENGTH."""
    return min(MAX_LENGTH, MAX_SLICES * block)


@dataclass(frozen=True)
class SoftmaxConfig:
    length: int = 64
    block: int = 16  # columns a streamed kernel reads at a time; the split-row kernel's slice
    scenario: str = "randn"
    seed: int = 0

    def __post_init__(self):
        limits.check_int("length", self.length, 1, MAX_LENGTH)
        limits.check_int("block", self.block, 1, MAX_BLOCK)
        limits.check_choice("scenario", self.scenario, SCENARIOS)
        limits.check_int("seed", self.seed, 0, 2**31 - 1)
        if self.n_slices > MAX_SLICES:
            raise ValueError(f"length / block must be at most {MAX_SLICES} slices for the split-row kernel, got "
                             f"{self.length} / {self.block}: at chunk {self.block} a row takes at most "
                             f"{max_length(self.block)} elements; use a larger block")

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.length / self.block)

    @property
    def n_slices(self) -> int:
        return 1 << max(0, self.n_chunks - 1).bit_length()  # the split-row kernel's slices: a power of two

    def fields(self) -> tuple:
        return (("length", self.length), ("block", self.block), ("scenario", self.scenario), ("seed", self.seed))


@dataclass(frozen=True, eq=False)
class SoftmaxTrace:
    config: SoftmaxConfig
    x: np.ndarray = array("L", "f4", "the row")
    m: np.ndarray = array("C", "f4", "the online kernel's running max after each chunk")
    d: np.ndarray = array("C", "f4", "its running sum")
    ref_m: np.ndarray = array("C", "f8", "float64 references")
    ref_d: np.ndarray = array("C", "f8", "")
    y: np.ndarray = array("L", "f4", "the online kernel's output")
    ref_y: np.ndarray = array("L", "f8", "float64 reference")
    split_m: np.ndarray = array("Sl", "f4", "the split-row kernel's partial max of each slice (-inf past the row)")
    split_l: np.ndarray = array("Sl", "f4", "and its partial sum of e^(x - m_s)")
    x100: np.ndarray = array("L", "f4", "the row x 100 (float32)")
    out100: np.ndarray = array("3, L", "f4", "naive, safe, online computing in float32 on it")
    ref100: np.ndarray = array("L", "f8", "float64 reference")
    x16: np.ndarray = array("L", "f4", "a float16 row 8 + 4 x (stored as float32)")
    out16: np.ndarray = array("3, L", "f4", "naive, safe, online computing in float16 on it")
    out16_fp32: np.ndarray = array("L", "f4", "naive computing in float32 on the same float16 row")
    ref16: np.ndarray = array("L", "f8", "float64 reference")
    counts: dict = field()  # {variant_loads, variant_stores}: what each kernel counted on this row
    split_path: str = field()  # "cooperative" (one launch, GPU) or "two launches" (the interpreter)
    device: str = field()
    seconds: float = field()

    def variant_counts(self, variant: str) -> dict | None:
        if f"{variant}_loads" not in self.counts:
            return None
        return {"loads": self.counts[f"{variant}_loads"], "stores": self.counts[f"{variant}_stores"]}


def check_row(row, length: int | None = None) -> np.ndarray:
    """A typed row as float32 (length,): 1 to MAX_LENGTH finite numbers (cfg.length of them when given)."""
    try:
        x = np.asarray(row, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"row must be a sequence of numbers, got {limits.shown_value(row)}") from None
    if x.ndim != 1 or not 1 <= x.size <= MAX_LENGTH:
        raise ValueError(f"row must be 1-D with 1 to {MAX_LENGTH} values, got shape {x.shape}")
    x32 = x.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(x32))
    if bad.size:
        raise ValueError(f"row must hold finite float32 numbers, got {float(x[bad[0]])!r} at index {bad[0]} "
                         f"(float32 holds up to ±3.4e38)")
    if length is not None and x.size != length:
        raise ValueError(f"row has {x.size} values but cfg.length is {length}: they must agree")
    return np.ascontiguousarray(x32)


def capture_softmax(cfg: SoftmaxConfig, row=None) -> SoftmaxTrace:
    """Every softmax kernel on cfg's row (scenario and seed), or on `row` (scenario "typed")."""
    backend.require_triton()
    import torch

    from kernels import softmax, softmax_split

    if not isinstance(cfg, SoftmaxConfig):
        raise ValueError(f"cfg must be a SoftmaxConfig, got {type(cfg).__name__}")
    if row is None and cfg.scenario == "typed":
        raise ValueError("scenario 'typed' runs the row handed over: capture_softmax(cfg, row=[...])")
    t0 = time.perf_counter()
    if row is not None:
        x = check_row(row, cfg.length)
        cfg = replace(cfg, scenario="typed")
    else:
        x = inputs.softmax_row(cfg.length, cfg.scenario, cfg.seed)
    xt = torch.from_numpy(x)[None, :]  # (1, L)
    tile, chunk = tile_for(cfg.block), cfg.block  # lanes tile .. chunk masked: the trace keeps the real ones
    m, d = softmax.online_trajectory(x, tile, chunk=chunk)
    counts = {}
    for v in softmax.variants_for(cfg.length):
        stream = v != "single_pass"
        y_v, c = softmax.softmax(xt, v, block=tile if stream else None, chunk=chunk if stream else None,
                                 return_counts=True)
        counts[f"{v}_loads"], counts[f"{v}_stores"] = c["loads"], c["stores"]
        if v == "online":
            y = y_v.float().cpu().numpy()[0]
    _, c, part = softmax_split.softmax_split_row(xt, slice_cols=tile, chunk=chunk, return_counts=True,
                                                 return_partials=True)
    counts["split_row_loads"], counts["split_row_stores"] = c["loads"], c["stores"]
    base = inputs.softmax_row(cfg.length, "randn", cfg.seed)
    x100 = torch.from_numpy(base * 100)[None, :]
    out100 = np.stack([softmax.softmax(x100, v, block=tile, chunk=chunk).cpu().numpy()[0] for v in OVERFLOW_VARIANTS])
    x16 = torch.from_numpy(8 + 4 * base)[None, :].to(torch.float16)
    out16 = np.stack([softmax.softmax(x16, v, block=tile, chunk=chunk, math="float16").float().cpu().numpy()[0]
                      for v in OVERFLOW_VARIANTS])
    out16_fp32 = softmax.softmax(x16, "naive", block=tile, chunk=chunk).float().cpu().numpy()[0]
    ref = reference.softmax_online(x[None, :].astype(np.float64), cfg.block)
    return SoftmaxTrace(
        config=cfg, x=x, m=m, d=d, ref_m=ref["m_traj"][0], ref_d=ref["d_traj"][0], y=y, ref_y=ref["y"][0],
        counts=counts, split_m=part["m"][0].astype(np.float32), split_l=part["l"][0].astype(np.float32),
        split_path=c["path"], x100=x100.numpy()[0].astype(np.float32), out100=out100.astype(np.float32),
        ref100=reference.softmax_safe(x100)["y"][0], x16=x16.float().numpy()[0], out16=out16.astype(np.float32),
        out16_fp32=out16_fp32.astype(np.float32), ref16=reference.softmax_safe(x16.float())["y"][0],
        device=backend.describe(), seconds=time.perf_counter() - t0,
    )
