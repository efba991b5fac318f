"""Does our backward() itself run slower on autograd's CUDA worker thread than on the calling thread?
cProfile enabled inside FlashAttentionFunction.backward only, 300 small forward + backward calls
(1 x 1 x 128 x 64) on each thread, twice; prints each run's per-call time and its top functions.
usage: python3 scripts/autograd_thread_profile.py   (output kept in
kernels/results/probes/h100-2026-11-23-autograd-thread-profile.txt)
"""
import cProfile
import io
import pstats
import time

import torch

from kernels import attention
from kernels.bench_backward import _grads


def main():
    q, k, v = (torch.randn(1, 1, 128, 64, device="cuda", dtype=torch.float16, requires_grad=True) for _ in range(3))
    do = torch.randn_like(q)
    ours = lambda q, k, v, causal: attention.flash_attention(q, k, v, causal=causal)  # noqa: E731
    orig = attention.FlashAttentionFunction.backward
    profiler = {"on": None}  # the cProfile.Profile to run inside backward(), or None

    def profiled(ctx, g):
        p = profiler["on"]
        if p is None:
            return orig(ctx, g)
        p.enable()
        try:
            return orig(ctx, g)
        finally:
            p.disable()

    attention.FlashAttentionFunction.backward = staticmethod(profiled)
    try:
        for thread in ("worker", "calling", "worker", "calling"):
            with torch.autograd.set_multithreading_enabled(thread == "worker"):
                for _ in range(100):
                    _grads(ours, q, k, v, do, False)
                torch.cuda.synchronize()
                p = profiler["on"] = cProfile.Profile()
                t0 = time.perf_counter()
                for _ in range(300):
                    _grads(ours, q, k, v, do, False)
                torch.cuda.synchronize()
                per_call = (time.perf_counter() - t0) / 300 * 1e6
                profiler["on"] = None
                out = io.StringIO()
                pstats.Stats(p, stream=out).sort_stats("tottime").print_stats(14)
                text = out.getvalue()
                print(f"=== {thread} thread: {per_call:.0f} us per call (profiled)")
                print(text[text.find("ncalls"):][:2600])
    finally:
        attention.FlashAttentionFunction.backward = orig


if __name__ == "__main__":
    main()
