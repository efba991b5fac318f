"""Analytic memory-traffic models, in elements loaded and stored (multiply by the dtype size
for bytes). The kernels count their own loads and stores; tests assert the two agree exactly.

Not for: timing. What moves is counted here; how fast it moves is kernels/bench.py's business.
"""
import math

import numpy as np

from kernels import masks as kmasks

SOFTMAX_VARIANTS = ("naive", "safe", "online", "single_pass", "split_row")
# What the kernels count (kernels/flash_fwd.py, kernels/flash_bwd.py), named as the models below
FA2_COUNTERS = ("q_loads", "k_loads", "v_loads", "o_stores", "lse_stores")
FA1_COUNTERS = ("q_loads", "k_loads", "v_loads", "o_loads", "ml_loads", "o_stores", "ml_stores")
SPLIT_KV_COUNTERS = ("q_loads", "k_loads", "v_loads", "partial_o_stores", "partial_ml_stores",
                     "merge_o_loads", "merge_ml_loads", "o_stores", "lse_stores")
BACKWARD_COUNTERS = (
    "pre_o_loads", "pre_do_loads", "pre_d_stores",
    "dkdv_k_loads", "dkdv_v_loads", "dkdv_q_loads", "dkdv_do_loads", "dkdv_lse_loads", "dkdv_d_loads",
    "dkdv_dk_stores", "dkdv_dv_stores",
    "dq_q_loads", "dq_do_loads", "dq_lse_loads", "dq_d_loads", "dq_k_loads", "dq_v_loads", "dq_dq_stores",
)

# passes over the input, loads and stores per element (masked lanes never count)
SOFTMAX_ACCESSES = {
    "naive": (2, 1),  # sum e^x ; write e^x / sum
    "safe": (3, 1),  # max ; sum e^(x-m) ; write
    "online": (2, 1),  # running (m, d) ; write
    "single_pass": (1, 1),  # whole row on chip: one read, one write
    "split_row": (1, 1),  # a row's slices on chip in cooperating programs, their (m, l) merged
}


# Each pass of each softmax kernel (kernels/softmax.py): what it computes, and whether it writes y.
# Its reads per element are the pass count: the same numbers as SOFTMAX_ACCESSES.
SOFTMAX_PASSES = {
    "naive": (("d = Σ eˣ", False), ("y = eˣ / d", True)),
    "safe": (("m = max x", False), ("d = Σ eˣ⁻ᵐ", False), ("y = eˣ⁻ᵐ / d", True)),
    "online": (("m, d running (rescale d when m grows)", False), ("y = eˣ⁻ᵐ / d", True)),
    "single_pass": (("whole row on chip: m, d, y", True),),
    "split_row": (("slices on chip: partial (m, d), merged across programs, y", True),),
}
assert all(len(p) == SOFTMAX_ACCESSES[v][0] for v, p in SOFTMAX_PASSES.items())


def softmax(variant: str, rows: int, cols: int, launches: int = 1) -> dict:
    """Elements a row-wise softmax over a (rows, cols) matrix loads and stores. launches: split_row
    in two launches (the interpreter, which cannot run a row's programs at once) reads twice."""
    if variant not in SOFTMAX_ACCESSES:
        raise ValueError(f"variant must be one of {SOFTMAX_VARIANTS}, got {variant!r}")
    ld, st = SOFTMAX_ACCESSES[variant]
    return {"loads": ld * launches * rows * cols, "stores": st * rows * cols}


def visited_tiles(seq_len: int, block_m: int, block_n: int, causal: bool, masks=None) -> np.ndarray:
    """(Tq, Tk) bool: the tiles a FlashAttention kernel computes (causal: none wholly above the
    diagonal; masks, a kernels.masks.Masks: the tiles its loop bounds reach)."""
    if masks is not None:
        return masks.tile_kinds(block_m, block_n) != kmasks.SKIPPED
    tq, tk = math.ceil(seq_len / block_m), math.ceil(seq_len / block_n)
    last_row = np.minimum((np.arange(tq) + 1) * block_m, seq_len) - 1  # (Tq,)
    first_col = np.arange(tk) * block_n  # (Tk,)
    if not causal:
        return np.ones((tq, tk), dtype=bool)
    return first_col[None, :] <= last_row[:, None]


