"""A loaded trace's numbers against what its own inputs determine: a file that lies is refused.

trace_io.py reads a file's structure (members, dtypes, shapes, bounds); this module checks its
meaning, with tolerances from the dtype's and float32's rounding, never from the file's numbers:
  * the inputs: q, k, v (dO, the softmax row) must be the ones the config generates (a typed input,
    which no seed generates, is taken as given);
  * the float64 references are recomputed from the inputs, never read from the file;
  * forward: every row's running max and sum after every kv-block its program folded in, against
    float64 from q, k (each split's program from its own first key); alpha = e^(m_old - m_new) of the
    file's own m; the kept tiles' s against q.k, p = e^(s - m_new), acc_after = alpha acc_before + p V
    (FA1: O renormalized), acc_before the program's previous acc; out = acc / l, lse = m + log l; out
    against float64 within the dtype's bound; split-KV's partials against the state and their merge;
  * backward: out, lse, D, P, dP against float64 from the inputs, dS = P o (dP - D), the dK, dV
    accumulators step by step, the gradients within the dtype's bound;
  * softmax: the row, the running (m, d), y, the split-row partials, the overflow demonstrations;
  * the counters: exactly what the traffic model says for the config.
Every refusal is a ValueError naming the file and the first thing that does not hold.

Not for: reading the zip (trace_io.py) or the page's equations (truth.py, which shares tolerances).
"""
import dataclasses

import numpy as np

from kernels import inputs, masks, reference, steps, traffic, truth
from kernels.trace import expected_visits

U32 = truth.U32
# max |kernel - float64| of a kernel output, per dtype (FA1's O goes through memory once per kv-block)
OUT_BOUND = {"float32": 1e-5, "float16": 4e-3, "bfloat16": 3e-2}
GRAD_BOUND = {"float32": 1e-4, "float16": 4e-3, "bfloat16": 3e-2}
GENERATED = ("randn", "large", "increasing", "decreasing")  # scenarios whose inputs the config determines


def _fail(name: str, what: str) -> None:
    raise ValueError(f"{name}: {what}")


def _cast(x: np.ndarray, dtype: str) -> np.ndarray:
    """x as the kernel saw it: rounded to the input dtype, back in float32."""
    return steps.round_to(x, dtype).astype(np.float32)


def out_bound(cfg) -> float:
    return OUT_BOUND[cfg.dtype] * (cfg.n_kv_blocks if cfg.loop_order == "fa1" else 1)


# ---------------------------------------------------------------- structure, as the kernel writes it
def finite(name: str, arrays: dict, members) -> None:
    for m in members:
        if not np.isfinite(arrays[m]).all():
            _fail(name, f"{m} holds NaN or inf; the kernel's {m} is finite")


def _check_blocks_list(name: str, member: str, blocks: np.ndarray, n_max: int) -> None:
    if not (np.all(np.diff(blocks) > 0) and blocks[0] >= 0 and blocks[-1] < n_max):
        _fail(name, f"{member} must be increasing block indices in [0, {n_max - 1}], got "
                    f"{blocks[:8].tolist()}{'...' if blocks.size > 8 else ''}")


def _check_visits(name: str, order: np.ndarray, expected: np.ndarray, what: str) -> None:
    if not np.array_equal(order >= 0, expected >= 0) or (order < -1).any():
        _fail(name, "visit_order marks other tiles than the kernel computes for this config")
    if not np.array_equal(order, expected):
        _fail(name, f"visit_order is not the order in which {what} walks its tiles")


def _nan_outside(name: str, member: str, a: np.ndarray, computed: np.ndarray, allow_neg_inf: bool) -> None:
    """NaN exactly outside `computed`; inside, finite (or -inf where masked)."""
    if np.isnan(a[~computed]).sum() != (~computed).sum():
        _fail(name, f"{member} holds numbers where the kernel computed nothing")
    inside = a[computed]
    bad = np.isnan(inside) | (inside == np.inf) | ((inside == -np.inf) if not allow_neg_inf else False)
    if bad.any():
        _fail(name, f"{member} holds NaN or inf where the kernel computed finite values")


