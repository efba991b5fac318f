"""Every equation a page shows, checked with the numbers it shows.

Each check takes the values a page draws (kernels/steps.py's row_update and the traces' own
arrays, never a copy) and tests one equation: the forward's m_new = max(m_old, rowmax(s)),
alpha = e^(m_old - m_new), p = e^(s - m_new), l_new = alpha l_old + rowsum(p), acc_new =
alpha acc_old + p V (FA1: O_new = (l_old alpha O_old + p V) / l_new), out = acc / l, the split-KV
merge; the softmax page's online (m, d) and split-row merge; the backward's D = rowsum(dO o O) and
dS = P o (dP - D). A tolerance comes from the arithmetic the kernel did (float32 rounding of the
terms it summed, and the input dtype where it rounded a value), never from the file's numbers.

Not for: finding the numbers (steps.py) or showing them (viz/).
"""
import math
from dataclasses import dataclass

import numpy as np

from kernels import reference, steps

U32 = 2.0 ** -24  # float32 unit roundoff
UNIT = {"float32": 2.0 ** -24, "float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}  # half an ulp of each dtype
SUBNORMAL = {"float32": 2.0 ** -150, "float16": 2.0 ** -25, "bfloat16": 2.0 ** -134}  # half its smallest spacing
TINY = 1e-30


@dataclass(frozen=True)
class Check:
    """One equation: `got` (the kernel's value, as shown) against `want` (the right-hand side,
    from the other values shown), within `tol`."""
    equation: str
    got: float
    want: float
    tol: float
    where: str = ""

    @property
    def ok(self) -> bool:
        if math.isinf(self.want) or math.isinf(self.got):
            return self.got == self.want
        return abs(self.got - self.want) <= self.tol  # NaN on either side fails

    def __str__(self) -> str:
        return (f"{self.where}: {self.equation}: shown {self.got!r}, its terms give {self.want!r} "
                f"(|difference| {abs(self.got - self.want):.3g}, tolerance {self.tol:.3g})")


def _vector(equation, got, want, tol, where) -> Check:
    """The worst element of a vector equation, as one Check."""
    got, want, tol = (np.asarray(a, dtype=np.float64) for a in (got, want, tol))
    excess = np.abs(got - want) - tol
    worst = int(np.nanargmax(np.where(np.isnan(excess), np.inf, excess))) if excess.size else 0
    if not excess.size:
        return Check(equation, 0.0, 0.0, 0.0, where)
    return Check(f"{equation} [element {worst}]", float(got.flat[worst]), float(want.flat[worst]),
                 float(tol.flat[worst]), where)


# ---------------------------------------------------------------- the forward, one row at one step
def row_checks(trace, step, row: int, where: str = "") -> list[Check]:
    """The update equations of one row at one step, with the numbers the page shows."""
    u = steps.row_update(trace, step, row)
    where = where or f"step {step.index + 1}, row {u.row}"
    big = max(1.0, abs(u.m_new) if math.isfinite(u.m_new) else 0.0, abs(u.m_old) if math.isfinite(u.m_old) else 0.0)
    out = [Check("m_new = max(m_old, rowmax(s))", u.m_new, max(u.m_old, u.rowmax_s), 4 * U32 * big, where)]
    if u.empty:  # no key seen yet: the kernel keeps m = -inf, alpha = 0 (nothing to rescale), l = 0
        out.append(Check("alpha = 0 while the row has seen no key", u.alpha, 0.0, 0.0, where))
    else:
        want = math.exp(u.m_old - u.m_new) if math.isfinite(u.m_old) else 0.0
        out.append(Check("alpha = e^(m_old - m_new)", u.alpha, want, want * (8 * U32 + 4 * U32 * big) + TINY, where))
        live = np.isfinite(u.s)
        p_want = np.where(live, np.exp(np.where(live, u.s, 0.0) - u.m_new), 0.0)
        s_big = np.maximum(big, np.abs(np.where(live, u.s, 0.0)))
        out.append(_vector("p = e^(s - m_new)", u.p, p_want, p_want * (8 * U32 + 4 * U32 * s_big) + TINY, where))
    l_want = u.alpha * u.l_old + u.rowsum_p
    out.append(Check("l_new = alpha l_old + rowsum(p)", u.l_new, l_want, 2 * (u.p.size + 4) * U32 * l_want + TINY,
                     where))
    # acc: what the kernel summed in float32 (alpha acc_old and each p_k v_k), rounded once more to the
    # input dtype where FA1 writes O back to memory
    v = trace.v[step.keys.start: step.keys.stop].astype(np.float64)
    size = np.abs(steps.round_to(u.p, trace.config.dtype)) @ np.abs(v)  # (d,) sum of |p_k v_k|
    if u.normalized:
        want = (u.l_old * u.alpha * u.acc_old + u.pv) / u.l_new if u.l_new > 0 else np.zeros_like(u.pv)
        tol = (4 * (u.p.size + 4) * U32 * (u.l_old * u.alpha * np.abs(u.acc_old) + size) / max(u.l_new, TINY)
               + 2 * UNIT[trace.config.dtype] * np.abs(want) + SUBNORMAL[trace.config.dtype] + TINY)
        out.append(_vector("O_new = (l_old alpha O_old + pV) / l_new", u.acc_new, want, tol, where))
    else:
        want = u.alpha * u.acc_old + u.pv
        tol = 4 * (u.p.size + 4) * U32 * (np.abs(u.alpha * u.acc_old) + size) + TINY
        out.append(_vector("acc_new = alpha acc_old + pV", u.acc_new, want, tol, where))
    return out


def output_checks(trace, q_block: int, row: int) -> list[Check]:
    """out = acc / l after the q-block's last tile (FA2 unsplit; FA1: out is the last O written)."""
    o = steps.output_row(trace, q_block, row)
    unit = UNIT[trace.config.dtype]
    tol = (2 * unit + 8 * U32) * np.abs(o["acc_over_l"]) + SUBNORMAL[trace.config.dtype] + TINY
    return [_vector("out = acc / l", o["out"], o["acc_over_l"], tol,
                    f"q-block {q_block}, row {trace.config.rows(q_block).start + row}, after the last tile")]


def merge_checks(trace, row: int) -> list[Check]:
    """Split-KV: the merge of the splits' partial (m_s, l_s, O_s) of sequence row `row` against the
    kernel's merged out and log-sum-exp."""
    m_s, l_s = trace.split_m[:, row].astype(np.float64), trace.split_l[:, row].astype(np.float64)
    merge = reference.merge_states(m_s, l_s)
    o_s = trace.split_out[:, row].astype(np.float64)  # (S, d)
    want = (merge["terms"] / merge["L"]) @ o_s
    where = f"row {row}, the merge"
    size = (merge["terms"] / merge["L"]) @ np.abs(o_s)
    unit = UNIT[trace.config.dtype]
    lse_want = merge["M"] + math.log(merge["L"])
    return [Check("lse = M + log L", float(trace.lse[row]), lse_want, 8 * U32 * max(1.0, abs(lse_want)), where),
            _vector("O = sum_s (l_s e^(m_s - M) / L) O_s", trace.out[row].astype(np.float64), want,
                    2 * unit * np.abs(want) + 8 * (len(m_s) + 2) * U32 * size + SUBNORMAL[trace.config.dtype] + TINY,
                    where)]


def forward_violations(trace, q_blocks=None, rows=None, label: str = ""):
    """Every check that fails, at every step and row the pages can show (the kept q-blocks)."""
    c = trace.config
    blocks = q_blocks if q_blocks is not None else [int(b) for b in trace.tile_q_blocks]
    if c.loop_order == "fa1":  # one program walks every tile: each tile of the kept q-blocks once
        walk = [s for s in steps.steps(trace, 0) if s.q_block in blocks]
    else:
        walk = [s for i in blocks for s in steps.steps(trace, i)]
    for step in walk:
        for r in (rows if rows is not None else range(len(step.rows))):
            if r < len(step.rows):
                where = f"{label} q-block {step.q_block} step {step.index + 1} row {step.rows.start + r}"
                yield from (x for x in row_checks(trace, step, r, where) if not x.ok)
    if c.kv_splits == 1:
        for i in blocks:
            for r in (rows if rows is not None else range(len(c.rows(i)))):
                if r < len(c.rows(i)):
                    yield from (x for x in output_checks(trace, i, r) if not x.ok)
    else:
        for row in range(c.n_rows):
            yield from (x for x in merge_checks(trace, row) if not x.ok)


# ---------------------------------------------------------------- the softmax page
def softmax_checks(trace) -> list[Check]:
    """The online kernel's running (m, d) chunk by chunk, and the split-row merge, with the
    numbers the softmax page shows."""
    c = trace.config
    x = trace.x.astype(np.float64)
    out, m_old, d_old = [], -math.inf, 0.0
    for ch in range(c.n_chunks):
        chunk = x[ch * c.block: (ch + 1) * c.block]
        m_new, d_new = float(trace.m[ch]), float(trace.d[ch])
        where = f"chunk {ch + 1}"
        out.append(Check("m = max(m_old, max chunk)", m_new, max(m_old, float(chunk.max())),
                         4 * U32 * max(1.0, abs(m_new)), where))
        want = d_old * (math.exp(m_old - m_new) if math.isfinite(m_old) else 0.0) + float(np.exp(chunk - m_new).sum())
        big = max(1.0, float(np.abs(chunk).max()), abs(m_new))
        out.append(Check("d = d_old e^(m_old - m) + sum e^(x - m)", d_new, want,
                         want * (2 * (chunk.size + 4) * U32 + 8 * U32 * big) + TINY, where))
        m_old, d_old = m_new, d_new
    live = np.isfinite(trace.split_m) & (trace.split_l > 0)
    if live.any():
        merge = reference.merge_states(trace.split_m, trace.split_l)
        ref_m = float(x.max())
        ref_l = float(np.exp(x - ref_m).sum())
        big = max(1.0, float(np.abs(x).max()))
        out.append(Check("M = max_s m_s", merge["M"], ref_m, 4 * U32 * big, "split-row merge"))
        out.append(Check("L = sum_s l_s e^(m_s - M)", merge["L"], ref_l,
                         ref_l * (2 * (c.block + 4) * U32 + 8 * U32 * big) + TINY, "split-row merge"))
    return out


# ---------------------------------------------------------------- the backward page
def backward_checks(trace, kv_block: int | None = None) -> list[Check]:
    """D = rowsum(dO o O) of every row (the preprocess kernel's), and dS = P o (dP - D) of every kept
    tile of kv-block `kv_block`'s program (all kept kv-blocks when None)."""
    do, o = trace.do.astype(np.float64), trace.out.astype(np.float64)
    want = np.sum(do * o, axis=1)
    tol = 2 * (do.shape[1] + 4) * U32 * np.sum(np.abs(do * o), axis=1) + TINY
    out = [_vector("D = rowsum(dO o O)", trace.delta, want, tol, "preprocess")]
    blocks = [kv_block] if kv_block is not None else [int(b) for b in trace.tile_kv_blocks]
    for j in blocks:
        slot = trace.tile_slot(j)
        for bstep in steps.backward_steps(trace, j):
            i = bstep.q_block
            rows, cols = len(bstep.rows), len(bstep.keys)
            p = trace.p[slot, i, :rows, :cols].astype(np.float64)
            dp = trace.dp[slot, i, :rows, :cols].astype(np.float64)
            d = trace.delta[bstep.rows.start: bstep.rows.stop].astype(np.float64)[:, None]
            want = p * (dp - d)
            tol = 8 * U32 * np.abs(p) * (np.abs(dp) + np.abs(d)) + TINY
            out.append(_vector("dS = P o (dP - D)", trace.ds[slot, i, :rows, :cols], want, tol,
                               f"kv-block {j} step {bstep.index + 1} (q-block {i})"))
    return out
