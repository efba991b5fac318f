"""Ring attention's plan: which rows each rank holds, which K/V shard it holds at each ring step,
and which (query chunk, key chunk) pairs it computes, skips or masks. NumPy only, no torch, no
triton: the loader and the page read it where no kernel can run.

The sequence is cut into equal chunks of `chunk_len` rows:
  * contiguous: P chunks, rank r holds chunk r;
  * zigzag: 2P chunks, rank r holds chunks r and 2P - 1 - r (one early, one late), so that with a
    causal mask every rank computes the same number of key chunks at every step (contiguous
    sharding leaves rank 0 with one step of work and rank P - 1 with P).
Each rank keeps its Q shard; its K/V shard travels around the ring: at step t rank r holds the
K/V shard of rank (r - t) mod P and passes it on to rank r + 1. A (query chunk i, key chunk j)
pair is FULL when every key is visible (j < i, or no mask), DIAGONAL when j == i (the causal
mask inside, the kernel's causal launch) and SKIPPED when j > i: every key lies in the future of
every query, so it is never computed.

Not for: running the ring (ring.py, ring_local.py) or its trace (ring_trace.py).
"""
import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from kernels import backend, limits, traffic

LAYOUTS = ("contiguous", "zigzag")
MIN_WORLD, MAX_WORLD = 2, 8
GIVEN = "given"  # the inputs were handed in (run_local's q, k, v): no seed generates them
SCENARIOS = limits.SCENARIOS + (GIVEN,)
SKIPPED, FULL, DIAGONAL = 0, 1, 2
KIND_NAMES = {SKIPPED: "skipped", FULL: "full", DIAGONAL: "diagonal"}
ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}
TAG_BYTES = 8  # the int64 that travels with a shard: whose it is
MAX_FOLLOWED = 4096  # rows whose O a trace keeps at every step (the loader checks each one's merges)
MAX_TILES_CPU = limits.MAX_TILES_CPU  # every rank's tiles together, in the interpreter