def _valid(n_blocks: int, per: int, total: int) -> np.ndarray:
    return (np.arange(n_blocks)[:, None] * per + np.arange(per)[None, :]) < total  # (blocks, per)


def _close(name: str, what: str, got, want, tol) -> None:
    """Every element of got within tol of want (infinities equal), else the worst one, named."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    tol = np.broadcast_to(np.asarray(tol, dtype=np.float64), got.shape)
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    with np.errstate(invalid="ignore"):
        bad = ~same & ~(np.abs(got - want) <= tol)
    if bad.any():
        k = np.unravel_index(int(np.argmax(bad)), got.shape)
        _fail(name, f"{what} does not hold: at {tuple(int(x) for x in k)} the file says {got[k]:.7g}, its own "
                    f"inputs give {want[k]:.7g} (tolerance {tol[k]:.2g})")


def _inputs(name: str, c, arrays: dict, do_seed: int | None = None) -> None:
    """q, k, v (and dO) are the ones the config generates, rounded to its dtype."""
    if c.scenario not in GENERATED:
        return
    gen = list(inputs.make_inputs(c)) + ([inputs.make_do(c, do_seed)] if do_seed is not None else [])
    for member, x in zip(("q", "k", "v", "do"), gen, strict=False):
        if not np.array_equal(arrays[member], _cast(x, c.dtype)):
            _fail(name, f"{member} is not the input this config generates (scenario {c.scenario!r}, seed {c.seed})")


# ---------------------------------------------------------------- forward
def forward(name: str, trace):
    """The trace checked as the module docstring says, with its float64 references recomputed."""
    c = trace.config
    a = {f: getattr(trace, f) for f in trace.__dataclass_fields__}
    finite(name, a, ("q", "k", "v", "out", "lse"))
    kinds = c.tile_kinds()  # (Tq, Tk): the kernel's loop bounds for this config
    visited = kinds != masks.SKIPPED
    _check_visits(name, a["visit_order"], expected_visits(c), "the kernel")
    if a["tile_kind"] is not None and not np.array_equal(a["tile_kind"], kinds):
        bad = np.argwhere(a["tile_kind"] != kinds)[0]
        _fail(name, f"tile_kind says tile {tuple(int(x) for x in bad)} ran {a['tile_kind'][tuple(bad)]}; the kernel's "
                    f"loop bounds run it {int(kinds[tuple(bad)])} (0 skipped, 1 whole, 2 masked)")
    rows, cols = _valid(c.n_q_blocks, c.block_m, c.n_rows), _valid(c.n_kv_blocks, c.block_n, c.seq_len)
    state_ok = visited[:, :, None] & rows[:, None, :]  # (Tq, Tk, block_m)
    split = c.kv_splits > 1
    _nan_outside(name, "m", a["m"], state_ok, split or c.masks().intervals)
    for m in ("l", "alpha"):
        _nan_outside(name, m, a[m], state_ok, False)
    kept = a["tile_q_blocks"]
    _check_blocks_list(name, "tile_q_blocks", kept, c.n_q_blocks)
    tile_ok = visited[kept][:, :, None, None] & rows[kept][:, None, :, None] & cols[None, :, None, :]
    _nan_outside(name, "s", a["s"], tile_ok, not c.masks().default)
    _nan_outside(name, "p", a["p"], tile_ok, False)
    acc_ok = np.broadcast_to((visited[kept][:, :, None] & rows[kept][:, None, :])[..., None], a["acc_before"].shape)
    for m in ("acc_before", "acc_after"):
        _nan_outside(name, m, a[m], acc_ok, False)
    if split:
        finite(name, a, ("split_l", "split_out"))
        if np.isnan(a["split_m"]).any() or (a["split_m"] == np.inf).any():
            _fail(name, "split_m must be a max (finite, or -inf where a split saw no key)")
    _inputs(name, c, a)
    model = trace.model_counters()
    for key in c.counter_keys():
        if trace.counters.get(key) != model[key]:
            _fail(name, f"counter {key} is {trace.counters.get(key)}; the kernel counts {model[key]} for this config")
    ref = reference.attention_rows(a["q"], a["k"], a["v"], c.causal, trace.sm_scale, masks=c.masks())
    trace = dataclasses.replace(trace, ref_out=ref["out"], ref_lse=ref["lse"])
    _forward_state(name, trace)
    _forward_tiles(name, trace)
    err = float(np.max(np.abs(trace.out.astype(np.float64) - ref["out"])))
    scale = max(1.0, float(np.abs(ref["out"]).max()))
    if not err <= out_bound(c) * scale:
        _fail(name, f"out differs from the float64 attention of its own q, k, v by {err:.3g} (a {c.dtype} kernel "
                    f"stays within {out_bound(c) * scale:.2g})")
    lse_err = np.abs(trace.lse.astype(np.float64) - ref["lse"])
    if not (lse_err <= 1e-5 * np.maximum(1.0, np.abs(ref["lse"]))).all():
        _fail(name, f"lse differs from the float64 log-sum-exp by up to {lse_err.max():.3g}")
    if split:
        _split_partials(name, trace)
    return trace


def _forward_state(name: str, trace) -> None:
    """m and l of every row after every tile against float64 from q, k; alpha from the file's m."""
    c = trace.config
    q, k = trace.q.astype(np.float64), trace.k.astype(np.float64)
    for i in range(c.n_q_blocks):
        r = c.rows(i)
        s = q[r.start:r.stop] @ k.T * trace.sm_scale  # (rows, N)
        mag = np.abs(q[r.start:r.stop]) @ np.abs(k).T * trace.sm_scale
        s = np.where(c.masks().allowed(r.start, r.stop), s, -np.inf)
        tol_s = 2 * (c.head_dim + 8) * U32 * mag.max(axis=1)  # (rows,) the dot's float32 rounding
        for split in range(c.kv_splits):
            lo, hi = c.split_range(split) if c.loop_order != "fa1" else (0, c.n_kv_blocks)
            m64 = np.full(len(r), -np.inf)
            l64 = np.zeros(len(r))
            m_old = np.full(len(r), -np.inf)
            seen = 0
            for j in range(lo, hi):
                if trace.visit_order[i, j] < 0:
                    continue
                keys = c.keys(j)
                blk = s[:, keys.start:keys.stop]
                new = np.maximum(m64, blk.max(axis=1))
                with np.errstate(invalid="ignore"):
                    l64 = np.where(np.isfinite(new), l64 * np.exp(np.where(np.isfinite(m64), m64 - new, -np.inf))
                                   + np.exp(blk - np.where(np.isfinite(new), new, 0.0)[:, None]).sum(axis=1), 0.0)
                m64 = new
                seen += len(keys)
                m_f = trace.m[i, j, :len(r)].astype(np.float64)
                l_f = trace.l[i, j, :len(r)].astype(np.float64)
                a_f = trace.alpha[i, j, :len(r)].astype(np.float64)
                where = f"q-block {i}, kv-block {j}"
                _close(name, f"{where}: m = the running max of q·k (float64)", m_f, m64, tol_s + 1e-30)
                big = np.maximum(1.0, np.abs(np.where(np.isfinite(m_f), m_f, 0.0)))
                _close(name, f"{where}: l = the running sum of e^(s − m) (float64)", l_f, l64,
                       l64 * (4 * tol_s + (seen + 8) * 4 * U32 + 16 * U32 * big) + 1e-30)
                with np.errstate(invalid="ignore", over="ignore"):
                    want = np.where(np.isfinite(m_old) & np.isfinite(m_f), np.exp(m_old - m_f), 0.0)
                _close(name, f"{where}: alpha = e^(m_old − m_new) of the file's own m", a_f, want,
                       want * (8 * U32 + 8 * U32 * big) + 1e-30)
                m_old = m_f


