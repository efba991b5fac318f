"""The ring attention trace: what every rank did at every ring step, as the ranks recorded it.

Per rank and step: whose K/V shard it held (the tag that arrived with the shard), which of its
(query chunk, key chunk) pairs it computed in full, under the causal mask, or skipped, the
kernel's partial (m, l) of every row against each key chunk, the running state after the step's
merge, the normalized O of the followed rows (partial and merged), the elements of K the kernel
loaded (its own counter), the bytes it sent on, and how long it computed and then waited for the
transfer. Plus the inputs, the gathered output and log-sum-exp, and the float64 reference.

Shapes, in the contract's symbols: N (seq_len), d (head_dim), P (ranks), Cr (chunks per rank: 1
contiguous, 2 zig-zag), R (rows per rank = N / P), n (followed rows). A rank's rows are in the
order of its chunks (kernels/ring_plan.py, RingConfig.rank_rows). Units as everywhere: s = q.k *
sm_scale, m = max s, l = sum e^(s - m).

`step_view(trace, step, row)` gives one row's numbers at one step for the page: the old state,
each key chunk's partial, the merged state, and float64 over the keys seen so far.

Not for: running the ring (ring.py), the file format (trace_io.py), its checks (ring_verify.py).
"""
import math
from dataclasses import dataclass, field

import numpy as np

from kernels import reference
from kernels.ring_plan import KIND_NAMES, SKIPPED, RingConfig
from kernels.schema import array


@dataclass(frozen=True, eq=False)
class RingTrace:
    config: RingConfig
    q: np.ndarray = array("N, d", "f4", "the inputs as the kernel saw them (after the dtype cast)")
    k: np.ndarray = array("N, d", "f4", "")
    v: np.ndarray = array("N, d", "f4", "")
    out: np.ndarray = array("N, d", "f4", "the ring's output: each rank's O after its last merge, in the input dtype")
    lse: np.ndarray = array("N", "f4", "log-sum-exp per row, M + log L after the last merge")
    held: np.ndarray = array("P, P", "i8", "[rank, step]: whose K/V shard the rank held (the tag that came with it)")
    kinds: np.ndarray = array("P, P, Cr, Cr", "i4", "[rank, step, q chunk, k chunk]: 0 skipped (every key in the "
                              "future), 1 full, 2 diagonal (the causal mask inside)")
    part_m: np.ndarray = array("P, P, Cr, R", "f4", "[rank, step, k chunk, row]: the kernel's max of the row's scores "
                               "against that key chunk; -inf where skipped")
    part_l: np.ndarray = array("P, P, Cr, R", "f4", "the kernel's sum of e^(s - m) there; 0 where skipped")
    merged_m: np.ndarray = array("P, P, R", "f4", "[rank, step, row]: the running max after the step's merge")
    merged_l: np.ndarray = array("P, P, R", "f4", "the running sum after it")
    rows: np.ndarray = array("n", "i8", "the followed rows of the sequence (their O is kept), increasing")
    part_o: np.ndarray = array("n, P, Cr, d", "f4", "[row, step, k chunk]: the kernel's normalized O; 0 where skipped")
    merged_o: np.ndarray = array("n, P, d", "f4", "[row, step]: the running O after the step's merge")
    k_loads: np.ndarray = array("P, P", "i8", "elements of K the kernel loaded at the step (its own counter)")
    sent_bytes: np.ndarray = array("P, P", "i8", "bytes the rank sent on at the step (K/V shard and tag; 0 after the "
                                   "last step)")
    compute_seconds: np.ndarray = array("P, P", "f8", "wall time of the step's kernel launches and merge")
    wait_seconds: np.ndarray = array("P, P", "f8", "wall time then spent waiting for the transfer to finish")
    ref_out: np.ndarray = array("N, d", "f8", "float64 reference")
    ref_lse: np.ndarray = array("N", "f8", "float64 reference")
    sm_scale: float = field()
    device: str = field()  # backend.describe() where rank 0 ran
    transport: str = field()  # "gloo · 4 processes on one host · CPU tensors"
    seconds: float = field()  # wall time of the ring, from the first step to the gathered records

    @property
    def max_abs_err(self) -> float:
        return float(np.max(np.abs(self.out.astype(np.float64) - self.ref_out)))

    def row_slot(self, row: int) -> int | None:
        hits = np.flatnonzero(self.rows == row)
        return int(hits[0]) if hits.size else None

    def nearest_row(self, row: int) -> int:
        """The followed row closest to `row`."""
        return int(self.rows[np.argmin(np.abs(self.rows - row))])


