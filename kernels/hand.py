"""Attention at a reader's size: your own q, k, v, and blocks and head dims below the hardware tile.

tl.dot takes tiles of at least 16 x 16, so a q-block of 2 rows, a kv-block of 2 keys or a head dim
of 2 runs in 16-wide hardware tiles, through the same kernel: each logical q-block's rows at the
top of its own hardware q-block (the other rows are zeros, their outputs dropped), each logical
kv-block's keys at the left of its own hardware kv-block (the other lanes masked by the kernel,
flash_fwd's KEY_TILE, as it masks a ragged end), head_dim zero-padded to 16 (q . k and p V are
unchanged). `unpad` keeps only the real entries, so a trace of 4 keys has 4 x 4 scores.

Not for: launching (trace.py), the app's table parsing (viz/hand.py).
"""
import math

import numpy as np

from kernels import limits

NAMES = ("q", "k", "v")


def hardware(n: int) -> int:
    """The tile a logical block or head dim runs in."""
    return max(n, limits.MIN_TILE)


def positions(n: int, block: int) -> np.ndarray:
    """(n,) where each of n rows (or keys) sits in the padded launch: logical block b at hardware tile b."""
    r = np.arange(n)
    return (r // block) * hardware(block) + r % block


def check_inputs(cfg, inputs) -> tuple:
    """(q, k, v) as float32 C arrays of shape (seq_len, head_dim): finite numbers, or a ValueError naming
    the argument, the value and what is allowed."""
    if not isinstance(inputs, (tuple, list)) or len(inputs) != 3:
        raise ValueError(f"inputs must be a tuple (q, k, v) of 3 arrays, got {limits.shown_value(inputs)}")
    want = (cfg.seq_len, cfg.head_dim)
    out = []
    for name, a in zip(NAMES, inputs, strict=True):
        if not isinstance(a, np.ndarray):
            raise ValueError(f"inputs {name} must be a NumPy array of shape {want}, got {limits.shown_value(a)}")
        if a.shape != want:
            raise ValueError(f"inputs {name} must have shape (seq_len, head_dim) = {want}, got {a.shape}")
        if a.dtype.kind not in "fiu" or a.dtype == np.bool_:
            raise ValueError(f"inputs {name} must hold real numbers, got dtype {a.dtype}")
        bad = np.argwhere(~np.isfinite(a.astype(np.float64)))
        if bad.size:
            r, c = (int(x) for x in bad[0])
            raise ValueError(f"inputs {name} must be finite numbers, got {a[r, c]} at row {r}, column {c}")
        out.append(np.ascontiguousarray(a, dtype=np.float32))
    return tuple(out)


def pad(cfg, host):
    """host (q, k, v) torch tensors (seq_len, head_dim) -> the padded launch's (n_q_hw, 16), (n_kv_hw, 16)."""
    import torch

    d = hardware(cfg.head_dim)
    rows, keys = positions(cfg.seq_len, cfg.block_m), positions(cfg.seq_len, cfg.block_n)
    out = []
    for t, pos in zip(host, (rows, keys, keys), strict=True):
        hw = torch.zeros((int(pos[-1]) + 1, d), dtype=t.dtype)
        hw[torch.from_numpy(pos), : cfg.head_dim] = t
        out.append(hw)
    return out


def padded_counters(cfg) -> dict:
    """The elements the kernel counts on the padded launch (what a hand trace's counters hold):
    every row of each hardware q-block below the last real one and all 16 head lanes, for Q and
    O; for K and V the real keys only (the masked lanes load nothing), 16 lanes each, once per
    q-block; the log-sum-exp once per row."""
    d = hardware(cfg.head_dim)
    rows = int(positions(cfg.seq_len, cfg.block_m)[-1]) + 1
    kv = math.ceil(cfg.seq_len / cfg.block_m) * cfg.seq_len * d
    out = {"q_loads": rows * d, "k_loads": kv, "v_loads": kv, "o_stores": rows * d, "lse_stores": rows}
    out["loads"] = out["q_loads"] + out["k_loads"] + out["v_loads"]
    out["stores"] = out["o_stores"] + out["lse_stores"]
    return out


def unpad(cfg, raw: dict) -> dict:
    """The padded launch's trace arrays (NumPy) -> the logical ones: real rows, keys and head lanes only."""
    bm, bn, d = cfg.block_m, cfg.block_n, cfg.head_dim
    rows = positions(cfg.seq_len, bm)
    got = dict(raw)
    got["out"] = raw["out"][rows, :d]
    got["lse"] = raw["lse"][rows]
    for name in ("m", "l", "alpha"):
        got[name] = raw[name][:, :, :bm]
    for name in ("s", "p"):
        got[name] = raw[name][:, :, :bm, :bn]
    for name in ("acc_before", "acc_after"):
        got[name] = raw[name][:, :, :bm, :d]
    return {k: np.ascontiguousarray(v) if isinstance(v, np.ndarray) else v for k, v in got.items()}