def _forward_tiles(name: str, trace) -> None:
    """The kept tiles step by step: s, p, acc before and after, and out after the last tile."""
    c = trace.config
    q, k, v = (x.astype(np.float64) for x in (trace.q, trace.k, trace.v))
    for i in (int(b) for b in trace.tile_q_blocks):
        slot = trace.tile_slot(i)
        prev_acc = None
        for step in (s for s in steps.steps(trace, i) if s.q_block == i):
            r, kk = step.rows, step.keys
            rows, cols = len(r), len(kk)
            where = f"q-block {i}, kv-block {step.kv_block}"
            s_f = trace.s[slot, step.kv_block, :rows, :cols].astype(np.float64)
            s64 = q[r.start:r.stop] @ k[kk.start:kk.stop].T * trace.sm_scale
            mag = np.abs(q[r.start:r.stop]) @ np.abs(k[kk.start:kk.stop]).T * trace.sm_scale
            live = np.isfinite(s_f)
            if not np.array_equal(live, c.masks().allowed(r.start, r.stop)[:, kk.start:kk.stop]):
                _fail(name, f"{where}: s is masked where the mask ({c.masks().describe()}) does not mask, or the "
                            f"other way round")
            _close(name, f"{where}: s = q·k × scale", np.where(live, s_f, 0.0), np.where(live, s64, 0.0),
                   2 * (c.head_dim + 8) * U32 * mag + 1e-30)
            acc_before = trace.acc_before[slot, step.kv_block, :rows].astype(np.float64)
            if step.first:
                if np.any(acc_before != 0):
                    _fail(name, f"{where}: acc before a program's first tile must be 0 (FA1: O starts at 0)")
            elif prev_acc is not None and not np.array_equal(acc_before, prev_acc):
                _fail(name, f"{where}: acc before the tile is not the acc the program wrote after its previous tile")
            bad = [x for r_ in range(rows) for x in truth.row_checks(trace, step, r_, where) if not x.ok]
            if bad:
                _fail(name, f"{where}: {bad[0].equation} does not hold (the file says {bad[0].got:.7g}, its own "
                            f"numbers give {bad[0].want:.7g})")
            prev_acc = trace.acc_after[slot, step.kv_block, :rows].astype(np.float64)
        if c.kv_splits == 1:
            bad = [x for r_ in range(len(c.rows(i))) for x in truth.output_checks(trace, i, r_) if not x.ok]
            if bad:
                _fail(name, f"q-block {i}: {bad[0].equation} does not hold after the last tile (out {bad[0].got:.7g}, "
                            f"acc / l {bad[0].want:.7g})")


