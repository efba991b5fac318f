"""The contract the app consumes: TraceConfig in, AttentionTrace (NumPy arrays only) out.

capture_trace() builds one (batch=1, head=1) input for a scenario, runs the FlashAttention-2
forward kernel once with TRACE on, and returns what the kernel itself wrote: the running max m,
running sum l and rescale factor alpha of every row after every kv-block, which tiles it visited,
the score/probability tiles and the accumulator before and after each rescale, and the elements
it loaded and stored. The float64 reference is attached to check it, never to replace it.

Units are the textbook ones: s = (q . k) * sm_scale, m = running max of s, l = sum exp(s - m),
alpha = exp(m_prev - m_new), out = softmax(s) @ v.
Not for: drawing (viz/), the fast path (attention.py) or the file format (trace_io.py).
"""
import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np

from kernels import backend, hand, limits, masks, reference, traffic
from kernels.inputs import make_inputs
from kernels.schema import array

SCENARIOS = limits.SCENARIOS + ("typed",)  # typed: the q, k, v handed to capture_trace (no generator)

INT_FIELDS = ("seq_len", "head_dim", "block_m", "block_n", "seed", "kv_splits", "window_left", "window_right",
              "documents", "group", "q_len")


@dataclass(frozen=True)
class TraceConfig:
    seq_len: int = 256
    head_dim: int = 64
    block_m: int = 64
    block_n: int = 64
    causal: bool = False
    dtype: str = "float32"
    seed: int = 0
    scenario: str = "randn"
    loop_order: str = "fa2"  # "fa1": FlashAttention-1's order, kv loop outside (kernels/flash_fa1.py)
    kv_splits: int = 1  # > 1: each q-block's kv range in that many programs, merged (split-KV)
    # masks as models run attention (kernels/masks.py), FA2's order only
    window_left: int = -1  # sliding window: keys at most this far before the query (-1: no limit)
    window_right: int = -1  # ... and after it
    documents: int = 1  # packed documents of random lengths from the seed (masks.document_bounds)
    group: int = 1  # query heads per K/V head (GQA): the K/V head's group, packed head-major into rows
    q_len: int = 0  # queries per head: 0 = seq_len (self-attention); fewer: decode, the last q_len positions

    def __post_init__(self):
        self.check_shape()
        self._plain_values()
        self.check_live()

    def _plain_values(self) -> None:
        """NumPy integers and bools become Python's (the kernels' launch code takes no np.int64)."""
        for name in INT_FIELDS:
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "causal", bool(self.causal))

    def check_live(self) -> None:
        """This backend's live limits: the sequence length, the dtypes, the interpreter's tiles."""
        limit = limits.max_seq_len()
        if self.seq_len > limit:
            raise ValueError(f"seq_len must be between 1 and {limit} on this backend ({backend.describe()}), "
                             f"got {self.seq_len}")
        limits.check_choice("dtype", self.dtype, limits.dtypes(),
                            " on this backend" + (" (the interpreter has no bfloat16)" if backend.INTERPRET else ""))
        tq, tk = self.n_q_blocks, self.n_kv_blocks
        if backend.INTERPRET and tq * tk > limits.MAX_TILES_CPU:
            raise ValueError(
                f"{tq} x {tk} = {tq * tk} tiles would take the CPU interpreter about "
                f"{tq * tk * limits.CPU_SECONDS_PER_TILE:.0f} s (limit {limits.MAX_TILES_CPU} tiles): "
                f"use larger blocks or a shorter seq_len"
            )

    def check_shape(self) -> None:
        """Types and ranges that hold wherever a trace was recorded (a recorded trace is checked
        with this alone: it may be longer than this backend runs live)."""
        for name in INT_FIELDS:
            limits.check_int(name, getattr(self, name))
        limits.check_int("seq_len", self.seq_len, 1, limits.MAX_SEQ_LEN_GPU)
        limits.check_trace_blocks(self.block_m, self.block_n, self.head_dim)
        limits.check_bool("causal", self.causal)
        limits.check_choice("dtype", self.dtype, limits.DTYPES)
        limits.check_int("seed", self.seed, 0, 2**31 - 1)
        limits.check_choice("scenario", self.scenario, SCENARIOS)
        limits.check_choice("loop_order", self.loop_order, limits.LOOP_ORDERS)
        limits.check_int("kv_splits", self.kv_splits, 1, limits.MAX_KV_SPLITS)
        if self.kv_splits > self.n_kv_blocks:
            raise ValueError(f"kv_splits must be at most the number of kv-blocks ({self.n_kv_blocks} at seq_len "
                             f"{self.seq_len}, block_n {self.block_n}), got {self.kv_splits}")
        if self.loop_order == "fa1" and self.kv_splits != 1:
            raise ValueError(f"kv_splits splits FlashAttention-2's kv loop: with loop_order 'fa1' it must be 1, "
                             f"got {self.kv_splits}")
        self._check_masks()
        if self.hand_sized:
            self._check_hand()
        state = 3 * 4 * self.n_q_blocks * self.n_kv_blocks * self.block_m
        if state > limits.STATE_BUDGET_BYTES:
            raise ValueError(
                f"the running state of {self.n_q_blocks} x {self.n_kv_blocks} tiles takes {state >> 20} MiB "
                f"(limit {limits.STATE_BUDGET_BYTES >> 20} MiB): use a larger block_n or a shorter seq_len"
            )

    def _check_masks(self) -> None:
        for name in ("window_left", "window_right"):
            limits.check_int(name, getattr(self, name), -1, limits.MAX_SEQ_LEN_GPU)
        limits.check_int("documents", self.documents, 1, min(limits.MAX_DOCUMENTS, self.seq_len))
        limits.check_int("group", self.group, 1, limits.MAX_GROUP)
        limits.check_int("q_len", self.q_len, 0, self.seq_len)
        if self.documents > 1 and self.q_len not in (0, self.seq_len):
            raise ValueError(f"documents pack queries and keys into one sequence: q_len must be 0 (all {self.seq_len}) "
                             f"with {self.documents} documents, got {self.q_len}")
        if self.loop_order == "fa1" and (self.window != (-1, -1) or self.documents > 1 or self.group > 1
                                         or self.n_queries != self.seq_len):
            raise ValueError(f"the FA1-order kernel runs plain and causal attention: with loop_order 'fa1' the window, "
                             f"documents, group and q_len must be off, got {self.masks().describe()}")

    def _check_hand(self) -> None:
        """A block or head dim below the hardware tile (kernels/hand.py): plain attention, every number on screen."""
        limits.check_int("seq_len", self.seq_len, 1, limits.MAX_HAND_SEQ_LEN)
        plain = (not self.causal and self.loop_order == "fa2" and self.kv_splits == 1 and self.masks().default
                 and self.group == 1 and self.n_queries == self.seq_len)
        if not plain:
            raise ValueError(f"a block or head_dim below {limits.MIN_TILE} runs plain attention only (FlashAttention-2's "
                             f"order, no causal mask, window, documents, GQA, decode or split-KV), got "
                             f"{self.masks().describe()}, loop_order {self.loop_order!r}, kv_splits {self.kv_splits}")

    @property
    def hand_sized(self) -> bool:
        """A block or head dim below the hardware tile: the kernel runs padded tiles (kernels/hand.py)."""
        return limits.hand_sized(self.block_m, self.block_n, self.head_dim)

    @property
    def window(self) -> tuple[int, int]:
        return self.window_left, self.window_right

    @property
    def n_queries(self) -> int:
        return self.q_len or self.seq_len

    @property
    def n_rows(self) -> int:
        """Rows the kernel runs: the group's query heads, head-major (row r: head r // n_queries)."""
        return self.group * self.n_queries

    @property
    def cu_seqlens(self) -> tuple:
        return masks.document_bounds(self.seq_len, self.documents, self.seed)

    def masks(self) -> masks.Masks:
        return masks.Masks(self.n_queries, self.seq_len, self.causal, self.window, self.cu_seqlens, self.group)

    def tile_kinds(self) -> np.ndarray:
        """(Tq, Tk): how the kernel's loop bounds run each tile (kernels/masks.py's kinds)."""
        if self.loop_order == "fa1":  # one program masks every tile it visits
            seen = traffic.visited_tiles(self.seq_len, self.block_m, self.block_n, self.causal)
            return np.where(seen, masks.MASKED, masks.SKIPPED).astype(np.int32)
        kinds = self.masks().tile_kinds(self.block_m, self.block_n, self.kv_splits)
        if self.hand_sized and self.block_n < hand.hardware(self.block_n):  # kernels/hand.py's layout: KEY_TILE
            kinds = np.where(kinds == masks.SKIPPED, masks.SKIPPED, masks.MASKED).astype(np.int32)  # lanes masked
        return kinds

    @classmethod
    def recorded(cls, **values) -> "TraceConfig":
        """A config read from a trace file: checked by check_shape, not this backend's live limits."""
        cfg = object.__new__(cls)
        for f in dataclasses.fields(cls):
            if f.name not in values:
                raise ValueError(f"the trace's config has no {f.name}")
            object.__setattr__(cfg, f.name, values[f.name])
        cfg.check_shape()
        cfg._plain_values()
        return cfg

    def fields(self) -> tuple:
        """Hashable, plain-Python (name, value) pairs: a cache key."""
        return tuple((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))

    @property
    def n_q_blocks(self) -> int:
        return math.ceil(self.n_rows / self.block_m)

    @property
    def n_kv_blocks(self) -> int:
        return math.ceil(self.seq_len / self.block_n)

    @property
    def sm_scale(self) -> float:
        return 1.0 / math.sqrt(self.head_dim)

    def rows(self, q_block: int) -> range:
        """The rows in q-block `q_block` (the sequence's; with GQA the packed rows of the group)."""
        return range(q_block * self.block_m, min((q_block + 1) * self.block_m, self.n_rows))

    def keys(self, kv_block: int) -> range:
        """The keys of the sequence in kv-block `kv_block`."""
        return range(kv_block * self.block_n, min((kv_block + 1) * self.block_n, self.seq_len))

    def split_range(self, split: int) -> tuple[int, int]:
        """The kv-blocks [lo, hi) of split `split` (the forward kernel's KV_SPLITS arithmetic)."""
        tk = self.n_kv_blocks
        return split * tk // self.kv_splits, (split + 1) * tk // self.kv_splits

    def launch_config(self):
        """The kernels' launch Config for this trace's blocks (FA1's one program: a single stage)."""
        from kernels.launch import Config

        return Config(self.block_m, self.block_n, num_stages=1 if self.loop_order == "fa1" else 2)

    def counter_keys(self) -> tuple:
        if self.loop_order == "fa1":
            return traffic.FA1_COUNTERS
        return traffic.SPLIT_KV_COUNTERS if self.kv_splits > 1 else traffic.FA2_COUNTERS


