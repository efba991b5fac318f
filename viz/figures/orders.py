"""FlashAttention-1 against FlashAttention-2: the same tiles in both loop orders, stepped together.

A step is one tile in each order. FA2's programs (one per q-block) run in parallel on a GPU; here
they are shown one after another, q-block by q-block, so both walks cover the same tiles in the
same number of steps. What each order moves so far is derived from its walk (per tile: what the
kernel loads and stores there); after the last step it equals the kernel's own counters.

Not for: the single-order stepping (viz/figures/attention.py).
"""
import numpy as np

from kernels import traffic
from viz.figures import attention as fa
from viz.figures import grid

NAMES = {"fa2": "FlashAttention-2", "fa1": "FlashAttention-1"}
ON_CHIP = {
    "fa2": "on chip for a whole q-block: Q<sub>i</sub>, acc, m, ℓ · streaming: K<sub>j</sub>, V<sub>j</sub> · "
           "O written once, after the last tile",
    "fa1": "on chip for a whole kv-block: K<sub>j</sub>, V<sub>j</sub> · every tile reads Q<sub>i</sub>, "
           "O<sub>i</sub>, m, ℓ from memory and writes O<sub>i</sub>, m, ℓ back",
}

ON_CHIP_SHORT = {"fa2": "on chip: Q<sub>i</sub>, acc, m, ℓ · K<sub>j</sub>, V<sub>j</sub> stream",
                 "fa1": "on chip: K<sub>j</sub>, V<sub>j</sub> · Q<sub>i</sub>, O<sub>i</sub>, m, ℓ through memory"}


def walk(trace) -> list[tuple[int, int]]:
    """The tiles (q-block, kv-block) in the order this order computes them (FA2: q-block by q-block)."""
    order = trace.visit_order
    if trace.config.loop_order == "fa1":
        i, j = np.nonzero(order >= 0)
        keys = order[i, j]
        idx = np.argsort(keys)
        return [(int(i[k]), int(j[k])) for k in idx]
    return [(i, int(j)) for i in range(order.shape[0]) for j in trace.steps(i)]


def walk_states(trace, step: int) -> np.ndarray:
    """(Tq, Tk) tile states after `step` of the walk: done, current, pending, skipped."""
    states = np.full(trace.visit_order.shape, "skipped", dtype=object)
    for k, (i, j) in enumerate(walk(trace)):
        states[i, j] = "done" if k < step else ("current" if k == step else "pending")
    return states


def order_grid_figure(trace, step: int, height: int = 300):
    c = trace.config
    tiles = walk(trace)
    states = walk_states(trace, step)
    text = np.full(states.shape, "", dtype=object)
    if max(states.shape) <= grid.MAX_NUMBERED:
        for k, (i, j) in enumerate(tiles):
            text[i, j] = str(k + 1)
    i, j = tiles[step]
    if c.loop_order == "fa1":
        shapes = [("K_j, V_j on chip", "col", j, "solid"), ("Q_i, O_i through memory", "row", i, "dot")]
    else:
        shapes = [("Q_i on chip", "row", i, "solid"), ("K_j, V_j streaming", "col", j, "dot")]
    return grid.tile_grid(c, states, text.tolist(), shapes, title=f"{NAMES[c.loop_order]}: the walk", height=height)


def traffic_so_far(trace, step: int) -> dict:
    """Elements moved through step `step` of the walk (kernels/traffic.flash_walk, derived from the
    walk; at the last step it equals the kernel's counters)."""
    c = trace.config
    parts = traffic.flash_walk(c.loop_order, walk(trace), c.seq_len, c.head_dim, c.block_m, c.block_n)[: step + 1]
    return {"loads": sum(p["loads"] for p in parts), "stores": sum(p["stores"] for p in parts)}


def counted(trace) -> dict:
    return traffic.summed(trace.counters, trace.config.counter_keys())


def row_update(trace, step: int, q_block: int) -> int | None:
    """The walk step of the latest update of q_block's rows at or before `step`, in the form the
    attention figures take (FA2: the step within its q-block; FA1: the program's step); None when
    the walk has not reached q_block yet."""
    tiles = walk(trace)
    done = [k for k in range(step + 1) if tiles[k][0] == q_block]
    if not done:
        return None
    k = done[-1]
    if trace.config.loop_order == "fa1":
        return k
    return int(np.flatnonzero(trace.steps(q_block) == tiles[k][1])[0])


def fa1_forms(trace, step: int, row: int) -> dict:
    """FA1's normalized update of one row at one of its steps, checked two ways against the O the
    kernel wrote: the correct O2 = (l1/l2) e^(m1 - m2) O1 + P~2 V2, and the FA2 review's line
    O2 = diag(l1/l2)^-1 O1 + P~2 V2, with P~2 V2 = p V / l2 from the kernel's own p (derived)."""
    c = trace.config
    i, j, kk = fa.where(trace, 0, step)
    slot = trace.tile_slot(i)
    o1, o2 = trace.acc_before[slot, j, row].astype(np.float64), trace.acc_after[slot, j, row].astype(np.float64)
    js = trace.steps(i)
    l2, m2 = float(trace.l[i, j, row]), float(trace.m[i, j, row])
    l1 = float(trace.l[i, js[kk - 1], row]) if kk > 0 else 0.0
    m1 = float(trace.m[i, js[kk - 1], row]) if kk > 0 else -np.inf
    p = trace.p[slot, j, row, : trace.cols(j)].astype(np.float64)
    v = trace.v[j * c.block_n: j * c.block_n + trace.cols(j)].astype(np.float64)
    pv = p @ v / l2
    coef = l1 / l2 * np.exp(m1 - m2) if kk > 0 else 0.0
    review = l2 / l1 if kk > 0 else 0.0  # diag(l1/l2)^-1
    return {"q_block": i, "kv_block": j, "first": kk == 0, "l1": l1, "l2": l2, "m1": m1, "m2": m2, "coef": coef,
            "review_coef": review, "err_correct": float(np.max(np.abs(coef * o1 + pv - o2))),
            "err_review": float(np.max(np.abs(review * o1 + pv - o2)))}


def fa1_forms_tex(f: dict) -> str:
    n = {k: fa.tex_num(f[k]) for k in ("l1", "l2", "m1", "m2", "coef", "review_coef")}
    return (r"\begin{aligned}"
            r"O^{(2)} &= \tfrac{\ell_1}{\ell_2}\,e^{m_1 - m_2}\,O^{(1)} + \tilde P^{(2)} V^{(2)}\\"
            rf"&\tfrac{{{n['l1']}}}{{{n['l2']}}}\,e^{{{n['m1']} - {fa._paren(f['m2'])}}} = \mathbf{{{n['coef']}}},"
            rf"\ \ |\text{{formula}} - O_\text{{kernel}}| = {fa.tex_num(f['err_correct'], 2)}\\[4pt]"
            r"\text{review: } O^{(2)} &= \mathrm{diag}(\ell_1/\ell_2)^{-1} O^{(1)} + \tilde P^{(2)} V^{(2)}\\"
            rf"&\ell_2/\ell_1 = {n['review_coef']},\ \ |\text{{formula}} - O_\text{{kernel}}| = "
            rf"{fa.tex_num(f['err_review'], 2)}"
            r"\end{aligned}")