def _split_partials(name: str, trace) -> None:
    """Each split's partial (m, l, O) is its program's state after its last tile, and they merge to out."""
    c = trace.config
    for i in range(c.n_q_blocks):
        r = c.rows(i)
        for split in range(c.kv_splits):
            lo, hi = c.split_range(split)
            js = [j for j in range(lo, hi) if trace.visit_order[i, j] >= 0]
            m_s, l_s = trace.split_m[split, r.start:r.stop], trace.split_l[split, r.start:r.stop]
            if not js:
                if not (np.all(m_s == -np.inf) and np.all(l_s == 0)):
                    _fail(name, f"split {split} of q-block {i} computed no tile: its partial is m = -inf, l = 0")
                continue
            last = (trace.m[i, js[-1], :len(r)], trace.l[i, js[-1], :len(r)])
            if not (np.array_equal(m_s, last[0]) and np.array_equal(l_s, last[1])):
                _fail(name, f"split {split}'s partial (m, l) of q-block {i} is not its program's state after its last tile")
    for row in range(c.n_rows):
        if not np.any(np.isfinite(trace.split_m[:, row]) & (trace.split_l[:, row] > 0)):
            _fail(name, f"row {row}: no split holds a key of it, so the partials cannot be merged")
        bad = [x for x in truth.merge_checks(trace, row) if not x.ok]
        if bad:
            _fail(name, f"row {row}: the merge {bad[0].equation} does not hold (the file says {bad[0].got:.7g}, its "
                        f"partials give {bad[0].want:.7g})")


