"""Published update rules, evaluated on the kernel's own numbers at every step.

Each rule is one paper's line for the output update of online softmax, as printed, and where a
printed line is known to be wrong, as corrected. It is evaluated on one row at one step with the
values the kernel wrote (m_old, m_new, l_old, l_new, acc before and after, and p V from the
kernel's p and V) and compared with what the kernel wrote next; the residual is max |rule - kernel|
over the row. A correct rule holds to the dtype's rounding; a wrong one misses (or divides by
alpha = 0 at a program's first tile and gives inf or NaN).

Not for: the page's own equations (truth.py) or drawing (viz/).
"""
import math
from dataclasses import dataclass

import numpy as np

from kernels import steps, truth


@dataclass(frozen=True)
class Rule:
    name: str
    source: str  # where it is printed, and where it was reported when it is wrong
    tex: str  # as printed (notation of its paper)
    correct: bool
    normalized: bool  # the rule is about O = acc / l (FA1's form), else about acc (FA2's unnormalized O~)

    def predict(self, u) -> np.ndarray:
        """The rule's O_new (normalized) or acc_new (unnormalized) from row update `u`."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            o_old = u.acc_old if u.normalized else (u.acc_old / u.l_old if u.l_old > 0 else np.zeros_like(u.acc_old))
            acc_old = u.acc_old * u.l_old if u.normalized else u.acc_old
            alpha, l_old, l_new = (np.float64(x) for x in (u.alpha, u.l_old, u.l_new))  # x / 0 is inf, not an error
            return RULE_MATH[self.name](alpha, l_old, l_new, o_old, acc_old, u.pv)

    def target(self, u) -> np.ndarray:
        """What the kernel wrote for the same quantity."""
        if self.normalized:
            return u.acc_new if u.normalized else u.acc_new / u.l_new
        return u.acc_new * u.l_new if u.normalized else u.acc_new


RULE_MATH = {
    # O_i <- diag(l_new)^-1 (diag(l_i) e^(m_i - m_new) O_i + e^(m~_ij - m_new) P~_ij V_j), P~ = exp(S - m~)
    "FA1 Algorithm 1, line 12": lambda al, l1, l2, o, a, pv: (l1 * al * o + pv) / l2,
    # O~_i^(j) = diag(e^(m^(j-1) - m^(j)))^-1 O~_i^(j-1) + P~ V_j   (printed with the ^-1)
    "FA2 Algorithm 1, line 10, as printed": lambda al, l1, l2, o, a, pv: a / al + pv,
    "FA2 Algorithm 1, line 10, corrected": lambda al, l1, l2, o, a, pv: al * a + pv,
    # O^(2) = diag(l1 / l2)^-1 O^(1) + P~^(2) V^(2), P~^(2) = diag(l2)^-1 e^(S^(2) - m^(2))
    "FA2 section 3.1, the online-softmax step": lambda al, l1, l2, o, a, pv: (l2 / l1) * o + pv / l2,
    # O_i = diag(exp(m_old - m_i))^-1 O_i + P~_i V_j  (printed with the ^-1)
    "FA3 Algorithm 1, line 21, as printed": lambda al, l1, l2, o, a, pv: a / al + pv,
}

RULES = (
    Rule("FA1 Algorithm 1, line 12", "Dao et al., FlashAttention (2022), Algorithm 1",
         r"O_i \leftarrow \mathrm{diag}(\ell_i^{new})^{-1}\big(\mathrm{diag}(\ell_i)\,e^{m_i - m_i^{new}} O_i"
         r" + e^{\tilde m_{ij} - m_i^{new}} \tilde P_{ij} V_j\big)", True, True),
    Rule("FA2 Algorithm 1, line 10, as printed", "Dao, FlashAttention-2 (2023), Algorithm 1; reported in "
         "Dao-AILab/flash-attention issue #991",
         r"\tilde O_i^{(j)} = \mathrm{diag}(e^{m_i^{(j-1)} - m_i^{(j)}})^{-1} \tilde O_i^{(j-1)} + \tilde P_i^{(j)} V_j",
         False, False),
    Rule("FA2 Algorithm 1, line 10, corrected", "the same line without the ^-1 (issue #991; Triton's tutorial 06 "
         "and this kernel do this)",
         r"\tilde O_i^{(j)} = \mathrm{diag}(e^{m_i^{(j-1)} - m_i^{(j)}})\, \tilde O_i^{(j-1)} + \tilde P_i^{(j)} V_j",
         True, False),
    Rule("FA2 section 3.1, the online-softmax step", "Dao, FlashAttention-2 (2023), section 3.1 (the FA2 review "
         "copies it); reported in issues #897 and #2342",
         r"O^{(2)} = \mathrm{diag}(\ell^{(1)}/\ell^{(2)})^{-1} O^{(1)} + \tilde P^{(2)} V^{(2)}", False, True),
    Rule("FA3 Algorithm 1, line 21, as printed", "Shah et al., FlashAttention-3 (2024), Algorithm 1; reported in "
         "issue #1303", r"O_i = \mathrm{diag}(\exp(m_i^{old} - m_i))^{-1} O_i + \tilde P_i^{(j)} V_j", False, False),
)


def residual(rule: Rule, trace, step, row: int) -> float:
    """max |rule - kernel| over the row's head dims at this step; inf or NaN where the rule divides by 0."""
    u = steps.row_update(trace, step, row)
    if u.empty:  # the row has seen no key: no rule has anything to say
        return 0.0
    got = rule.predict(u)
    want = rule.target(u)
    with np.errstate(invalid="ignore"):
        diff = np.abs(got - want)
    return float("nan") if np.isnan(diff).any() else float(diff.max(initial=0.0))