def expected_visits(cfg: TraceConfig) -> np.ndarray:
    """(Tq, Tk) int: the step at which the kernel computes each tile, -1 where it skips it. FA2:
    each q-block's program counts its own steps (each split's program its own); FA1: the one
    program per head counts over kv-blocks outside, q-blocks inside."""
    visited = cfg.tile_kinds() != masks.SKIPPED
    order = np.full(visited.shape, -1, dtype=np.int64)
    if cfg.loop_order == "fa1":
        order.T[visited.T] = np.arange(int(visited.sum()))  # column-major walk: j outside, i inside
        return order
    for s in range(cfg.kv_splits):
        lo, hi = cfg.split_range(s)
        part = visited[:, lo:hi]
        order[:, lo:hi] = np.where(part, np.cumsum(part, axis=1) - 1, -1)
    return order


def capture_seconds(cfg: TraceConfig) -> float:
    """Rough time of one traced launch on this backend (the interpreter: per tile)."""
    return cfg.n_q_blocks * cfg.n_kv_blocks * limits.CPU_SECONDS_PER_TILE if backend.INTERPRET else 1.0


def tile_bytes(cfg: TraceConfig) -> int:
    """Bytes of s, p, acc_before, acc_after for one q-block (all its kv-blocks)."""
    return 4 * cfg.n_kv_blocks * (2 * cfg.block_m * cfg.block_n + 2 * cfg.block_m * cfg.head_dim)


