"""The softmax backward of one row as a Triton kernel: dS = P ∘ (dP − D) with D = Pᵀ dP, the form
the FlashAttention backward uses instead of the N × N Jacobian diag(P) − P Pᵀ.

The Backward page's worked example (the post's P = [0.1, 0.5, 0.4]) runs through it, so the dS
and D it shows come from a kernel like every other number, next to the float64 Jacobian form.

Not for: attention's backward (kernels/flash_bwd.py) or the float64 forms (kernels/reference.py).
"""
from kernels import backend, limits

backend.require_triton()

import numpy as np
import torch
import triton
import triton.language as tl

MAX_LENGTH = 4096  # one row on chip


@triton.jit
def _softmax_bwd_row(p_ptr, dp_ptr, ds_ptr, d_ptr, n, BLOCK: tl.constexpr):
    cols = tl.arange(0, BLOCK)
    ok = cols < n
    p = tl.load(p_ptr + cols, mask=ok, other=0.0)
    dp = tl.load(dp_ptr + cols, mask=ok, other=0.0)
    d = tl.sum(p * dp, axis=0)  # D = P . dP: one number per row
    tl.store(ds_ptr + cols, p * (dp - d), mask=ok)
    tl.store(d_ptr, d)


def softmax_backward(p, dp) -> tuple[np.ndarray, float]:
    """(dS, D) of one row from the kernel, float32. p, dp: 1-D sequences of the same length."""
    p = np.asarray(p, dtype=np.float32)
    dp = np.asarray(dp, dtype=np.float32)
    if p.ndim != 1 or dp.shape != p.shape:
        raise ValueError(f"p and dp must be 1-D of the same length, got shapes {p.shape} and {dp.shape}")
    limits.check_int("length", p.size, 1, MAX_LENGTH)
    if not (np.isfinite(p).all() and np.isfinite(dp).all()):
        raise ValueError("p and dp must be finite numbers")
    pt, dpt = (torch.from_numpy(a).to(backend.DEVICE) for a in (p, dp))
    ds = torch.empty_like(pt)
    d = torch.empty(1, dtype=torch.float32, device=backend.DEVICE)
    _softmax_bwd_row[(1,)](pt, dpt, ds, d, p.size, BLOCK=triton.next_power_of_2(p.size))
    return ds.cpu().numpy(), float(d.cpu()[0])


def through_flash_backward(p, dp) -> dict:
    """The same row through attention's backward (kernels/flash_bwd.py): one query q = e₀ against
    keys k_j = ln(P_j) e₀ (so its scores are ln P_j and softmax(s) = P), values v_j = dP_j e₀ and
    dO = e₀ (so dP = dO · v_j = dP_j), scale 1; two more query rows with dO = 0 give dS = 0 and pad
    the launch. dK_j = Σ_i dS_ij q_i = dS_0j e₀: the dK/dV kernel's dS is read off dK. Returns
    {"ds": dS from dK, "d": D = rowsum(dO ∘ O) the preprocess kernel used, "out": O of the row}."""
    from kernels import attention

    p = np.asarray(p, dtype=np.float64)
    dp = np.asarray(dp, dtype=np.float64)
    if p.ndim != 1 or p.shape != dp.shape or not 1 <= p.size <= 64 or np.any(p <= 0):
        raise ValueError(f"p and dp must be rows of 1 to 64 values alike, p all above 0, got p={list(p)[:8]}, "
                         f"dp={list(dp)[:8]}")
    n, d = p.size, 16
    q, k, v, do = (torch.zeros(1, 1, n, d, dtype=torch.float32, device=backend.DEVICE) for _ in range(4))
    q[0, 0, :, 0] = 1.0
    k[0, 0, :, 0] = torch.as_tensor(np.log(p), dtype=torch.float32)
    v[0, 0, :, 0] = torch.as_tensor(dp, dtype=torch.float32)
    do[0, 0, 0, 0] = 1.0
    out, lse = attention.flash_attention_fwd(q, k, v, sm_scale=1.0, block_m=16, block_n=16)
    _, dk, _ = attention.flash_attention_bwd(q, k, v, out, lse, do, sm_scale=1.0, block_m=16, block_n=16)
    return {"ds": dk[0, 0, :, 0].double().cpu().numpy(), "d": float(out[0, 0, 0, 0]),
            "out": out[0, 0, 0, 0].item()}
