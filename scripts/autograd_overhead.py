"""How much host time does autograd add to one small forward + backward of ours? Times, per call at
1 x 1 x 128 x 64 (the GPU has next to nothing to do), in two rounds: ours and SDPA FLASH through
torch.autograd.grad, a trivial custom autograd.Function, both again with the backward run on the
calling thread (torch.autograd.set_multithreading_enabled(False)), and ours' forward and backward
called directly, without autograd; and, on either thread, how long our backward() itself takes (its
median) against the whole call.
usage: python3 scripts/autograd_overhead.py   (prints rows; JSON to $OUT/autograd_overhead.json)
"""
import json
import os
import statistics
import time

import torch

from kernels import attention
from kernels.bench import _sdpa
from kernels.bench_backward import _grads
from scripts.launch_overhead import host_us


class _Trivial(torch.autograd.Function):
    """Two elementwise kernels forward and back: autograd's own cost for a Python Function."""

    @staticmethod
    def forward(ctx, a, b, c):
        return a * 2

    @staticmethod
    def backward(ctx, g):
        return g * 2, g, g


def main():
    q, k, v = (torch.randn(1, 1, 128, 64, device="cuda", dtype=torch.float16, requires_grad=True) for _ in range(3))
    do = torch.randn_like(q)
    out, lse = attention.flash_attention_fwd(q, k, v)
    ours = lambda q, k, v, causal: attention.flash_attention(q, k, v, causal=causal)  # noqa: E731
    flash = _sdpa("FLASH_ATTENTION")
    cases = {
        "ours, autograd.grad": lambda: _grads(ours, q, k, v, do, False),
        "sdpa FLASH, autograd.grad": lambda: _grads(flash, q, k, v, do, False),
        "trivial Function, autograd.grad": lambda: torch.autograd.grad(_Trivial.apply(q, k, v), (q, k, v), do),
        "ours forward, direct": lambda: attention.flash_attention_fwd(q, k, v),
        "ours backward, direct": lambda: attention.flash_attention_bwd(q, k, v, out, lse, do),
        "ours forward + backward, direct": lambda: attention.flash_attention_bwd(
            q, k, v, *attention.flash_attention_fwd(q, k, v), do),
    }
    rows = []
    for rnd in range(2):
        for name, fn in cases.items():
            rows.append(dict(round=rnd, name=name, host_us=host_us(fn, n=500)))
            print(rows[-1], flush=True)
        with torch.autograd.set_multithreading_enabled(False):
            for name in ("ours, autograd.grad", "trivial Function, autograd.grad"):
                rows.append(dict(round=rnd, name=name + ", backward on the calling thread",
                                 host_us=host_us(cases[name], n=500)))
                print(rows[-1], flush=True)
    inside = []  # microseconds spent in FlashAttentionFunction.backward, call by call
    orig = attention.FlashAttentionFunction.backward

    def timed(ctx, g):
        t0 = time.perf_counter()
        r = orig(ctx, g)
        inside.append((time.perf_counter() - t0) * 1e6)
        return r

    attention.FlashAttentionFunction.backward = staticmethod(timed)
    try:
        for rnd in range(2):
            for thread in ("worker", "calling"):
                with torch.autograd.set_multithreading_enabled(thread == "worker"):
                    cases["ours, autograd.grad"]()
                    inside.clear()
                    total = host_us(cases["ours, autograd.grad"], n=500)
                    rows.append(dict(round=rnd, name=f"ours, autograd.grad, backward on the {thread} thread",
                                     host_us=total, inside_backward_median_us=statistics.median(inside)))
                    print(rows[-1], flush=True)
    finally:
        attention.FlashAttentionFunction.backward = orig
    json.dump(rows, open(os.path.join(os.environ.get("OUT", "."), "autograd_overhead.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