# ---------------------------------------------------------------- backward
def backward(name: str, trace):
    c = trace.config
    a = {f: getattr(trace, f) for f in trace.__dataclass_fields__}
    finite(name, a, ("q", "k", "v", "do", "out", "lse", "delta", "dq", "dk", "dv"))
    visited = traffic.visited_tiles(c.seq_len, c.block_m, c.block_n, c.causal).T  # (Tk, Tq)
    _check_visits(name, a["visit_order"], np.where(visited, np.cumsum(visited, axis=1) - 1, -1), "a kv-block's program")
    rows, cols = _valid(c.n_q_blocks, c.block_m, c.seq_len), _valid(c.n_kv_blocks, c.block_n, c.seq_len)
    kept = a["tile_kv_blocks"]
    _check_blocks_list(name, "tile_kv_blocks", kept, c.n_kv_blocks)
    tile_ok = visited[kept][:, :, None, None] & rows[None, :, :, None] & cols[kept][:, None, None, :]
    for m in ("p", "dp", "ds"):
        _nan_outside(name, m, a[m], tile_ok, False)
    acc_ok = np.broadcast_to((visited[kept][:, :, None] & cols[kept][:, None, :])[..., None], a["dk_acc"].shape)
    for m in ("dk_acc", "dv_acc"):
        _nan_outside(name, m, a[m], acc_ok, False)
    _inputs(name, c, a, do_seed=trace.do_seed)
    model = trace.model_counters()
    for key in traffic.BACKWARD_COUNTERS:
        if trace.counters.get(key) != model[key]:
            _fail(name, f"counter {key} is {trace.counters.get(key)}; the kernels count {model[key]} for this config")
    q, k, v, do = (x.astype(np.float64) for x in (trace.q, trace.k, trace.v, trace.do))
    fwd = reference.attention_rows(q, k, v, c.causal, trace.sm_scale)
    scale = max(1.0, float(np.abs(fwd["out"]).max()))
    if not float(np.max(np.abs(trace.out - fwd["out"]))) <= OUT_BOUND[c.dtype] * scale:
        _fail(name, "out is not the forward of its own q, k, v")
    _close(name, "lse = the float64 log-sum-exp", trace.lse, fwd["lse"], 1e-5 * np.maximum(1.0, np.abs(fwd["lse"])))
    out64 = trace.out.astype(np.float64)
    _close(name, "D = rowsum(dO o O) of the file's own dO and O", trace.delta, np.sum(do * out64, axis=1),
           2 * (c.head_dim + 4) * U32 * np.sum(np.abs(do * out64), axis=1) + 1e-30)
    ref = reference.attention_backward_rows(q, k, v, do, c.causal, trace.sm_scale)
    trace = dataclasses.replace(trace, ref_delta=ref["d"], ref_dq=ref["dq"], ref_dk=ref["dk"],
                                ref_dv=ref["dv"])
    _backward_tiles(name, trace)
    for g in ("dq", "dk", "dv"):
        want = getattr(trace, "ref_" + g)
        bound = GRAD_BOUND[c.dtype] * max(1.0, float(np.abs(want).max()))
        err = float(np.max(np.abs(getattr(trace, g) - want)))
        if not err <= bound:
            _fail(name, f"{g} differs from the float64 gradient of its own inputs by {err:.3g} (bound {bound:.2g})")
    return trace


