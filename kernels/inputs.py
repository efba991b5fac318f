"""The inputs the app feeds the kernels: attention's q, k, v (and dO) per scenario, the softmax row.

Each scenario is chosen to show one thing in the running state: `randn` the usual case, `large`
scores about 100x larger (naive softmax would overflow), `increasing` a new max in every kv-block
(every step rescales), `decreasing` the max in the first kv-block (no rescale after it).
Plain NumPy float32, before the cast to the kernel's dtype. No triton, no torch.

Not for: launching anything (trace.py, trace_backward.py) or references (reference.py).
"""
import math

import numpy as np

from kernels.limits import SCENARIOS

SCENARIO_HELP = {
    "randn": "q, k, v ~ N(0, 1)",
    "large": "scores about 100x larger: naive softmax would overflow",
    "increasing": "each new kv-block holds a larger max: every step rescales",
    "decreasing": "the max is in the first kv-block: no rescale after it",
}
SOFTMAX_SCENARIO_HELP = {
    "randn": "x ~ N(0, 1)",
    "large": "x ~ N(0, 1) × 100: e^x overflows without the max subtracted",
    "increasing": "sorted ascending: every chunk holds a new max, so d is rescaled every chunk",
    "decreasing": "sorted descending: the max is in the first chunk, no rescale after it",
}
assert tuple(SCENARIO_HELP) == tuple(SOFTMAX_SCENARIO_HELP) == SCENARIOS


def attention_inputs(seq_len: int, head_dim: int, block_n: int, scenario: str, seed: int, q_rows: int | None = None):
    """q (q_rows, head_dim: seq_len by default), k, v (seq_len, head_dim) as float32 NumPy."""
    rng = np.random.default_rng(seed)
    n, d = seq_len, head_dim
    q, k, v = (rng.standard_normal((r, d)) for r in (q_rows or n, n, n))
    if scenario == "large":
        q, k = q * 10.0, k * 10.0  # s = q.k/sqrt(d) about 100x larger than for randn
    elif scenario in ("increasing", "decreasing"):
        # s_rc ~ level(block of c) + small noise: q_r[0] * k_c[0] * sm_scale = k_c[0]
        q, k = q * 0.1, k * 0.1
        q[:, 0] = math.sqrt(d)
        block = np.arange(n) // block_n
        level = block if scenario == "increasing" else block.max() - block
        k[:, 0] = 1.5 * level + 0.3 * rng.standard_normal(n)
    return q.astype(np.float32), k.astype(np.float32), v.astype(np.float32)


def make_inputs(cfg):
    """attention_inputs for a TraceConfig: q has its packed rows (the group's query heads, head-major)."""
    return attention_inputs(cfg.seq_len, cfg.head_dim, cfg.block_n, cfg.scenario, cfg.seed, cfg.n_rows)


def make_do(cfg, do_seed: int | None = None) -> np.ndarray:
    """The output gradient dO ~ N(0, 1), float32 (seq_len, head_dim), from its own random stream."""
    seed = cfg.seed if do_seed is None else do_seed
    return np.random.default_rng([seed, 1]).standard_normal((cfg.seq_len, cfg.head_dim)).astype(np.float32)


def softmax_row(length: int, scenario: str, seed: int) -> np.ndarray:
    """The row the Softmax page feeds the kernels, float32 (length,); `large` is x 100."""
    x = np.random.default_rng(seed).standard_normal(length)
    if scenario == "large":
        x = x * 100.0
    elif scenario == "increasing":
        x = np.sort(x)
    elif scenario == "decreasing":
        x = np.sort(x)[::-1]
    return np.ascontiguousarray(x, dtype=np.float32)