def tolerance(rule: Rule, trace, step, row: int) -> float:
    """How far a correct rule may land from the kernel: the float32 rounding of what the kernel
    summed (alpha acc and each p_k v_k), and for FA1's order the rounding of O to the input dtype."""
    u = steps.row_update(trace, step, row)
    v = trace.v[step.keys.start: step.keys.stop].astype(np.float64)
    size = np.abs(steps.round_to(u.p, trace.config.dtype)) @ np.abs(v)  # (d,) sum of |p_k v_k|
    scale = u.l_old if u.normalized else 1.0  # FA1's acc is O: acc * l is the unnormalized accumulator
    summed = float(np.max(np.abs(u.alpha * u.acc_old * scale) + size, initial=0.0))
    tol = 4 * (len(step.keys) + 4) * truth.U32 * summed
    if u.normalized:  # O read back from memory was rounded to the input dtype, and is written so again
        tol += 4 * truth.UNIT[trace.config.dtype] * float(np.max(np.abs(u.acc_new) * u.l_new, initial=0.0))
    if rule.normalized:
        tol = tol / u.l_new if u.l_new > 0 else tol
    return tol + truth.SUBNORMAL[trace.config.dtype] + 1e-12


def evaluate(trace, q_block: int, row: int) -> list[dict]:
    """Every rule over the followed q-block's walk for one row: its residual at each step, the worst
    after the programs' first tiles (where alpha = 0 and l_old = 0, so a rule that divides by either
    gives inf or NaN: said apart), and whether it holds at every step."""
    walk = [s for s in steps.steps(trace, q_block) if s.q_block == q_block]
    out = []
    for rule in RULES:
        res = [residual(rule, trace, s, min(row, len(s.rows) - 1)) for s in walk]
        tol = [tolerance(rule, trace, s, min(row, len(s.rows) - 1)) for s in walk]
        ok = [math.isfinite(r) and r <= t for r, t in zip(res, tol, strict=True)]
        later = [r for r, s in zip(res, walk, strict=True) if not s.first]
        first = [r for r, s in zip(res, walk, strict=True) if s.first]
        out.append({"rule": rule, "residuals": res, "tolerances": tol, "ok": ok, "holds": all(ok),
                    "worst_later": max(later, key=lambda r: math.inf if not math.isfinite(r) else r) if later else 0.0,
                    "first_finite": all(math.isfinite(r) for r in first)})
    return out
