"""A ring trace against what its own inputs and its config determine: a file that lies is refused,
and the page's merge equations are checked with the numbers it shows.

`verify(name, trace)` (trace_io.load calls it) checks, with tolerances from float32's and the
input dtype's rounding, never from the file's numbers:
  * the plan: whose shard each rank held at each step, which chunk pairs it computed, skipped or
    masked, the K elements the kernel loads for them and the bytes each rank sends, exactly;
  * skipped pairs: m = -inf, l = 0, O = 0; computed ones finite, l > 0;
  * the inputs are the ones the config generates (unless they were given), the float64 references
    are recomputed, never read;
  * every partial (m, l) against float64 from the file's q and k over that chunk pair's keys, and
    the followed rows' partial O against float64 with v;
  * every merged state: M = max of the old state and the partials, L = sum l_s e^(m_s - M) of the
    file's own numbers, and both against float64 over every key the row has seen; the followed
    rows' merged O against the merge of the file's own partials;
  * out = the last merged O rounded to the input dtype, lse = M + log L, and both against float64.
`step_checks(trace, view)` are the equations the page shows for one row at one step.

Not for: reading the zip (trace_io.py) or the forward's checks (trace_verify.py, whose bounds it shares).
"""
import dataclasses
import math

import numpy as np

from kernels import inputs, reference, steps, truth
from kernels.ring_plan import DIAGONAL, GIVEN, SKIPPED
from kernels.ring_trace import merge_view, step_view
from kernels.trace_verify import OUT_BOUND, _close, _fail, finite

U32 = truth.U32


def verify(name: str, trace):
    """The trace checked as the module docstring says, with its float64 references recomputed."""
    c = trace.config
    a = {f: getattr(trace, f) for f in trace.__dataclass_fields__}
    finite(name, a, ("q", "k", "v", "out", "lse", "merged_m", "merged_l", "merged_o", "part_o", "part_l",
                     "compute_seconds", "wait_seconds"))
    _plan(name, trace)
    _skips(name, trace)
    if c.scenario != GIVEN:
        gen = inputs.attention_inputs(c.seq_len, c.head_dim, c.block_n, c.scenario, c.seed)
        for member, x in zip(("q", "k", "v"), gen, strict=True):
            if not np.array_equal(a[member], steps.round_to(x, c.dtype).astype(np.float32)):
                _fail(name, f"{member} is not the input this config generates (scenario {c.scenario!r}, seed {c.seed})")
    else:
        for member in ("q", "k", "v"):
            if not np.array_equal(a[member], steps.round_to(a[member], c.dtype).astype(np.float32)):
                _fail(name, f"{member} holds values that are not {c.dtype} numbers; the ring ran in {c.dtype}")
    ref = reference.attention_rows(trace.q, trace.k, trace.v, c.causal, trace.sm_scale)
    trace = dataclasses.replace(trace, ref_out=ref["out"], ref_lse=ref["lse"])
    _partials_and_merges(name, trace)
    for row in trace.rows:  # the merge of the file's own numbers (float64 over the keys: checked above, every row)
        for t in range(c.world_size):
            bad = [x for x in step_checks(trace, step_view(trace, t, int(row), float64=False)) if not x.ok]
            if bad:
                _fail(name, f"row {int(row)}, ring step {t + 1}: {bad[0].equation} does not hold (the file says "
                            f"{bad[0].got:.7g}, its own numbers give {bad[0].want:.7g})")
    _outputs(name, trace)
    return trace


def _plan(name: str, trace) -> None:
    c = trace.config
    if not np.array_equal(trace.held, c.all_held()):
        _fail(name, "held is not the ring's order: at step t rank r holds the K/V shard of rank (r - t) mod P")
    if not np.array_equal(trace.kinds, c.all_kinds()):
        _fail(name, "kinds are not the chunk pairs the plan computes, skips and masks for this config")
    rows = trace.rows
    if not (np.all(np.diff(rows) > 0) and rows[0] >= 0 and rows[-1] < c.seq_len):
        _fail(name, f"rows must be increasing rows of the sequence in [0, {c.seq_len - 1}]")
    if not np.array_equal(trace.k_loads, c.k_loads()):
        _fail(name, "k_loads is not what the kernel counts for the chunk pairs of this config")
    if not np.array_equal(trace.sent_bytes, c.sent_bytes()):
        _fail(name, f"sent_bytes is not a K/V shard and its tag ({c.shard_bytes()} + 8 bytes) at every step but the "
                    f"last (0)")
    for member in ("compute_seconds", "wait_seconds"):
        x = getattr(trace, member)
        if not ((x >= 0) & (x < 1e6)).all():
            _fail(name, f"{member} must be seconds between 0 and 1e6")


