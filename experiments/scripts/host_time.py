"""Issue 22, small calls: where the host's time goes in one eager forward + backward at N 1024
(b4 h16 fp16; and two cases at 2048), against SDPA's FLASH backend in the same process. Per case:
the GPU time per call (CUDA events over back-to-back calls), the host time per call (wall time
of the Python call with the GPU queue drained first, so nothing waits on the GPU), for the eager
route (an autograd Function replaying CUDA graphs per shape, kernels/graphs.py), the same without
graphs (launches straight from kernels/launch.py's plans), the same without launch plans, the
route through the torch.ops.fa_viz operators, and the forward alone; full and causal; then a
cProfile of the eager calls (top functions by own time). Writes a JSON of the figures to argv[1]."""
import cProfile
import io
import json
import pstats
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from kernels import attention, graphs, launch
from kernels.attention import flash_attention
from kernels.limits import GRAPH_MAX_ELEMENTS


def ours(q, k, v, do, causal):
    flash_attention(q, k, v, causal=causal).backward(do)


def _route(operators=False, plans=True, graphed=True):
    """The eager forward + backward with the route's switches set for the call, then set back."""
    def run(q, k, v, do, causal):
        attention.EAGER_THROUGH_OPERATORS, launch.USE_PLANS, graphs.ENABLED = operators, plans, graphed
        try:
            flash_attention(q, k, v, causal=causal).backward(do)
        finally:
            attention.EAGER_THROUGH_OPERATORS, launch.USE_PLANS, graphs.ENABLED = False, True, True
    return run


ours_ungraphed = _route(graphed=False)  # launch plans, no CUDA graphs
ours_operators = _route(operators=True)  # both torch.ops.fa_viz operators and their autograd (before issue 22)
ours_unplanned = _route(plans=False, graphed=False)  # every launch through fn[grid], no graphs: before both


def ours_forward(q, k, v, do, causal):
    with torch.no_grad():
        flash_attention(q, k, v, causal=causal)


def flash_forward(q, k, v, do, causal):
    with torch.no_grad(), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        F.scaled_dot_product_attention(q, k, v, is_causal=causal)


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


CASES = [(1024, 128, False), (1024, 128, True), (1024, 64, False), (1024, 64, True), (2048, 128, True),
         (2048, 64, False)]


def main(path, cases=CASES):
    graphs.MAX_ELEMENTS = 1 << 30  # graphs at 2048 too, to see where kernels/graphs.py's threshold belongs
    rows = []
    for n, d, causal in cases:
        q, k, v = (torch.randn(4, 16, n, d, device="cuda", dtype=torch.float16, requires_grad=True) for _ in range(3))
        do = torch.randn_like(q)
        t = time.perf_counter()
        ours(q, k, v, do, causal)
        torch.cuda.synchronize()
        first = time.perf_counter() - t
        impls = (("ours", ours), ("ungraphed", ours_ungraphed), ("unplanned", ours_unplanned),
                  ("operators", ours_operators), ("flash", flash),
                 ("ours_fwd", ours_forward), ("flash_fwd", flash_forward))
        for _name, fn in impls:
            for _ in range(3):
                fn(q, k, v, do, causal)
        row = dict(head_dim=d, causal=causal, n=n, first_call_s=first)
        for _round in range(3):  # interleaved rounds
            for name, fn in impls:
                row.setdefault(f"{name}_gpu_ms", []).append(gpu_ms(lambda fn=fn, a=(q, k, v, do, causal): fn(*a)))
                row.setdefault(f"{name}_host_us", []).append(host_us(lambda fn=fn, a=(q, k, v, do, causal): fn(*a)))
        for key in [k for k in row if k.endswith(("_ms", "_us"))]:
            row[key] = min(row[key])
        row["vs_flash"] = row["flash_gpu_ms"] / row["ours_gpu_ms"]
        row["ungraphed_vs_flash"] = row["flash_gpu_ms"] / row["ungraphed_gpu_ms"]
        row["operators_vs_flash"] = row["flash_gpu_ms"] / row["operators_gpu_ms"]
        row["unplanned_vs_flash"] = row["flash_gpu_ms"] / row["unplanned_gpu_ms"]
        row["fwd_vs_flash"] = row["flash_fwd_gpu_ms"] / row["ours_fwd_gpu_ms"]
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
        print(f"N{n} d{d} causal {causal}: first {first:.1f} s; ours {row['ours_gpu_ms']:.3f} ms/call "
              f"(host {row['ours_host_us']:.0f} us), FLASH {row['flash_gpu_ms']:.3f} ms (host "
              f"{row['flash_host_us']:.0f} us): {row['vs_flash']:.2f}x; without CUDA graphs "
              f"{row['ungraphed_gpu_ms']:.3f} ms (host {row['ungraphed_host_us']:.0f} us) "
              f"{row['ungraphed_vs_flash']:.2f}x; without graphs or launch plans "
              f"{row['unplanned_gpu_ms']:.3f} ms (host {row['unplanned_host_us']:.0f} us) "
              f"{row['unplanned_vs_flash']:.2f}x; through the operators "
              f"{row['operators_gpu_ms']:.3f} ms (host {row['operators_host_us']:.0f} us) "
              f"{row['operators_vs_flash']:.2f}x; forward alone {row['ours_fwd_gpu_ms']:.3f} ms (host "
              f"{row['ours_fwd_host_us']:.0f} us) vs FLASH {row['flash_fwd_gpu_ms']:.3f} ms (host "
              f"{row['flash_fwd_host_us']:.0f} us): {row['fwd_vs_flash']:.2f}x", flush=True)
        rows.append(row)
    with open(path, "w") as f:
        json.dump(dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, plan_stats=launch.plan_stats,
                       graph_stats=graphs.stats, cudnn=torch.backends.cudnn.version(),
                       graphs_limit=GRAPH_MAX_ELEMENTS, graphs_forced_up_to=graphs.MAX_ELEMENTS,
                       date=time.strftime("%Y-%m-%dT%H:%M:%S%z"), rows=rows), f, indent=1)
    print(rows[0]["profile"][:5000])
    print(rows[0]["profile_cumulative"][:5000])


if __name__ == "__main__":
    main(sys.argv[1])