def _backward_tiles(name: str, trace) -> None:
    """Each kept kv-block's program step by step: P and dP against float64 from the inputs and the
    file's lse, dS = P o (dP - D), and the dK, dV accumulators adding up to the gradients."""
    c = trace.config
    q, k, v, do = (x.astype(np.float64) for x in (trace.q, trace.k, trace.v, trace.do))
    bad = [x for x in truth.backward_checks(trace) if not x.ok]
    if bad:
        _fail(name, f"{bad[0].where}: {bad[0].equation} does not hold (the file says {bad[0].got:.7g}, its own "
                    f"numbers give {bad[0].want:.7g})")
    for j in (int(b) for b in trace.tile_kv_blocks):
        slot = trace.tile_slot(j)
        kk = c.keys(j)
        dk = np.zeros((len(kk), c.head_dim))
        dv = np.zeros((len(kk), c.head_dim))
        for b in steps.backward_steps(trace, j):
            r = b.rows
            where = f"kv-block {j}, q-block {b.q_block}"
            s64 = q[r.start:r.stop] @ k[kk.start:kk.stop].T * trace.sm_scale
            if c.causal:
                seen = np.arange(kk.start, kk.stop)[None, :] <= np.arange(r.start, r.stop)[:, None]
                s64 = np.where(seen, s64, -np.inf)
            mag = np.abs(q[r.start:r.stop]) @ np.abs(k[kk.start:kk.stop]).T * trace.sm_scale
            p_f = trace.p[slot, b.q_block, :len(r), :len(kk)].astype(np.float64)
            p64 = np.exp(s64 - trace.lse[r.start:r.stop].astype(np.float64)[:, None])
            big = 1 + np.abs(s64[np.isfinite(s64)]).max(initial=0)
            _close(name, f"{where}: P = e^(s − lse)", p_f, p64, p64 * (4 * (c.head_dim + 8) * U32 * mag + 16 * U32 * big)
                   + 1e-30)
            dp64 = do[r.start:r.stop] @ v[kk.start:kk.stop].T
            _close(name, f"{where}: dP = dO Vᵀ", trace.dp[slot, b.q_block, :len(r), :len(kk)], dp64,
                   2 * (c.head_dim + 8) * U32 * (np.abs(do[r.start:r.stop]) @ np.abs(v[kk.start:kk.stop]).T) + 1e-30)
            p_low = steps.round_to(p_f, c.dtype)
            ds_low = steps.round_to(trace.ds[slot, b.q_block, :len(r), :len(kk)], c.dtype)
            dv_mag = np.abs(dv) + np.abs(p_low).T @ np.abs(do[r.start:r.stop])
            dk_mag = np.abs(dk) + trace.sm_scale * np.abs(ds_low).T @ np.abs(q[r.start:r.stop])
            dv = dv + p_low.T @ do[r.start:r.stop]
            dk = dk + trace.sm_scale * ds_low.T @ q[r.start:r.stop]
            n = len(r) + 8
            _close(name, f"{where}: dV_j += Pᵀ dO", trace.dv_acc[slot, b.q_block, :len(kk)], dv, 4 * n * U32 * dv_mag
                   * (b.index + 1) + 1e-30)
            _close(name, f"{where}: dK_j += scale dSᵀ Q", trace.dk_acc[slot, b.q_block, :len(kk)], dk,
                   4 * n * U32 * dk_mag * (b.index + 1) + 1e-30)
        unit = truth.UNIT[c.dtype]
        _close(name, f"kv-block {j}: dK is the last accumulator, rounded to {c.dtype}", trace.dk[kk.start:kk.stop],
               trace.dk_acc[slot, steps.backward_steps(trace, j)[-1].q_block, :len(kk)], 2 * unit * np.abs(dk) + 1e-6)
        _close(name, f"kv-block {j}: dV is the last accumulator, rounded to {c.dtype}", trace.dv[kk.start:kk.stop],
               trace.dv_acc[slot, steps.backward_steps(trace, j)[-1].q_block, :len(kk)], 2 * unit * np.abs(dv) + 1e-6)