def dims(cfg: RingConfig, n_rows: int) -> dict:
    return {"N": cfg.seq_len, "d": cfg.head_dim, "P": cfg.world_size, "Cr": cfg.chunks_per_rank,
            "R": cfg.rows_per_rank, "n": n_rows}


def build(cfg: RingConfig, records: list, rows, transport: str, device: str, seconds: float) -> RingTrace:
    """The trace from every rank's record (kernels/ring.py, ring_rank), with the float64 reference."""
    recs = sorted(records, key=lambda r: r["rank"])
    n, d = cfg.seq_len, cfg.head_dim
    full = {name: np.zeros((n, d), np.float32) for name in ("q", "k", "v", "out")}
    lse = np.zeros(n, np.float32)
    for rec in recs:
        mine = cfg.rank_rows(rec["rank"])
        for name in full:
            full[name][mine] = rec[name]
        lse[mine] = rec["lse"]
    rows = np.asarray(rows, dtype=np.int64)
    part_o = np.zeros((len(rows), cfg.world_size, cfg.chunks_per_rank, d), np.float32)
    merged_o = np.zeros((len(rows), cfg.world_size, d), np.float32)
    for j, row in enumerate(rows):
        rank, local = cfg.owner(int(row))
        slot = int(np.flatnonzero(recs[rank]["follow"] == local)[0])
        part_o[j], merged_o[j] = recs[rank]["part_o"][slot], recs[rank]["merged_o"][slot]
    stacked = {name: np.stack([rec[name] for rec in recs]) for name in (
        "held", "kinds", "part_m", "part_l", "merged_m", "merged_l", "k_loads", "sent_bytes", "compute_seconds",
        "wait_seconds")}
    ref = reference.attention_rows(full["q"], full["k"], full["v"], cfg.causal, cfg.sm_scale)
    return RingTrace(config=cfg, **full, lse=lse, rows=rows, part_o=part_o, merged_o=merged_o, **stacked,
                     ref_out=ref["out"], ref_lse=ref["lse"], sm_scale=cfg.sm_scale, device=device,
                     transport=transport, seconds=seconds)


def summary(trace: RingTrace) -> str:
    """A few lines for the command line: the check against float64, each rank's steps and bytes."""
    c = trace.config
    lines = [f"ring attention: N {c.seq_len}, d {c.head_dim}, {c.world_size} ranks, {c.layout}, "
             f"{'causal' if c.causal else 'no mask'}, {c.dtype} · {trace.transport} · {trace.device}",
             f"max |out - float64| = {trace.max_abs_err:.3g}"]
    for r in range(c.world_size):
        work = sum(int((trace.kinds[r, t] != SKIPPED).sum()) for t in range(c.world_size))
        lines.append(f"rank {r}: {work} chunk pairs, compute {trace.compute_seconds[r].sum():.3f} s, waited "
                     f"{trace.wait_seconds[r].sum():.3f} s, sent {int(trace.sent_bytes[r].sum())} bytes")
    return "\n".join(lines)


# ---------------------------------------------------------------- one row at one step, for the page
@dataclass(frozen=True)
class Part:
    slot: int  # the key chunk's slot in the held shard
    chunk: int  # the key chunk of the sequence
    kind: int  # SKIPPED, FULL, DIAGONAL
    m: float
    l: float
    o: np.ndarray | None  # (d,) normalized; None where skipped

    @property
    def kind_name(self) -> str:
        return KIND_NAMES[self.kind]


