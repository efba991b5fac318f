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