@dataclass(frozen=True)
class RingConfig:
    seq_len: int = 256
    head_dim: int = 32
    world_size: int = 4
    causal: bool = True
    layout: str = "zigzag"
    block_m: int = 16
    block_n: int = 16
    dtype: str = "float32"
    scenario: str = "randn"
    seed: int = 0

    def __post_init__(self):
        self.check_shape()
        self.check_live()

    def check_shape(self) -> None:
        """What holds wherever a ring ran (a recorded trace is checked with this alone)."""
        for name in ("seq_len", "head_dim", "world_size", "block_m", "block_n", "seed"):
            object.__setattr__(self, name, limits.check_int(name, getattr(self, name)))
        object.__setattr__(self, "causal", limits.check_bool("causal", self.causal))
        limits.check_int("world_size", self.world_size, MIN_WORLD, MAX_WORLD)
        limits.check_choice("layout", self.layout, LAYOUTS)
        limits.check_int("seq_len", self.seq_len, 1, limits.MAX_SEQ_LEN_GPU)
        check_fits(self.seq_len, self.world_size, self.layout)
        limits.check_blocks(self.block_m, self.block_n, self.head_dim)
        limits.check_choice("dtype", self.dtype, limits.DTYPES)
        limits.check_choice("scenario", self.scenario, SCENARIOS)
        limits.check_int("seed", self.seed, 0, 2**31 - 1)

    def check_live(self) -> None:
        """This backend's limits: the dtypes it runs, and the interpreter's tiles."""
        limits.check_choice("dtype", self.dtype, limits.dtypes(),
                            " on this backend" + (" (the interpreter has no bfloat16)" if backend.INTERPRET else ""))
        if self.seq_len > limits.max_seq_len():
            raise ValueError(f"seq_len must be at most {limits.max_seq_len()} on this backend "
                             f"({backend.describe()}), got {self.seq_len}")
        if backend.INTERPRET and self.tiles() > MAX_TILES_CPU:
            raise ValueError(f"the ring's {self.tiles()} tiles would take the CPU interpreter about "
                             f"{self.tiles() * limits.CPU_SECONDS_PER_TILE:.0f} s (limit {MAX_TILES_CPU} tiles): "
                             f"use larger blocks or a shorter seq_len")

    @classmethod
    def recorded(cls, **values) -> "RingConfig":
        """A config read from a trace file: check_shape only (it may be larger than this backend runs)."""
        cfg = object.__new__(cls)
        for f in dataclasses.fields(cls):
            if f.name not in values:
                raise ValueError(f"the ring trace's config has no {f.name}")
            object.__setattr__(cfg, f.name, values[f.name])
        cfg.check_shape()
        return cfg

    def fields(self) -> tuple:
        return tuple((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))

    # ------------------------------------------------------------ the sharding
    @property
    def n_chunks(self) -> int:
        return self.world_size * (2 if self.layout == "zigzag" else 1)

    @property
    def chunks_per_rank(self) -> int:
        return 2 if self.layout == "zigzag" else 1

    @property
    def chunk_len(self) -> int:
        return self.seq_len // self.n_chunks

    @property
    def rows_per_rank(self) -> int:
        return self.seq_len // self.world_size

    @property
    def sm_scale(self) -> float:
        return 1.0 / math.sqrt(self.head_dim)

    def rank_chunks(self, rank: int) -> tuple[int, ...]:
        """The chunks of the sequence rank `rank` holds, in the order of its local rows."""
        return (rank, 2 * self.world_size - 1 - rank) if self.layout == "zigzag" else (rank,)

    def chunk_rows(self, chunk: int) -> range:
        return range(chunk * self.chunk_len, (chunk + 1) * self.chunk_len)

    def rank_rows(self, rank: int) -> np.ndarray:
        """(R,) the rows of the sequence rank `rank` holds (its Q shard, and its K/V shard), local order."""
        return np.concatenate([np.arange(self.chunk_rows(ch).start, self.chunk_rows(ch).stop)
                               for ch in self.rank_chunks(rank)])

    def owner(self, row: int) -> tuple[int, int]:
        """(rank, local row) of sequence row `row`."""
        chunk = row // self.chunk_len
        for rank in range(self.world_size):
            if chunk in self.rank_chunks(rank):
                return rank, self.rank_chunks(rank).index(chunk) * self.chunk_len + row % self.chunk_len
        raise ValueError(f"row must be between 0 and {self.seq_len - 1}, got {row}")

    def held(self, rank: int, step: int) -> int:
        """Whose K/V shard rank `rank` holds at ring step `step`: it arrived from rank - 1 at each step."""
        return (rank - step) % self.world_size

    def pair_kind(self, q_chunk: int, k_chunk: int) -> int:
        if not self.causal or k_chunk < q_chunk:
            return FULL
        return DIAGONAL if k_chunk == q_chunk else SKIPPED

    def kinds(self, rank: int, step: int) -> np.ndarray:
        """(C, C) [q chunk slot, k chunk slot] kinds of rank `rank`'s pairs at step `step`."""
        src = self.held(rank, step)
        return np.array([[self.pair_kind(qc, kc) for kc in self.rank_chunks(src)] for qc in self.rank_chunks(rank)],
                        dtype=np.int32)

    def all_kinds(self) -> np.ndarray:
        """(P, P, C, C) the kinds of every rank at every step."""
        p = self.world_size
        return np.stack([np.stack([self.kinds(r, t) for t in range(p)]) for r in range(p)])

    def all_held(self) -> np.ndarray:
        p = self.world_size
        return np.array([[self.held(r, t) for t in range(p)] for r in range(p)], dtype=np.int64)

    # ------------------------------------------------------------ what the model says
    def shard_bytes(self) -> int:
        """Bytes of one K/V shard on the wire: K and V, rows_per_rank x head_dim each, in the input dtype."""
        return 2 * self.rows_per_rank * self.head_dim * ITEMSIZE[self.dtype]

    def sent_bytes(self) -> np.ndarray:
        """(P, P) bytes each rank sends at each step: its K/V shard and its tag to rank + 1, except after the
        last step."""
        out = np.full((self.world_size, self.world_size), self.shard_bytes() + TAG_BYTES, dtype=np.int64)
        out[:, -1] = 0
        return out

    def k_loads(self) -> np.ndarray:
        """(P, P) elements of K the kernel loads at each step (traffic.flash_fa2 of each pair it computes)."""
        c, d = self.chunk_len, self.head_dim
        per = {kind: traffic.flash_fa2(c, d, self.block_m, self.block_n, kind == DIAGONAL)["k_loads"]
               for kind in (FULL, DIAGONAL)}
        kinds = self.all_kinds()
        return sum(np.where(kinds == kind, per[kind], 0) for kind in (FULL, DIAGONAL)).sum(axis=(2, 3)).astype(np.int64)

    def tiles(self) -> int:
        """Tiles every rank's kernel launches compute together."""
        c = self.chunk_len
        visited = {kind: int(traffic.visited_tiles(c, self.block_m, self.block_n, kind == DIAGONAL).sum())
                   for kind in (FULL, DIAGONAL)}
        kinds = self.all_kinds()
        return int(sum((kinds == kind).sum() * visited[kind] for kind in (FULL, DIAGONAL)))


def allowed_world_sizes(seq_len: int, layout: str) -> list[int]:
    per = 2 if layout == "zigzag" else 1
    return [p for p in range(MIN_WORLD, MAX_WORLD + 1) if seq_len % (per * p) == 0]


def check_fits(seq_len: int, world_size: int, layout: str) -> None:
    """The sequence cuts into the layout's equal chunks (the kernel runs one length for queries and keys)."""
    per = 2 if layout == "zigzag" else 1
    n = per * world_size
    if seq_len % n == 0:
        return
    fits = allowed_world_sizes(seq_len, layout)
    lower, upper = (seq_len // n) * n, (seq_len // n + 1) * n
    raise ValueError(
        f"world_size={world_size} does not fit seq_len={seq_len}: the {layout} layout cuts the sequence into "
        f"{n} equal chunks ({per} per rank), so seq_len must be a multiple of {n} (nearest: "
        + (f"{lower} or {upper}" if lower else f"{upper}") + "); world sizes that fit seq_len "
        f"{seq_len} with this layout: {', '.join(map(str, fits)) if fits else 'none'}")


def follow_rows(cfg: RingConfig, budget_bytes: int = 32 << 20) -> np.ndarray:
    """The rows whose O the trace keeps at every step: all of them when they fit the budget, else
    each chunk's first, middle and last row."""
    per_row = 4 * cfg.world_size * (cfg.chunks_per_rank + 1) * cfg.head_dim  # part_o and merged_o
    if cfg.seq_len * per_row <= budget_bytes and cfg.seq_len <= MAX_FOLLOWED:
        return np.arange(cfg.seq_len, dtype=np.int64)
    c = cfg.chunk_len
    picks = {ch * c + off for ch in range(cfg.n_chunks) for off in (0, c // 2, c - 1)}
    return np.array(sorted(picks), dtype=np.int64)