@dataclass(frozen=True)
class StepView:
    step: int
    row: int  # the row of the sequence
    rank: int  # the rank that holds it
    local: int  # its index among the rank's rows
    src: int  # whose K/V shard the rank holds at this step
    parts: tuple  # Part per key chunk of the held shard
    m_old: float  # -inf, l_old 0 before the first step
    l_old: float
    o_old: np.ndarray
    m: float  # after the merge
    l: float
    o: np.ndarray
    keys: np.ndarray  # the keys of the sequence the row has folded in through this step
    m64: float  # float64 over those keys, from the trace's q and k
    l64: float

    @property
    def live(self) -> list:
        return [p for p in self.parts if p.kind != SKIPPED]


def keys_seen(cfg: RingConfig, rank: int, local: int, step: int) -> np.ndarray:
    """The keys of the sequence a row of `rank` (at local index `local`) has folded in after `step`."""
    q_chunk = cfg.rank_chunks(rank)[local // cfg.chunk_len]
    row = q_chunk * cfg.chunk_len + local % cfg.chunk_len
    out = []
    for t in range(step + 1):
        for kc in cfg.rank_chunks(cfg.held(rank, t)):
            kind = cfg.pair_kind(q_chunk, kc)
            keys = np.arange(cfg.chunk_rows(kc).start, cfg.chunk_rows(kc).stop)
            if kind != SKIPPED:
                out.append(keys[keys <= row] if cfg.causal else keys)
    return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


def step_view(trace: RingTrace, step: int, row: int, float64: bool = True) -> StepView:
    """Row `row` (a followed row) at ring step `step`: the numbers the page's merge shows (float64:
    also float64 over the keys it has seen, else NaN there)."""
    c = trace.config
    slot = trace.row_slot(row)
    if slot is None:
        raise ValueError(f"row must be one of the trace's followed rows, got {row}")
    rank, local = c.owner(row)
    q_slot = local // c.chunk_len
    parts = []
    for b, kc in enumerate(c.rank_chunks(int(trace.held[rank, step]))):
        kind = int(trace.kinds[rank, step, q_slot, b])
        parts.append(Part(b, kc, kind, float(trace.part_m[rank, step, b, local]),
                          float(trace.part_l[rank, step, b, local]),
                          None if kind == SKIPPED else trace.part_o[slot, step, b].astype(np.float64)))
    d = c.head_dim
    if step == 0:
        m_old, l_old, o_old = -math.inf, 0.0, np.zeros(d)
    else:
        m_old, l_old = float(trace.merged_m[rank, step - 1, local]), float(trace.merged_l[rank, step - 1, local])
        o_old = trace.merged_o[slot, step - 1].astype(np.float64)
    keys = keys_seen(c, rank, local, step)
    m64 = l64 = math.nan
    if float64:
        s = (trace.k[keys].astype(np.float64) @ trace.q[row].astype(np.float64)) * trace.sm_scale
        m64 = float(s.max())
        l64 = float(np.exp(s - m64).sum())
    return StepView(step, row, rank, local, int(trace.held[rank, step]), tuple(parts), m_old, l_old, o_old,
                    float(trace.merged_m[rank, step, local]), float(trace.merged_l[rank, step, local]),
                    trace.merged_o[slot, step].astype(np.float64), keys, m64, l64)


def merge_view(view: StepView) -> dict:
    """The merge of the view's old state and live partials in float64 (reference.merge_states):
    M, L, each term l_s e^(m_s - M) and the merged O from the shown numbers."""
    m_s = [view.m_old] + [p.m for p in view.live]
    l_s = [view.l_old] + [p.l for p in view.live]
    o_s = np.stack([view.o_old] + [p.o for p in view.live])
    merged = reference.merge_states(np.array(m_s), np.array(l_s))
    return {"M": merged["M"], "L": merged["L"], "terms": merged["terms"], "O": (merged["terms"] / merged["L"]) @ o_s}
