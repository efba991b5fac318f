"""FlashAttention-1 against FlashAttention-2: the same tiles in both loop orders, stepped together.

A step is one tile in each order. FA2's programs (one per q-block) run in parallel on a GPU; here
they are shown one after another, q-block by q-block, so both walks cover the same tiles in the
same number of steps. What each order moves so far is derived from its walk (per tile: what the
kernel loads and stores there); after the last step it equals the kernel's own counters.

Not for: the single-order stepping (viz/figures/attention.py).
"""
import numpy as np

from kernels import steps, traffic
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


def walk(trace) -> list:
    """The steps (kernels/steps.py) of the whole run in the order this loop order computes them:
    FA1's one program as it walks; FA2's programs (one per q-block) one after another."""
    if trace.config.loop_order == "fa1":
        return steps.steps(trace, 0)
    return [s for i in range(trace.config.n_q_blocks) for s in steps.steps(trace, i)]


def walk_states(trace, step: int) -> np.ndarray:
    """(Tq, Tk) tile states after `step` of the walk: done, current, pending, skipped."""
    states = np.full(trace.visit_order.shape, "skipped", dtype=object)
    for k, s in enumerate(walk(trace)):
        states[s.q_block, s.kv_block] = "done" if k < step else ("current" if k == step else "pending")
    return states


def order_grid_figure(trace, step: int, height: int = 300):
    c = trace.config
    tiles = walk(trace)
    states = walk_states(trace, step)
    text = np.full(states.shape, "", dtype=object)
    if max(states.shape) <= grid.MAX_NUMBERED:
        for k, s in enumerate(tiles):
            text[s.q_block, s.kv_block] = str(k + 1)
    i, j = tiles[step].q_block, tiles[step].kv_block
    if c.loop_order == "fa1":
        shapes = [("K_j, V_j on chip", "col", j, "solid"), ("Q_i, O_i through memory", "row", i, "dot")]
    else:
        shapes = [("Q_i on chip", "row", i, "solid"), ("K_j, V_j streaming", "col", j, "dot")]
    return grid.tile_grid(c, states, text.tolist(), shapes, title=f"{NAMES[c.loop_order]}: the walk", height=height)


def traffic_so_far(trace, step: int) -> dict:
    """Elements moved through step `step` of the walk (kernels/traffic.flash_walk, derived from the
    walk; at the last step it equals the kernel's counters)."""
    c = trace.config
    tiles = [(s.q_block, s.kv_block) for s in walk(trace)]
    parts = traffic.flash_walk(c.loop_order, tiles, c.seq_len, c.head_dim, c.block_m, c.block_n)[: step + 1]
    return {"loads": sum(p["loads"] for p in parts), "stores": sum(p["stores"] for p in parts)}


def counted(trace) -> dict:
    return traffic.summed(trace.counters, trace.config.counter_keys())


def row_update(trace, step: int, q_block: int):
    """The walk's latest step that updated q_block's rows at or before `step` (a kernels.steps.Step),
    or None when the walk has not reached q_block yet."""
    done = [s for s in walk(trace)[: step + 1] if s.q_block == q_block]
    return done[-1] if done else None


def fa1_forms(trace, step, row: int) -> dict:
    """FA1's normalized update of one row at one of its steps, checked two ways against the O the
    kernel wrote: the correct O2 = (l1/l2) e^(m1 - m2) O1 + P~2 V2, and the FA2 review's line
    O2 = diag(l1/l2)^-1 O1 + P~2 V2, with P~2 V2 = p V / l2 from the kernel's own p (derived)."""
    u = steps.row_update(trace, step, row)
    o1, o2 = u.acc_old, u.acc_new
    l1, l2, m1, m2 = u.l_old, u.l_new, u.m_old, u.m_new
    pv = u.pv / l2
    coef = l1 / l2 * np.exp(m1 - m2) if not step.first else 0.0
    review = l2 / l1 if not step.first else 0.0  # diag(l1/l2)^-1
    return {"q_block": step.q_block, "kv_block": step.kv_block, "first": step.first, "l1": l1, "l2": l2, "m1": m1,
            "m2": m2, "coef": coef, "review_coef": review, "err_correct": float(np.max(np.abs(coef * o1 + pv - o2))),
            "err_review": float(np.max(np.abs(review * o1 + pv - o2)))}


def fa1_forms_tex(f: dict) -> str:
    n = {k: fa.tex_num(f[k]) for k in ("l1", "l2", "m1", "m2", "coef", "review_coef")}
    return (r"\begin{aligned}"
            r"O^{(2)} &= \tfrac{\ell_1}{\ell_2}\,e^{m_1 - m_2}\,O^{(1)} + \tilde P^{(2)} V^{(2)}\\"
            rf"&\tfrac{{{n['l1']}}}{{{n['l2']}}}\,e^{{{n['m1']} - {fa.paren(f['m2'])}}} = \mathbf{{{n['coef']}}},"
            rf"\ \ |\text{{formula}} - O_\text{{kernel}}| = {fa.tex_num(f['err_correct'], 2)}\\[4pt]"
            r"\text{review: } O^{(2)} &= \mathrm{diag}(\ell_1/\ell_2)^{-1} O^{(1)} + \tilde P^{(2)} V^{(2)}\\"
            rf"&\ell_2/\ell_1 = {n['review_coef']},\ \ |\text{{formula}} - O_\text{{kernel}}| = "
            rf"{fa.tex_num(f['err_review'], 2)}"
            r"\end{aligned}")