# ---------------------------------------------------------------- softmax
def softmax(name: str, trace):
    c = trace.config
    x = trace.x.astype(np.float64)
    if c.scenario in GENERATED and not np.array_equal(trace.x, inputs.softmax_row(c.length, c.scenario, c.seed)):
        _fail(name, f"x is not the row this config generates (scenario {c.scenario!r}, seed {c.seed})")
    base = inputs.softmax_row(c.length, "randn", c.seed)
    if not np.array_equal(trace.x100, (base * 100).astype(np.float32)):
        _fail(name, "x100 is not the row × 100")
    if not np.array_equal(trace.x16, (8 + 4 * base).astype(np.float16).astype(np.float32)):
        _fail(name, "x16 is not the float16 row 8 + 4x")
    online = reference.softmax_online(x[None, :], c.block)
    trace = dataclasses.replace(trace, ref_m=online["m_traj"][0], ref_d=online["d_traj"][0], ref_y=online["y"][0],
                                ref100=reference.softmax_safe(trace.x100[None, :])["y"][0],
                                ref16=reference.softmax_safe(trace.x16[None, :])["y"][0])
    bad = [ch for ch in truth.softmax_checks(trace) if not ch.ok]
    if bad:
        _fail(name, f"{bad[0].where}: {bad[0].equation} does not hold (the file says {bad[0].got:.7g}, the row gives "
                    f"{bad[0].want:.7g})")
    _close(name, "y = the online softmax of x", trace.y, trace.ref_y, 1e-5 * np.abs(trace.ref_y) + 1e-7)
    for s in range(len(trace.split_m)):  # each slice's partial (m, l) of the split-row kernel
        sl = x[s * c.block: (s + 1) * c.block]
        if sl.size == 0:
            if not (trace.split_m[s] == -np.inf and trace.split_l[s] == 0):
                _fail(name, f"slice {s} lies past the row: its partial is m = -inf, l = 0")
            continue
        _close(name, f"slice {s}: m_s = max of the slice", trace.split_m[s], sl.max(), 4 * U32 * max(1, abs(sl.max())))
        l_s = float(np.exp(sl - sl.max()).sum())
        _close(name, f"slice {s}: l_s = sum e^(x − m_s)", trace.split_l[s], l_s,
               l_s * (2 * (sl.size + 4) * U32 + 8 * U32 * max(1.0, float(np.abs(sl).max()))))
    for k, variant in enumerate(("naive", "safe", "online")):  # the overflow demonstrations
        _overflow(name, f"{variant} on x × 100 (float32)", trace.out100[k], trace.x100, trace.ref100, variant, 88.72)
        _overflow(name, f"{variant} on the float16 row (float16 arithmetic)", trace.out16[k], trace.x16, trace.ref16,
                  variant, 11.09, rel=4e-3)
    _overflow(name, "naive on the float16 row (float32 arithmetic, y stored as float16)", trace.out16_fp32, trace.x16,
              trace.ref16, "naive", 88.72, rel=1e-3)
    want = _softmax_counts(c, trace.split_path)
    for key, value in want.items():
        if trace.counts.get(key) != value:
            _fail(name, f"counter {key} is {trace.counts.get(key)}; the kernel counts {value} for this row")
    return trace


def _overflow(name: str, what: str, y, x, ref, variant: str, limit: float, rel: float = 2e-5) -> None:
    """A softmax output of an overflow demonstration: naive breaks exactly when some e^x overflows
    (x past `limit`): NaN where e^x was inf, else 0; otherwise (and safe, online always) it is the
    softmax, within the arithmetic's rounding."""
    y = np.asarray(y, dtype=np.float64)
    if variant == "naive" and float(np.max(x)) > limit:
        over = x > limit
        if not (np.all(np.isnan(y[over]) | np.isinf(y[over])) and np.all((y[~over] == 0) | np.isnan(y[~over]))):
            _fail(name, f"{what}: e^x overflows there, so naive gives NaN where it did and 0 elsewhere")
        return
    _close(name, f"{what} = the softmax of the row", y, ref, rel * np.abs(ref) + rel * 1e-3 + 1e-7)


def _softmax_counts(c, split_path: str) -> dict:
    out = {}
    for v in traffic.SOFTMAX_VARIANTS:
        if v == "single_pass" and c.length > 32768:
            continue
        launches = 2 if v == "split_row" and split_path == "two launches" else 1
        cnt = traffic.softmax(v, 1, c.length, launches=launches)
        out[f"{v}_loads"], out[f"{v}_stores"] = cnt["loads"], cnt["stores"]
    return out