def skipped_mask(c) -> np.ndarray:
    """(P, P, Cr, R) True where [rank, step, k chunk, row] was skipped."""
    q_slot = np.arange(c.rows_per_rank) // c.chunk_len  # (R,)
    kinds = c.all_kinds()  # (P, P, Cr, Cr) [.., q slot, k slot]
    return np.moveaxis(kinds[:, :, q_slot, :], 3, 2) == SKIPPED


def _skips(name: str, trace) -> None:
    c = trace.config
    skip = skipped_mask(c)
    if np.isnan(trace.part_m).any() or (trace.part_m == np.inf).any():
        _fail(name, "part_m must be a max: finite, or -inf where the pair was skipped")
    if not (np.all(trace.part_m[skip] == -np.inf) and np.all(trace.part_l[skip] == 0)):
        _fail(name, "a skipped chunk pair's partial is m = -inf, l = 0 (nothing was computed)")
    if not (np.isfinite(trace.part_m[~skip]).all() and (trace.part_l[~skip] > 0).all()):
        _fail(name, "a computed chunk pair's partial has a finite m and l > 0 (every row sees a key there)")
    for j, row in enumerate(trace.rows):
        rank, local = c.owner(int(row))
        dead = skip[rank, :, :, local]  # (P, Cr)
        if np.any(trace.part_o[j][dead] != 0):
            _fail(name, f"row {int(row)}: a skipped chunk pair's O is 0")


def _partials_and_merges(name: str, trace) -> None:
    """Each partial against float64 over its chunk pair, each merged state against float64 over the
    keys seen so far, and the merge of the file's own numbers."""
    c = trace.config
    q, k, v = (x.astype(np.float64) for x in (trace.q, trace.k, trace.v))
    cl, d = c.chunk_len, c.head_dim
    tri = np.tril(np.ones((cl, cl), dtype=bool))
    follow = {int(r): j for j, r in enumerate(trace.rows)}
    for rank in range(c.world_size):
        for a, qc in enumerate(c.rank_chunks(rank)):
            qr = c.chunk_rows(qc)
            loc = slice(a * cl, (a + 1) * cl)
            m_run, l_run, tol_run, seen = np.full(cl, -np.inf), np.zeros(cl), np.zeros(cl), 0
            for t in range(c.world_size):
                for b, kc in enumerate(c.rank_chunks(int(trace.held[rank, t]))):
                    kind = trace.kinds[rank, t, a, b]
                    if kind == SKIPPED:
                        continue
                    kr = c.chunk_rows(kc)
                    s = q[qr.start:qr.stop] @ k[kr.start:kr.stop].T * trace.sm_scale  # (c, c)
                    if kind == DIAGONAL:
                        s = np.where(tri, s, -np.inf)
                    mag = np.abs(q[qr.start:qr.stop]) @ np.abs(k[kr.start:kr.stop]).T * trace.sm_scale
                    tol_s = 2 * (d + 8) * U32 * mag.max(axis=1)
                    m64 = s.max(axis=1)
                    e = np.exp(s - m64[:, None])
                    l64 = e.sum(axis=1)
                    where = f"rank {rank}, ring step {t + 1}, q chunk {qc} x k chunk {kc}"
                    big = np.maximum(1.0, np.abs(m64))
                    _close(name, f"{where}: m = the max of q·k (float64)", trace.part_m[rank, t, b, loc], m64,
                           tol_s + 1e-30)
                    _close(name, f"{where}: l = the sum of e^(s − m) (float64)", trace.part_l[rank, t, b, loc], l64,
                           l64 * (4 * tol_s + (cl + 8) * 4 * U32 + 16 * U32 * big) + 1e-30)
                    for i in range(cl):
                        j = follow.get(qr.start + i)
                        if j is not None:
                            o64 = (e[i] / l64[i]) @ v[kr.start:kr.stop]
                            bound = OUT_BOUND[c.dtype] * max(1.0, float(np.abs(o64).max()))
                            _close(name, f"{where}, row {qr.start + i}: O = softmax(s) V (float64)",
                                   trace.part_o[j, t, b], o64, bound)
                    new = np.maximum(m_run, m64)
                    l_run = l_run * np.exp(np.where(np.isfinite(m_run), m_run - new, -np.inf)) + l64 * np.exp(m64 - new)
                    m_run, tol_run, seen = new, np.maximum(tol_run, tol_s), seen + cl
                where = f"rank {rank}, after ring step {t + 1}, q chunk {qc}"
                big = np.maximum(1.0, np.abs(m_run))
                _close(name, f"{where}: M = the max over every key seen (float64)", trace.merged_m[rank, t, loc], m_run,
                       tol_run + 1e-30)
                _close(name, f"{where}: L = the sum over every key seen (float64)", trace.merged_l[rank, t, loc], l_run,
                       l_run * (4 * tol_run + (seen + 8) * 4 * U32 + 16 * U32 * big + 8 * (t + 1) * U32) + 1e-30)