def spaced_blocks(n_blocks: int, one_block_bytes: int) -> tuple[int, ...]:
    """Every block if their tiles fit TILE_BUDGET_BYTES, else evenly spaced ones, first and last included."""
    fit = max(1, limits.TILE_BUDGET_BYTES // one_block_bytes)
    if fit >= n_blocks:
        return tuple(range(n_blocks))
    return tuple(sorted({round(x) for x in np.linspace(0, n_blocks - 1, fit)}))


def tile_blocks(cfg: TraceConfig, blocks, n_blocks: int, one_block_bytes: int, name: str) -> tuple[int, ...]:
    """`blocks` checked: integers in [0, n_blocks) whose tiles fit TILE_BUDGET_BYTES; None -> spaced_blocks."""
    if blocks is None:
        return spaced_blocks(n_blocks, one_block_bytes)
    if isinstance(blocks, (str, bytes)) or not hasattr(blocks, "__iter__"):
        raise ValueError(f"{name} must be a sequence of block indices, got {blocks!r}")
    out = tuple(sorted({limits.check_int(f"{name}[...]", b, 0, n_blocks - 1) for b in blocks}))
    if not out:
        raise ValueError(f"{name} must name at least one block, got {blocks!r}")
    if len(out) * one_block_bytes > limits.TILE_BUDGET_BYTES:
        raise ValueError(f"tiles of {len(out)} blocks take {len(out) * one_block_bytes >> 20} MiB "
                         f"(limit {limits.TILE_BUDGET_BYTES >> 20} MiB): ask for fewer {name}")
    return out


@dataclass(frozen=True, eq=False)
class AttentionTrace:
    config: TraceConfig
    q: np.ndarray = array("M, d", "f4", "the inputs as the kernel saw them (after the dtype cast); q's M rows are the "
                          "group's query heads, head-major (M = group x queries, N without GQA or decode)")
    k: np.ndarray = array("N, d", "f4", "")
    v: np.ndarray = array("N, d", "f4", "")
    out: np.ndarray = array("M, d", "f4", "the kernel's output")
    lse: np.ndarray = array("M", "f4", "log-sum-exp per row, natural log")
    m: np.ndarray = array("Tq, Tk, bm", "f4", "running max of each row after kv-block j; NaN where the tile was skipped "
                          "or the row is past M")
    l: np.ndarray = array("Tq, Tk, bm", "f4", "running sum l = sum exp(s - m)")
    alpha: np.ndarray = array("Tq, Tk, bm", "f4", "the tile's rescale factor exp(m_prev - m_new)")
    visit_order: np.ndarray = array("Tq, Tk", "i4", "the step at which the tile's program computed it, -1 skipped "
                                    "(FA1: the one program's step; split-KV: each split's program counts its own)")
    tile_q_blocks: np.ndarray = array("n", "i8", "the q-blocks whose tiles were kept, in slot order")
    s: np.ndarray = array("n, Tk, bm, bn", "f4", "score tiles s = q.k * sm_scale; -inf masked, NaN past N or not "
                          "computed")
    p: np.ndarray = array("n, Tk, bm, bn", "f4", "exp(s - m_new)")
    acc_before: np.ndarray = array("n, Tk, bm, d", "f4", "the accumulator before the tile (FA1: O read from memory)")
    acc_after: np.ndarray = array("n, Tk, bm, d", "f4", "after alpha * acc + p V (FA1: O written back)")
    ref_out: np.ndarray = array("M, d", "f8", "float64 reference")
    ref_lse: np.ndarray = array("M", "f8", "float64 reference")
    counters: dict = field()  # elements loaded / stored, counted by the kernel (scalars counter_KEY in the file)
    sm_scale: float = field()
    device: str = field()  # backend.describe() where it ran
    seconds: float = field()  # wall time of the traced launch, compile included
    split_m: np.ndarray | None = array("S, M", "f4", "each split's running max after its last kv-block (-inf: no key "
                                       "seen)", when="split", default=None)
    split_l: np.ndarray | None = array("S, M", "f4", "each split's running sum", when="split", default=None)
    split_out: np.ndarray | None = array("S, M, d", "f4", "each split's normalized output acc / l (0 where l = 0)",
                                         when="split", default=None)
    tile_kind: np.ndarray | None = array("Tq, Tk", "i4", "how the kernel ran each tile: 0 skipped (never loaded), 1 "
                                         "whole, 2 masked (the branch of its loop the tile was in)", when="kinds",
                                         default=None)

    @property
    def visited(self) -> np.ndarray:
        return self.visit_order >= 0  # (Tq, Tk)

    @property
    def max_abs_err(self) -> float:
        return float(np.max(np.abs(self.out.astype(np.float64) - self.ref_out)))

    def tile_slot(self, q_block: int) -> int | None:
        hits = np.flatnonzero(self.tile_q_blocks == q_block)
        return int(hits[0]) if hits.size else None

    def model_counters(self) -> dict:
        c = self.config
        if c.hand_sized:  # the padded launch of kernels/hand.py, as the kernel counted it
            return hand.padded_counters(c)
        if c.loop_order == "fa1":
            return traffic.flash_fa1(c.seq_len, c.head_dim, c.block_m, c.block_n, c.causal)
        if c.kv_splits > 1:
            return traffic.flash_split_kv(c.seq_len, c.head_dim, c.block_m, c.block_n, c.causal, c.kv_splits,
                                          c.masks())
        return traffic.flash_fa2(c.seq_len, c.head_dim, c.block_m, c.block_n, c.causal, c.masks())


def capture_trace(cfg: TraceConfig, q_blocks=None, inputs=None) -> AttentionTrace:
    """Run the kernel once with TRACE on. q_blocks: which q-blocks keep their per-tile s, p and
    acc (default: all of them when they fit TILE_BUDGET_BYTES, else evenly spaced ones). inputs:
    (q, k, v) arrays of shape (seq_len, head_dim) instead of the config's scenario and seed."""
    backend.require_triton()
    import torch

    from kernels import attention, flash_fa1, flash_fwd
    from kernels.trace_buffers import TraceBuffers

    if not isinstance(cfg, TraceConfig):
        raise ValueError(f"cfg must be a TraceConfig, got {type(cfg).__name__}")
    cfg.check_live()  # a config read from a file (TraceConfig.recorded) may be longer than this backend runs
    q_blocks = tile_blocks(cfg, q_blocks, cfg.n_q_blocks, tile_bytes(cfg), "q_blocks")
    if inputs is None and cfg.scenario == "typed":
        raise ValueError("scenario 'typed' runs the inputs handed over: capture_trace(cfg, inputs=(q, k, v))")
    given = make_inputs(cfg) if inputs is None else hand.check_inputs(cfg, inputs)
    if inputs is not None:  # the trace says its inputs were handed over (no seed regenerates them)
        cfg = dataclasses.replace(cfg, scenario="typed")
    host = [torch.from_numpy(a).to(attention.torch_dtype(cfg.dtype)) for a in given]
    if cfg.hand_sized:
        return _capture_hand(cfg, host, q_blocks)
    k, v = (t.to(backend.DEVICE)[None, None] for t in host[1:])  # (1, 1, N, d)
    q = host[0].to(backend.DEVICE).view(1, cfg.group, cfg.n_queries, cfg.head_dim)  # the packed rows, per head
    buf = TraceBuffers(cfg.n_rows, cfg.head_dim, cfg.block_m, cfg.block_n, q_blocks, backend.DEVICE,
                       counter_keys=cfg.counter_keys(), n_keys=cfg.seq_len)
    docs = None
    if cfg.documents > 1:
        cu = torch.tensor(cfg.cu_seqlens, dtype=torch.int32, device=backend.DEVICE)
        docs = flash_fwd.Docs(cu, torch.searchsorted(cu[1:], torch.arange(cfg.seq_len, dtype=torch.int32,
                                                                          device=backend.DEVICE), right=True).int())
    t0 = time.perf_counter()
    if cfg.loop_order == "fa1":
        out, lse = flash_fa1.launch(q, k, v, cfg.causal, cfg.sm_scale, cfg.launch_config(), trace=buf)
    else:
        out, lse = flash_fwd.launch(q, k, v, cfg.causal, cfg.sm_scale, cfg.launch_config(), trace=buf,
                                    kv_splits=cfg.kv_splits, window=cfg.window, docs=docs)
    if backend.DEVICE == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0

    def np32(t):
        return t.detach().float().cpu().numpy()

    q64, k64, v64 = (t.double().numpy() for t in host)  # exactly what the kernel saw
    ref = reference.attention_rows(q64, k64, v64, cfg.causal, cfg.sm_scale, masks=cfg.masks())
    return AttentionTrace(
        config=cfg,
        q=np32(host[0]), k=np32(host[1]), v=np32(host[2]),
        out=np32(out[0].reshape(cfg.n_rows, cfg.head_dim)), lse=np32(lse[0].reshape(cfg.n_rows)),
        m=np32(buf.m), l=np32(buf.l), alpha=np32(buf.alpha),
        visit_order=buf.visit.cpu().numpy(), tile_kind=buf.kind.cpu().numpy(),
        tile_q_blocks=np.asarray(q_blocks, dtype=np.int64),
        s=np32(buf.s), p=np32(buf.p), acc_before=np32(buf.acc_before), acc_after=np32(buf.acc_after),
        counters=dict(zip(buf.counter_keys, (int(c) for c in buf.counters.cpu()), strict=True)),
        ref_out=ref["out"], ref_lse=ref["lse"],
        sm_scale=cfg.sm_scale, device=backend.describe(), seconds=seconds,
        **(_split_partials(buf, cfg) if cfg.kv_splits > 1 else {}),
    )


def _capture_hand(cfg: TraceConfig, host, q_blocks) -> AttentionTrace:
    """A block or head dim below the hardware tile: the same kernel on 16-wide tiles laid out by
    kernels/hand.py, the trace cut back to the real rows, keys and head lanes. counters: the elements
    of the padded tiles the kernel loaded and stored (head lanes and rows of zeros included)."""
    import torch

    from kernels import flash_fwd
    from kernels.launch import Config
    from kernels.trace_buffers import TraceBuffers

    qh, kh, vh = (t.to(backend.DEVICE)[None, None] for t in hand.pad(cfg, host))  # (1, 1, n_hw, 16)
    bm, bn, d = hand.hardware(cfg.block_m), hand.hardware(cfg.block_n), hand.hardware(cfg.head_dim)
    buf = TraceBuffers(qh.shape[2], d, bm, bn, q_blocks, backend.DEVICE, counter_keys=cfg.counter_keys(),
                       n_keys=kh.shape[2])
    key_tile = cfg.block_n if cfg.block_n < bn else 0
    t0 = time.perf_counter()
    out, lse = flash_fwd.launch(qh, kh, vh, False, cfg.sm_scale, Config(bm, bn, num_stages=2), trace=buf,
                                key_tile=key_tile)
    if backend.DEVICE == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0

    def np32(t):
        return t.detach().float().cpu().numpy()

    raw = dict(out=np32(out[0, 0]), lse=np32(lse[0, 0]), m=np32(buf.m), l=np32(buf.l), alpha=np32(buf.alpha),
               s=np32(buf.s), p=np32(buf.p), acc_before=np32(buf.acc_before), acc_after=np32(buf.acc_after))
    q64, k64, v64 = (t.double().numpy() for t in host)
    ref = reference.attention_rows(q64, k64, v64, False, cfg.sm_scale)
    return AttentionTrace(
        config=cfg, q=np32(host[0]), k=np32(host[1]), v=np32(host[2]), **hand.unpad(cfg, raw),
        visit_order=buf.visit.cpu().numpy(), tile_kind=buf.kind.cpu().numpy(),
        tile_q_blocks=np.asarray(q_blocks, dtype=np.int64),
        counters=dict(zip(buf.counter_keys, (int(c) for c in buf.counters.cpu()), strict=True)),
        ref_out=ref["out"], ref_lse=ref["lse"], sm_scale=cfg.sm_scale, device=backend.describe(), seconds=seconds,
    )


def _split_partials(buf, cfg: TraceConfig) -> dict:
    """The split-KV launch's partials of the traced (batch 0, K/V head 0): (S, M) m, l and (S, M, d) O."""
    s = cfg.kv_splits
    return {"split_m": buf.split_ml[0, :s].float().cpu().numpy(), "split_l": buf.split_ml[1, :s].float().cpu().numpy(),
            "split_out": buf.split_o[0, :s].float().cpu().numpy()}


def scores_softmax_counts(trace: AttentionTrace) -> dict:
    """Run every softmax kernel over this trace's whole N x N score matrix S with counting on.

    {variant: {"loads", "stores"}} as the kernels counted them. S is rebuilt from the trace's own
    q and k (in float32; masked entries -inf); single_pass only where a row fits on chip.
    """
    backend.require_triton()
    import torch

    from kernels import softmax

    c = trace.config
    q, k = (torch.from_numpy(a).to(backend.DEVICE) for a in (trace.q, trace.k))
    s = (q @ k.T) * trace.sm_scale  # (M, N)
    if not c.masks().default:  # masked scores are -inf (causal, a window, documents), as the kernel sees them
        s = s.masked_fill(~torch.from_numpy(c.masks().allowed(0, c.n_rows)).to(s.device), float("-inf"))
    return {variant: softmax.softmax(s, variant=variant, return_counts=True)[1]
            for variant in softmax.variants_for(c.seq_len)}
