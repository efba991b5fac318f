"""Shared test helpers: fresh random inputs and dtype-aware error bounds."""
import numpy as np
import torch


def rel_err(x, ref) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.linalg.norm(x - ref) / max(np.linalg.norm(ref), 1e-30))


def torch_attention_err(q, k, v, causal, sm_scale, ref) -> float:
    """Max abs error of PyTorch's own attention in the inputs' dtype against the float64 ref:
    the yardstick for what a kernel in that precision can be expected to get."""
    qf, kf, vf = (t.to("cpu") for t in (q, k, v))
    if qf.dtype == torch.bfloat16:  # CPU matmul in bf16 is slow and not what the GPU does
        qf, kf, vf = (t.float() for t in (qf, kf, vf))
    s = (qf @ kf.transpose(-1, -2)) * sm_scale
    if causal:
        n = s.shape[-1]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    o = torch.softmax(s.float(), dim=-1).to(vf.dtype) @ vf
    return float(np.max(np.abs(o.double().numpy() - ref)))