def _outputs(name: str, trace) -> None:
    c = trace.config
    last_m, last_l = np.zeros(c.seq_len), np.zeros(c.seq_len)
    for rank in range(c.world_size):
        mine = c.rank_rows(rank)
        last_m[mine], last_l[mine] = trace.merged_m[rank, -1], trace.merged_l[rank, -1]
    want = last_m + np.log(last_l)
    _close(name, "lse = M + log L after the last step", trace.lse, want, 8 * U32 * np.maximum(1.0, np.abs(want)))
    for j, row in enumerate(trace.rows):
        if not np.array_equal(trace.out[row], steps.round_to(trace.merged_o[j, -1], c.dtype).astype(np.float32)):
            _fail(name, f"row {int(row)}: out is not the last merged O rounded to {c.dtype}")
    err = float(np.max(np.abs(trace.out.astype(np.float64) - trace.ref_out)))
    scale = max(1.0, float(np.abs(trace.ref_out).max()))
    if not err <= bound(c) * scale:
        _fail(name, f"out differs from the float64 attention of its own q, k, v by {err:.3g} (a {c.dtype} ring stays "
                    f"within {bound(c) * scale:.2g})")
    lse_err = np.abs(trace.lse.astype(np.float64) - trace.ref_lse)
    if not (lse_err <= 1e-5 * np.maximum(1.0, np.abs(trace.ref_lse))).all():
        _fail(name, f"lse differs from the float64 log-sum-exp by up to {lse_err.max():.3g}")


def bound(c) -> float:
    """max |ring - float64| / max(1, |out|): the single-device kernel's bound for the dtype (each
    partial O meets it, the merge is a convex combination) plus the float32 rounding of P merges."""
    return OUT_BOUND[c.dtype] + 8 * c.world_size * (c.chunks_per_rank + 1) * U32


# ---------------------------------------------------------------- the page's equations
def step_checks(trace, view) -> list:
    """The merge the page shows for one row at one step, with the numbers it shows."""
    where = f"rank {view.rank}, row {view.row}, ring step {view.step + 1}"
    merged = merge_view(view)
    m_s = [view.m_old] + [p.m for p in view.live]
    big = max(1.0, *(abs(x) for x in m_s if math.isfinite(x)))
    out = [truth.Check("M = max(m_old, m_s)", view.m, max(m_s), 4 * U32 * big, where)]
    spread = max((abs(x - merged["M"]) for x in m_s if math.isfinite(x)), default=0.0)
    out.append(truth.Check("L = l_old e^(m_old - M) + sum_s l_s e^(m_s - M)", view.l, merged["L"],
                           merged["L"] * (len(m_s) + 4) * 4 * U32 * (1 + spread + big) + truth.TINY, where))
    o_s = np.stack([view.o_old] + [p.o for p in view.live])
    size = (merged["terms"] / merged["L"]) @ np.abs(o_s)
    out.append(truth._vector("O = sum_s (l_s e^(m_s - M) / L) O_s", view.o, merged["O"],
                             8 * (len(m_s) + 2) * U32 * size * (1 + spread + big) + truth.TINY, where))
    if math.isnan(view.m64):  # a view without float64 (the loader checks it over every row itself)
        return out
    keys = len(view.keys)
    q, k = trace.q[view.row].astype(np.float64), trace.k[view.keys].astype(np.float64)
    tol_s = 2 * (trace.config.head_dim + 8) * U32 * float((np.abs(k) @ np.abs(q)).max()) * trace.sm_scale
    out.append(truth.Check("M = max of s over the keys seen (float64)", view.m, view.m64, tol_s + truth.TINY, where))
    out.append(truth.Check("L = sum of e^(s - M) over the keys seen (float64)", view.l, view.l64,
                           view.l64 * (4 * tol_s + (keys + 8) * 4 * U32 + 16 * U32 * big
                                       + 8 * (view.step + 1) * U32) + truth.TINY, where))
    return out
