"""float64 references the kernels are checked against. Nothing here is shown as kernel output.

Each function computes in NumPy float64, with the memory traffic of the textbook algorithm
written next to the line that causes it (the same counts as kernels/traffic.py).
"""
import math

import numpy as np


def _f64(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


# ---------------------------------------------------------------- softmax, pass by pass
def softmax_naive(x) -> dict:
    """y = e^x / sum e^x. Overflows for large x, exactly as the kernel does in low precision."""
    x = _f64(x)  # (rows, cols)
    with np.errstate(over="ignore", invalid="ignore"):
        d = np.exp(x).sum(axis=-1, keepdims=True)  # pass 1: read rows*cols
        y = np.exp(x) / d  # pass 2: read rows*cols ; write rows*cols
    return {"d": d[..., 0], "y": y}


def softmax_safe(x) -> dict:
    x = _f64(x)
    m = x.max(axis=-1, keepdims=True)  # pass 1: read rows*cols
    d = np.exp(x - m).sum(axis=-1, keepdims=True)  # pass 2: read rows*cols
    y = np.exp(x - m) / d  # pass 3: read rows*cols ; write rows*cols
    return {"m": m[..., 0], "d": d[..., 0], "y": y}


def softmax_online(x, block: int) -> dict:
    """Running (m, d) chunk by chunk, as the online kernel's first pass folds chunks in."""
    x = _f64(x)
    rows, cols = x.shape
    n_chunks = max(1, math.ceil(cols / block))
    m_traj = np.empty((rows, n_chunks))  # (rows, chunks) running max after each chunk
    d_traj = np.empty((rows, n_chunks))
    m = np.full(rows, -np.inf)
    d = np.zeros(rows)
    for c in range(n_chunks):  # pass 1: read rows*cols
        chunk = x[:, c * block : (c + 1) * block]
        m_new = np.maximum(m, chunk.max(axis=-1))
        d = d * np.exp(m - m_new) + np.exp(chunk - m_new[:, None]).sum(axis=-1)
        m = m_new
        m_traj[:, c], d_traj[:, c] = m, d
    y = np.exp(x - m[:, None]) / d[:, None]  # pass 2: read rows*cols ; write rows*cols
    return {"m": m, "d": d, "y": y, "m_traj": m_traj, "d_traj": d_traj}


# ---------------------------------------------------------------- attention
def merge_states(m_s, l_s) -> dict:
    """The source documents' merge of partial softmax states, in float64: M = max m_s,
    L = sum l_s e^(m_s - M). m_s, l_s: (S,) partial maxima and sums; a part that saw nothing
    (m_s = -inf or l_s = 0) weighs 0. Returns M, L, `live` (S,) and `terms` (S,) = l_s e^(m_s - M):
    the merged output is sum terms_s O_s / L for normalized partial outputs O_s."""
    m_s, l_s = _f64(m_s), _f64(l_s)
    live = np.isfinite(m_s) & (l_s > 0)
    if not live.any():
        raise ValueError("merge_states needs at least one part with a finite max and a positive sum")
    big_m = float(np.max(m_s[live]))
    terms = np.where(live, l_s * np.exp(np.where(live, m_s, big_m) - big_m), 0.0)
    return {"M": big_m, "L": float(terms.sum()), "live": live, "terms": terms}


def scores(q, k, sm_scale: float, causal: bool) -> np.ndarray:
    """s = q k^T * sm_scale, -inf above the diagonal when causal. (N, N) float64."""
    q, k = _f64(q), _f64(k)
    s = (q @ k.T) * sm_scale  # read N*d + N*d ; write N*N
    if causal:
        n = s.shape[0]
        s = np.where(np.tril(np.ones((n, n), dtype=bool)), s, -np.inf)
    return s


def attention(q, k, v, causal: bool, sm_scale: float) -> dict:
    """Standard attention: S and P are whole N x N matrices. Returns out, lse, s, p."""
    s = scores(q, k, sm_scale, causal)  # (N, N)
    m = s.max(axis=-1, keepdims=True)
    e = np.exp(s - m)
    l = e.sum(axis=-1, keepdims=True)
    p = e / l  # read N*N ; write N*N
    out = p @ _f64(v)  # read N*N + N*d ; write N*d
    return {"out": out, "lse": (m + np.log(l))[:, 0], "s": s, "p": p}


def attention_rows(q, k, v, causal: bool, sm_scale: float, chunk: int = 256, masks=None) -> dict:
    """out and lse of standard attention, a chunk of rows at a time: float64 without N x N memory.
    masks (kernels/masks.Masks): what each row of q sees, by the definitions (causal is its own then);
    q's rows are the packed rows (a group's heads, head-major), k and v the keys."""
    q, k, v = _f64(q), _f64(k), _f64(v)
    n = q.shape[0]
    out = np.empty((n, v.shape[1]))
    lse = np.empty(n)
    for r0 in range(0, n, chunk):
        s = (q[r0 : r0 + chunk] @ k.T) * sm_scale  # (chunk, N_k)
        if masks is not None:
            s = np.where(masks.allowed(r0, r0 + s.shape[0]), s, -np.inf)
        elif causal:
            rows = np.arange(r0, r0 + s.shape[0])[:, None]
            s = np.where(np.arange(n)[None, :] <= rows, s, -np.inf)
        m = s.max(axis=-1, keepdims=True)
        e = np.exp(s - m)
        l = e.sum(axis=-1, keepdims=True)
        out[r0 : r0 + chunk] = (e / l) @ v
        lse[r0 : r0 + chunk] = (m + np.log(l))[:, 0]
    return {"out": out, "lse": lse}


def running_state(s: np.ndarray, block_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the running max m and sum l after each kv-block is folded in. (N, Tk) each.

    -inf / 0 where a row has seen no unmasked score yet (causal rows before the diagonal block).
    """
    n = s.shape[1]
    tk = math.ceil(n / block_n)
    m = np.full((s.shape[0], tk), -np.inf)
    l = np.zeros((s.shape[0], tk))
    for j in range(tk):
        seen = s[:, : (j + 1) * block_n]
        m[:, j] = seen.max(axis=-1)
        with np.errstate(invalid="ignore"):
            l[:, j] = np.where(np.isfinite(m[:, j]), np.exp(seen - m[:, j : j + 1]).sum(axis=-1), 0.0)
    return m, l


# ---------------------------------------------------------------- attention backward
def attention_backward(q, k, v, do, causal: bool, sm_scale: float) -> dict:
    """The backward with every N x N matrix explicit (float64): P, dP, D, dS, dQ, dK, dV, out."""
    q, k, v, do = _f64(q), _f64(k), _f64(v), _f64(do)
    p = attention(q, k, v, causal, sm_scale)["p"]  # (N, N), kept from the forward
    out = p @ v
    dv = p.T @ do  # dV = P^T dO: read N*N + N*d ; write N*d
    dp = do @ v.T  # dP = dO V^T: read 2 N*d ; write N*N
    d = (p * dp).sum(axis=-1)  # D = rowsum(P o dP) = rowsum(dO o O)
    ds = p * (dp - d[:, None])  # dS = P o (dP - D): read 2 N*N ; write N*N
    dq = ds @ k * sm_scale  # dQ = dS K * scale: read N*N + N*d ; write N*d
    dk = ds.T @ q * sm_scale  # dK = dS^T Q * scale: read N*N + N*d ; write N*d
    return {"p": p, "dp": dp, "d": d, "ds": ds, "dq": dq, "dk": dk, "dv": dv, "out": out}


def attention_backward_rows(q, k, v, do, causal: bool, sm_scale: float, chunk: int = 256) -> dict:
    """dQ, dK, dV and D of standard attention, a chunk of rows at a time: float64 without N x N memory."""
    q, k, v, do = _f64(q), _f64(k), _f64(v), _f64(do)
    n = q.shape[0]
    dq, dk, dv = np.empty_like(q), np.zeros_like(k), np.zeros_like(v)
    d = np.empty(n)
    for r0 in range(0, n, chunk):
        s = (q[r0 : r0 + chunk] @ k.T) * sm_scale  # (chunk, N)
        if causal:
            rows = np.arange(r0, r0 + s.shape[0])[:, None]
            s = np.where(np.arange(n)[None, :] <= rows, s, -np.inf)
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        p = e / e.sum(axis=-1, keepdims=True)
        g = do[r0 : r0 + chunk]
        dp = g @ v.T
        d[r0 : r0 + chunk] = (p * dp).sum(axis=-1)
        ds = p * (dp - d[r0 : r0 + chunk, None])
        dv += p.T @ g
        dq[r0 : r0 + chunk] = ds @ k * sm_scale
        dk += ds.T @ q[r0 : r0 + chunk] * sm_scale
    return {"dq": dq, "dk": dk, "dv": dv, "d": d}


def attention_row(q, k, v, do, row: int, causal: bool, sm_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """P and dP = dO V^T of one query row, float64 (N,) each, without the N x N matrices."""
    q, k, v, do = _f64(q), _f64(k), _f64(v), _f64(do)
    s = (k @ q[row]) * sm_scale  # (N,)
    if causal:
        s[row + 1:] = -np.inf
    p = np.exp(s - s.max())
    return p / p.sum(), v @ do[row]


def jacobian(p, rows=None, cols=None) -> np.ndarray:
    """J = diag(p) - p p^T of one softmax row, or the rows x cols part of it (index arrays)."""
    p = _f64(p)
    rows = np.arange(p.size) if rows is None else np.asarray(rows)
    cols = np.arange(p.size) if cols is None else np.asarray(cols)
    return np.where(rows[:, None] == cols[None, :], p[rows][:, None], 0.0) - np.outer(p[rows], p[cols])


def softmax_backward_row(p, dp, chunk: int = 256) -> dict:
    """One row of the softmax backward both ways: the Jacobian J = diag(p) - p p^T (N x N
    elements for one row) times dp, built `chunk` rows of J at a time so memory stays O(chunk N),
    and p o (dp - D) with the one number D = p . dp."""
    p, dp = _f64(p), _f64(dp)
    n = p.size
    ds_jac = np.empty(n)
    for r0 in range(0, n, chunk):  # J[r0:r1] @ dp, one slab of the N x N Jacobian at a time
        rows = np.arange(r0, min(r0 + chunk, n))
        ds_jac[rows] = jacobian(p, rows) @ dp
    d = float(p @ dp)  # read 2N
    return {"ds_jacobian": ds_jac, "d": d, "ds": p * (dp - d)}
