"""Where do the microseconds of a small forward + backward go? Host time per call (1 x 1 x 128 x 64:
no GPU work to speak of) of each piece of ours (the autograd forward + backward, the backward's
launches one at a time) and of SDPA FLASH; then, at N 1024 and 2048 (batch 4, 16 heads), the
eager time as kernels.bench_backward takes it against the GPU-only time of a CUDA-graph replay.
usage: python3 scripts/bwd_overhead.py   (prints rows; JSON to $OUT/bwd_overhead.json)
"""
import json
import os

import torch

from kernels import attention
from kernels.bench import _median_ms, _sdpa
from kernels.bench_backward import _grads
from scripts.launch_overhead import graph_ms, host_us


def pieces(q, k, v, do):
    out, lse = attention.flash_attention_fwd(q, k, v)
    ours = lambda q, k, v, causal: attention.flash_attention(q, k, v, causal=causal)  # noqa: E731
    flash = _sdpa("FLASH_ATTENTION")
    delta = attention._preprocess(out, do, None, False)
    return {
        "ours fwd+bwd (autograd.grad)": lambda: _grads(ours, q, k, v, do, False),
        "sdpa FLASH fwd+bwd (autograd.grad)": lambda: _grads(flash, q, k, v, do, False),
        "ours forward alone (no grad)": lambda: attention._launch_tuned(q, k, v, False, None),
        "ours backward (_launch_bwd_tuned)": lambda: attention._launch_bwd_tuned(q, k, v, out, lse, do, False, None),
        "ours _check_backward_inputs": lambda: attention._check_backward_inputs(q, k, v, out, lse, do),
        "ours preprocess launch": lambda: attention._preprocess(out, do, None, False),
        "ours dkdv launch (autotuned)": lambda: attention._attn_bwd_dkdv_tuned[(1, 1)](
            q, k, v, do, lse, delta, out, out, 0.125, *q.stride(), *k.stride(), *v.stride(), *do.stride(), 1, 128,
            *((None,) * 7 + (0,)), HEAD_DIM=64, CAUSAL=False, COUNT=False, TRACE=False, DOT_PRECISION="tf32"),
        "ours dq launch (autotuned)": lambda: attention._attn_bwd_dq_tuned[(1, 1)](
            q, k, v, do, lse, delta, out, 0.125, *q.stride(), *k.stride(), *v.stride(), *do.stride(), 1, 128, None,
            HEAD_DIM=64, CAUSAL=False, COUNT=False, DOT_PRECISION="tf32"),
        "3 x torch.empty": lambda: [torch.empty(q.shape, dtype=q.dtype, device=q.device) for _ in range(3)],
    }


def main():
    rows = []
    q, k, v = (torch.randn(1, 1, 128, 64, device="cuda", dtype=torch.float16, requires_grad=True) for _ in range(3))
    do = torch.randn_like(q)
    for name, fn in pieces(q, k, v, do).items():
        fn()
        rows.append(dict(kind="host_us_per_call", name=name, value=host_us(fn, n=500)))
        print(rows[-1], flush=True)
    for n in (1024, 2048):
        for d in (64, 128):
            for causal in (False, True):
                q, k, v = (torch.randn(4, 16, n, d, device="cuda", dtype=torch.float16, requires_grad=True)
                           for _ in range(3))
                do = torch.randn_like(q)
                for name, fn in (("ours", lambda q, k, v, c: attention.flash_attention(q, k, v, causal=c)),
                                 ("sdpa FLASH", _sdpa("FLASH_ATTENTION"))):
                    step = (lambda fn=fn: _grads(fn, q, k, v, do, causal))
                    step()
                    try:
                        graph = graph_ms(step)
                    except Exception as e:  # capture may refuse autograd: a result too
                        graph = str(e).splitlines()[0][:120]
                    rows.append(dict(kind="fwd+bwd ms", name=name, n=n, d=d, causal=causal,
                                     eager=_median_ms(step), graph=graph, host_us=host_us(step, n=50)))
                    print(rows[-1], flush=True)
    json.dump(rows, open(os.path.join(os.environ.get("OUT", "."), "bwd_overhead.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
