"""Analytic memory-traffic models, in elements loaded and stored (multiply by the dtype size
for bytes). The kernels count their own loads and stores; tests assert the two agree exactly.

Not for: timing. What moves is counted here; how fast it moves is kernels/bench.py's business.
"""
import math

SOFTMAX_VARIANTS = ("naive", "safe", "online", "single_pass")

# passes over the input, loads and stores per element (masked lanes never count)
SOFTMAX_ACCESSES = {
    "naive": (2, 1),  # sum e^x ; write e^x / sum
    "safe": (3, 1),  # max ; sum e^(x-m) ; write
    "online": (2, 1),  # running (m, d) ; write
    "single_pass": (1, 1),  # whole row on chip: one read, one write
}


def softmax(variant: str, rows: int, cols: int) -> dict:
    """Elements a row-wise softmax over a (rows, cols) matrix loads and stores."""
    if variant not in SOFTMAX_ACCESSES:
        raise ValueError(f"variant must be one of {SOFTMAX_VARIANTS}, got {variant!r}")
    ld, st = SOFTMAX_ACCESSES[variant]
    return {"loads": ld * rows * cols, "stores": st * rows * cols}


def _visited(seq_len: int, block_m: int, block_n: int, causal: bool):
    """(q-block rows, kv-block rows) of every tile the kernel computes."""
    for i in range(math.ceil(seq_len / block_m)):
        rows = min(block_m, seq_len - i * block_m)
        last_row = i * block_m + rows - 1
        for j in range(math.ceil(seq_len / block_n)):
            if causal and j * block_n > last_row:
                break  # tile entirely above the diagonal: never loaded
            yield rows, min(block_n, seq_len - j * block_n)


def flash_fa2(seq_len: int, head_dim: int, block_m: int, block_n: int, causal: bool) -> dict:
    """FlashAttention-2 forward, one (batch, head): q-block loop outside, kv loop inside.

    Q read once; K and V read once per q-block (for the tiles it visits); O and the
    log-sum-exp written once. S and P never leave the chip.
    """
    kv_rows = sum(c for _, c in _visited(seq_len, block_m, block_n, causal))
    out = {
        "q_loads": seq_len * head_dim,
        "k_loads": kv_rows * head_dim,
        "v_loads": kv_rows * head_dim,
        "o_stores": seq_len * head_dim,
        "lse_stores": seq_len,
    }
    out["loads"] = out["q_loads"] + out["k_loads"] + out["v_loads"]
    out["stores"] = out["o_stores"] + out["lse_stores"]
    return out


def flash_fa1(seq_len: int, head_dim: int, block_m: int, block_n: int, causal: bool) -> dict:
    """FlashAttention-1 order (kv loop outside): K, V read once; for every tile, Q_i, O_i,
    m_i and l_i are read from and O_i, m_i, l_i written back to HBM."""
    q_rows = sum(r for r, _ in _visited(seq_len, block_m, block_n, causal))
    out = {
        "q_loads": q_rows * head_dim,
        "k_loads": seq_len * head_dim,
        "v_loads": seq_len * head_dim,
        "o_loads": q_rows * head_dim,
        "ml_loads": 2 * q_rows,
        "o_stores": q_rows * head_dim,
        "ml_stores": 2 * q_rows,
    }
    out["loads"] = sum(v for k, v in out.items() if k.endswith("_loads"))
    out["stores"] = out["o_stores"] + out["ml_stores"]
    return out


def standard_attention(seq_len: int, head_dim: int) -> dict:
    """S = QK^T, P = softmax(S), O = PV as three kernels with S and P in HBM (FlashAttention
    paper, Algorithm 0). Causal masking does not shrink it: S is still N x N."""
    n, d = seq_len, head_dim
    loads = (2 * n * d) + (n * n) + (n * n + n * d)  # QK^T ; softmax(S) ; PV
    stores = (n * n) + (n * n) + (n * d)  # S ; P ; O
    return {"loads": loads, "stores": stores, "s_p_elements": 2 * n * n}


def total(counts: dict) -> int:
    return counts["loads"] + counts["stores"]
