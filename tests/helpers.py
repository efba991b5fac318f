"""What the kernel tests share: fresh random inputs, the causal mask, the float64 references run
through PyTorch, and the error bounds, in one place.

A bound is twice PyTorch's own error in the same dtype on the same inputs (its attention, softmax
in float32, is the yardstick for what a kernel in that precision can get) plus FLOOR[dtype] times
the size of what enters the result: fp32 accumulation noise (a few ulps), half an ulp of fp16 /
bf16 (2**-11, 2**-8) for the rounding of the output itself.
"""
import numpy as np
import torch

from kernels import backend

FLOOR = {torch.float32: 2e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}
NP_FLOOR = {"float32": 2e-6, "float16": 1e-3, "bfloat16": 8e-3}


def rand(b, h, n, d, dtype, seed, count=3, device=None) -> list[torch.Tensor]:
    """`count` fresh N(0, 1) tensors (batch, heads, seq_len, head_dim) in dtype, never zeros."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=g).to(dtype).to(device or backend.DEVICE) for _ in range(count)]


def causal_mask(s: torch.Tensor, causal: bool) -> torch.Tensor:
    """s with -inf above the diagonal when causal (keys after the query)."""
    if causal:
        n = s.shape[-1]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool, device=s.device).triu(1), float("-inf"))
    return s


def attention64(q, k, v, causal, scale) -> torch.Tensor:
    return torch.softmax(causal_mask(q.double() @ k.double().transpose(-1, -2) * scale, causal), -1) @ v.double()


def attention_torch(q, k, v, causal, scale) -> torch.Tensor:
    """PyTorch's own attention in the inputs' dtype: SDPA's MATH backend on a GPU; on the CPU the
    same steps (softmax in float32; bfloat16 computed in float32, as a CPU matmul in bf16 is not
    what a GPU does)."""
    if q.device.type == "cuda":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([SDPBackend.MATH]):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    if q.dtype == torch.bfloat16:
        q, k, v = q.float(), k.float(), v.float()
    s = causal_mask(q @ k.transpose(-1, -2) * scale, causal)
    return torch.softmax(s.float(), dim=-1).to(v.dtype) @ v


def check_forward(out, q, k, v, causal, scale, what: str) -> None:
    """out (batch, heads, N, d) against float64, bound by PyTorch's own error in q's dtype."""
    assert not torch.isnan(out).any(), f"{what}: {int(torch.isnan(out).sum())} output elements NaN (never written?)"
    ref = attention64(q, k, v, causal, scale)
    err = float((out.double() - ref).abs().max())
    torch_err = float((attention_torch(q, k, v, causal, scale).double() - ref).abs().max())
    bound = 2 * torch_err + FLOOR[q.dtype] * max(1.0, float(ref.abs().max()))
    assert err <= bound, (f"{what}: out differs from float64 by {err:.3g} (bound {bound:.3g}; PyTorch's own "
                          f"{q.dtype} error {torch_err:.3g})")


def grads_float64(q, k, v, do, causal, scale):
    """dq, dk, dv of standard attention by float64 autograd."""
    q, k, v = (t.detach().double().requires_grad_() for t in (q, k, v))
    (torch.softmax(causal_mask(q @ k.transpose(-1, -2) * scale, causal), dim=-1) @ v).backward(do.double())
    return q.grad, k.grad, v.grad


def grads_torch(q, k, v, do, causal, scale):
    """PyTorch's own attention backward in the inputs' dtype (the forward as attention_torch)."""
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    attention_torch(q, k, v, causal, scale).backward(do)
    return q.grad, k.grad, v.grad


def grad_magnitudes(q, k, v, do, causal, scale) -> dict:
    """Per gradient, the largest sum of |terms| that makes up one element, in float64:
    dV = P^T dO, dK = scale dS^T Q and dQ = scale dS K with |dS| <= P (|dP| + |D|). A gradient that
    is ~0 (seq_len 1: dS = P (dP - D) = 0 exactly) still carries rounding of that size."""
    q, k, v, do = (t.detach().double() for t in (q, k, v, do))
    p = torch.softmax(causal_mask(q @ k.transpose(-1, -2) * scale, causal), dim=-1)  # (..., N, N)
    dp = do @ v.transpose(-1, -2)
    d = (p * dp).sum(-1, keepdim=True)
    ds_mag = p * (dp.abs() + d.abs())
    return {"dq": float((scale * ds_mag @ k.abs()).max()), "dk": float((scale * ds_mag.transpose(-1, -2) @ q.abs()).max()),
            "dv": float((p.transpose(-1, -2) @ do.abs()).max())}


def check_grads(got, q, k, v, do, causal, scale, what: str) -> None:
    ref = grads_float64(q, k, v, do, causal, scale)
    theirs = grads_torch(q, k, v, do, causal, scale)
    size = grad_magnitudes(q, k, v, do, causal, scale)
    for name, g, r, t in zip(("dq", "dk", "dv"), got, ref, theirs, strict=True):
        assert g.shape == r.shape and g.dtype == q.dtype, f"{what}: {name} is {tuple(g.shape)} {g.dtype}"
        assert not torch.isnan(g).any(), f"{what}: {int(torch.isnan(g).sum())} NaN in {name}"
        err = float((g.double() - r).abs().max())
        torch_err = float((t.double() - r).abs().max())
        bound = 2 * torch_err + FLOOR[q.dtype] * max(1.0, size[name])
        assert err <= bound, (f"{what}: {name} differs from float64 autograd by {err:.3g} (bound {bound:.3g}; "
                              f"PyTorch's own {q.dtype} error {torch_err:.3g}; terms up to {size[name]:.3g})")


def low(x, dtype: str) -> np.ndarray:
    """x rounded to a kernel's input dtype, as a kernel rounds P or dS before a dot."""
    return torch.from_numpy(np.asarray(x, dtype=np.float64)).to(getattr(torch, dtype)).double().numpy()


def walk_blocks(trace, block: int) -> np.ndarray:
    """The blocks a traced program stepped through, in its order (kernels/steps.py): a forward
    trace's kv-blocks for q-block `block`, a backward trace's q-blocks for kv-block `block`."""
    from kernels import steps
    from kernels.trace_backward import BackwardTrace

    if isinstance(trace, BackwardTrace):
        return np.array([b.q_block for b in steps.backward_steps(trace, block)])
    return np.array([s.kv_block for s in steps.steps(trace, block) if s.q_block == block])


def n_rows(trace, q_block: int) -> int:
    return len(trace.config.rows(q_block))


def n_cols(trace, kv_block: int) -> int:
    return len(trace.config.keys(kv_block))
