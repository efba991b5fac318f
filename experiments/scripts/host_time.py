"""Issue 22, small calls: where the host's time goes in one eager forward + backward at N 1024
(b4 h16 fp16), against SDPA's FLASH backend in the same process. Per case: the GPU time per call
(CUDA events over back-to-back calls), the host time per call (wall time of the Python call with
the GPU queue drained first, so nothing waits on the GPU), then a cProfile of the calls (top
functions by own time). Writes a JSON of the figures to argv[1]."""
import cProfile
import io
import json
import pstats
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from kernels.attention import flash_attention


def ours(q, k, v, do, causal):
    flash_attention(q, k, v, causal=causal).backward(do)


def flash(q, k, v, do, causal):
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        F.scaled_dot_product_attention(q, k, v, is_causal=causal).backward(do)


def gpu_ms(fn, iters=30):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def host_us(fn, iters=30):
    times = []
    for _ in range(iters):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    torch.cuda.synchronize()
    times.sort()
    return times[len(times) // 2] * 1e6


def main(path, head_dims=(128,), causals=(True,), n=1024):
    rows = []
    for d in head_dims:
        for causal in causals:
            q, k, v = (torch.randn(4, 16, n, d, device="cuda", dtype=torch.float16, requires_grad=True) for _ in range(3))
            do = torch.randn_like(q)
            t = time.perf_counter()
            ours(q, k, v, do, causal)
            torch.cuda.synchronize()
            first = time.perf_counter() - t
            for fn in (ours, flash):
                for _ in range(3):
                    fn(q, k, v, do, causal)
            row = dict(head_dim=d, causal=causal, n=n, first_call_s=first)
            for _round in range(2):  # interleaved rounds
                for name, fn in (("ours", ours), ("flash", flash)):
                    row.setdefault(f"{name}_gpu_ms", []).append(gpu_ms(lambda fn=fn: fn(q, k, v, do, causal)))
                    row.setdefault(f"{name}_host_us", []).append(host_us(lambda fn=fn: fn(q, k, v, do, causal)))
            for key in [k for k in row if k.endswith(("_ms", "_us"))]:
                row[key] = min(row[key])
            row["vs_flash"] = row["flash_gpu_ms"] / row["ours_gpu_ms"]
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(20):
                ours(q, k, v, do, causal)
            prof.disable()
            torch.cuda.synchronize()
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(30)
            row["profile"] = s.getvalue()
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(45)
            row["profile_cumulative"] = s.getvalue()
            print(f"d{d} causal {causal}: first {first:.1f} s; ours {row['ours_gpu_ms']:.3f} ms/call "
                  f"(host {row['ours_host_us']:.0f} us), FLASH {row['flash_gpu_ms']:.3f} ms (host "
                  f"{row['flash_host_us']:.0f} us): {row['vs_flash']:.2f}x", flush=True)
            rows.append(row)
    with open(path, "w") as f:
        json.dump(dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__,
                       date=time.strftime("%Y-%m-%dT%H:%M:%S%z"), rows=rows), f, indent=1)
    print(rows[0]["profile"][:6000])
    print(rows[0]["profile_cumulative"][:8000])


if __name__ == "__main__":
    main(sys.argv[1])