def _visited(seq_len: int, block_m: int, block_n: int, causal: bool, masks=None):
    """(q-block rows, kv-block rows) of every tile the kernel computes."""
    if masks is not None:
        for i, j in zip(*np.nonzero(visited_tiles(seq_len, block_m, block_n, causal, masks)), strict=True):
            yield min(block_m, masks.n_rows - i * block_m), min(block_n, masks.n_keys - j * block_n)
        return
    for i in range(math.ceil(seq_len / block_m)):
        rows = min(block_m, seq_len - i * block_m)
        last_row = i * block_m + rows - 1
        for j in range(math.ceil(seq_len / block_n)):
            if causal and j * block_n > last_row:
                break  # tile entirely above the diagonal: never loaded
            yield rows, min(block_n, seq_len - j * block_n)


def flash_fa2(seq_len: int, head_dim: int, block_m: int, block_n: int, causal: bool, masks=None) -> dict:
    """FlashAttention-2 forward, one (batch, head): q-block loop outside, kv loop inside.

    Q read once; K and V read once per q-block (for the tiles it visits); O and the
    log-sum-exp written once. S and P never leave the chip. masks (kernels.masks.Masks): one K/V
    head and its group of query heads, packed into masks.n_rows rows.
    """
    rows = seq_len if masks is None else masks.n_rows
    kv_rows = sum(c for _, c in _visited(seq_len, block_m, block_n, causal, masks))
    out = {
        "q_loads": rows * head_dim,
        "k_loads": kv_rows * head_dim,
        "v_loads": kv_rows * head_dim,
        "o_stores": rows * head_dim,
        "lse_stores": rows,
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


def flash_split_kv(seq_len: int, head_dim: int, block_m: int, block_n: int, causal: bool, splits: int,
                   masks=None) -> dict:
    """FA2 with each q-block's kv range cut into `splits` programs (split-KV) and a merge: Q_i is
    read by every split's program, K and V once per q-block as in FA2; each program writes its
    partial O_i, m_i, l_i, which the merge reads back before writing O and the log-sum-exp."""
    fa2 = flash_fa2(seq_len, head_dim, block_m, block_n, causal, masks)
    n, d = (seq_len if masks is None else masks.n_rows), head_dim
    out = {"q_loads": splits * n * d, "k_loads": fa2["k_loads"], "v_loads": fa2["v_loads"],
           "partial_o_stores": splits * n * d, "partial_ml_stores": 2 * splits * n,
           "merge_o_loads": splits * n * d, "merge_ml_loads": 2 * splits * n, "o_stores": n * d, "lse_stores": n}
    out["loads"] = sum(v for k, v in out.items() if k.endswith("_loads"))
    out["stores"] = sum(v for k, v in out.items() if k.endswith("_stores"))
    return out


def flash_walk(loop_order: str, tiles: list[tuple], seq_len: int, head_dim: int, block_m: int,
               block_n: int, splits: int = 1, n_rows: int | None = None) -> list[dict]:
    """{"loads", "stores", "stats"} the forward moves at each tile of its walk (tiles: (q-block,
    kv-block) or (q-block, kv-block, split), in the order the kernel computes them; "stats": how
    many of those elements are float32 m, l or log-sum-exp). FA2: Q_i at a program's first tile, K_j
    and V_j at every tile, O_i and the log-sum-exp at its last. Split-KV (splits > 1): each split's
    program loads Q_i and stores its partial O_i, m_i, l_i; after a q-block's last tile the merge
    reads every split's partials and writes O_i and the log-sum-exp (a split with no tile, inside the
    causal band, still loads Q_i and stores its partials: counted there). FA1: K_j and V_j at a
    kv-block's first tile, Q_i, O_i, m_i, l_i read and O_i, m_i, l_i written at every tile. Summed
    over every program's walk: flash_fa2 / flash_split_kv / flash_fa1, the kernels' counters."""
    if loop_order not in ("fa1", "fa2"):
        raise ValueError(f"loop_order must be 'fa1' or 'fa2', got {loop_order!r}")
    if loop_order == "fa1" and splits != 1:
        raise ValueError(f"splits must be 1 with loop_order 'fa1', got {splits}")
    d, out = head_dim, []
    tiles = [(t[0], t[1], t[2] if len(t) > 2 else 0) for t in tiles]
    for k, (i, j, sp) in enumerate(tiles):
        rows = min(block_m, (seq_len if n_rows is None else n_rows) - i * block_m)  # n_rows: GQA's packed heads, decode
        cols = min(block_n, seq_len - j * block_n)
        before, after = tiles[k - 1] if k else None, tiles[k + 1] if k + 1 < len(tiles) else None
        if loop_order == "fa1":
            first_of_col = before is None or before[1] != j
            out.append({"loads": (2 * cols * d if first_of_col else 0) + 2 * rows * d + 2 * rows,
                        "stores": rows * d + 2 * rows, "stats": 4 * rows})
            continue
        first = before is None or before[0] != i or before[2] != sp
        last = after is None or after[0] != i or after[2] != sp
        loads, stores, stats = (rows * d if first else 0) + 2 * cols * d, 0, 0
        if last and splits == 1:
            stores, stats = rows * d + rows, rows
        elif last:
            stores, stats = rows * d + 2 * rows, 2 * rows  # the split's partial O, m, l
        if splits > 1 and (after is None or after[0] != i):  # the q-block's last tile: its empty splits, the merge
            empty = splits - len({t[2] for t in tiles if t[0] == i})
            loads += empty * rows * d + splits * (rows * d + 2 * rows)
            stores += empty * (rows * d + 2 * rows) + rows * d + rows
            stats += 2 * empty * rows + 2 * splits * rows + rows
        out.append({"loads": loads, "stores": stores, "stats": stats})
    return out


def walk_bytes(parts: list[dict], itemsize: int) -> list[int]:
    """Bytes of each tile's traffic (flash_walk): Q, K, V, O in the inputs' dtype, m, l and the
    log-sum-exp in float32."""
    return [(p["loads"] + p["stores"] - p["stats"]) * itemsize + 4 * p["stats"] for p in parts]


def counted_bytes(counts: dict, keys: tuple, itemsize: int) -> int:
    """Bytes of a kernel's counters (or a model's dict) over `keys`: m, l and the log-sum-exp in
    float32, every other tensor in the inputs' dtype."""
    return sum(counts[k] * (4 if k.endswith(("ml_loads", "ml_stores", "lse_loads", "lse_stores")) else itemsize)
               for k in keys if k.endswith(("_loads", "_stores")))


def standard_rows(rows: int, seq_len: int, head_dim: int) -> dict:
    """Standard attention's traffic for `rows` query rows (the three kernels of standard_attention,
    restricted to them): Q rows and K, S rows written and read, P rows written and read, V, O rows."""
    n, d = seq_len, head_dim
    return {"loads": rows * d + n * d + rows * n + rows * n + n * d, "stores": rows * n + rows * n + rows * d,
            "s_p_elements": 2 * rows * n}


def standard_attention(seq_len: int, head_dim: int, rows: int | None = None) -> dict:
    """S = QK^T, P = softmax(S), O = PV as three kernels with S and P in HBM (FlashAttention
    paper, Algorithm 0). Masking does not shrink it: S is still rows x N (rows = N unless GQA's
    packed heads or decode)."""
    return standard_rows(seq_len if rows is None else rows, seq_len, head_dim)  # QK^T ; softmax(S) ; PV


def standard_kernels(seq_len: int, head_dim: int, block_m: int) -> dict:
    """What kernels/standard.py's three kernels load and store, per counter: S and P each written once
    and read once (as standard_attention), Q and O once, and K, V once per q-block (one program per
    q-block streams all of them)."""
    n, d, tq = seq_len, head_dim, -(-seq_len // block_m)
    return {"q_loads": n * d, "k_loads": tq * n * d, "s_stores": n * n,  # S = QK^T
            "s_loads": n * n, "p_stores": n * n,  # P = softmax(S), a whole row on chip
            "p_loads": n * n, "v_loads": tq * n * d, "o_stores": n * d}  # O = PV


def total(counts: dict) -> int:
    return counts["loads"] + counts["stores"]


def summed(counts: dict, keys: tuple) -> dict:
    """{"loads", "stores"}: the per-tensor counts named in keys (FA2_COUNTERS, a part of
    BACKWARD_COUNTERS, ...) added up, from a model's dict or a kernel's counters alike."""
    return {"loads": sum(counts[k] for k in keys if k.endswith("_loads")),
            "stores": sum(counts[k] for k in keys if k.endswith("_stores"))}


# ---------------------------------------------------------------- backward
def flash_backward(seq_len: int, head_dim: int, block_m: int, block_n: int, causal: bool, masks=None) -> dict:
    """FlashAttention-2 backward, one (batch, head), keys as BACKWARD_COUNTERS.

    preprocess: read O, dO ; write D = rowsum(dO o O)          (N per row, never the Jacobian)
    dK/dV (one program per kv-block): read K_j, V_j once ; per visited tile read Q_i, dO_i,
        lse_i, D_i ; write dK_j, dV_j
    dQ (one program per q-block): read Q_i, dO_i, lse_i, D_i once ; per visited tile read K_j, V_j ;
        write dQ_i
    P, dP and dS are recomputed tile by tile on chip and never written.
    masks (kernels.masks.Masks, its group's heads one after the other): one K/V head and its group.
    The dK/dV program walks the q-blocks holding a row that sees one of its keys; the dQ program the
    forward's kv-blocks.
    """
    if masks is None:
        n, d, n_k, group = seq_len, head_dim, seq_len, 1
        tiles = list(_visited(seq_len, block_m, block_n, causal))
        q_rows = sum(r for r, _ in tiles)  # rows of Q_i streamed past the kv-block programs
        kv_rows = sum(c for _, c in tiles)  # rows of K_j streamed past the q-block programs
    else:
        group, head = masks.group, kmasks.Masks(masks.n_queries, masks.n_keys, masks.causal, masks.window,
                                                masks.cu_seqlens)
        n, d, n_k = group * masks.n_queries, head_dim, masks.n_keys
        seen = head.allowed(0, head.n_rows)
        q_rows = group * sum(min(block_m, head.n_rows - r0) for j in range(0, n_k, block_n)
                             for r0 in range(0, head.n_rows, block_m) if seen[r0:r0 + block_m, j:j + block_n].any())
        kv_rows = group * sum(c for _, c in _visited(n_k, block_m, block_n, masks.causal, head))
    out = {
        "pre_o_loads": n * d, "pre_do_loads": n * d, "pre_d_stores": n,
        "dkdv_k_loads": n_k * d, "dkdv_v_loads": n_k * d,
        "dkdv_q_loads": q_rows * d, "dkdv_do_loads": q_rows * d, "dkdv_lse_loads": q_rows, "dkdv_d_loads": q_rows,
        "dkdv_dk_stores": n_k * d, "dkdv_dv_stores": n_k * d,
        "dq_q_loads": n * d, "dq_do_loads": n * d, "dq_lse_loads": n, "dq_d_loads": n,
        "dq_k_loads": kv_rows * d, "dq_v_loads": kv_rows * d, "dq_dq_stores": n * d,
    }
    for part in ("pre", "dkdv", "dq"):
        out[f"{part}_loads"] = sum(v for k, v in out.items() if k.startswith(part + "_") and k.endswith("_loads"))
        out[f"{part}_stores"] = sum(v for k, v in out.items() if k.startswith(part + "_") and k.endswith("_stores"))
    out["loads"] = out["pre_loads"] + out["dkdv_loads"] + out["dq_loads"]
    out["stores"] = out["pre_stores"] + out["dkdv_stores"] + out["dq_stores"]
    return out


def standard_backward(seq_len: int, head_dim: int) -> dict:
    """The attention backward with P, dP and dS as N x N matrices in HBM (FlashAttention paper,
    Algorithm 3), P kept from the forward. Causal masking does not shrink them."""
    n, d = seq_len, head_dim
    loads = ((n * n + n * d)  # dV = P^T dO: read P, dO
             + (2 * n * d)  # dP = dO V^T: read dO, V
             + (2 * n * n)  # dS = P o (dP - rowsum(P o dP)): read P, dP
             + (n * n + n * d)  # dQ = dS K: read dS, K
             + (n * n + n * d))  # dK = dS^T Q: read dS, Q
    stores = (n * d) + (n * n) + (n * n) + (n * d) + (n * d)  # dV ; dP ; dS ; dQ ; dK
    return {"loads": loads, "stores": stores, "p_dp_ds_elements": 3 * n * n}
