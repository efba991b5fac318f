"""Sweep launch parameters of the softmax kernels where kernels.bench fell short (H100, 2026-11-22):
single-pass on 4096 x 4096 fp16 (rows per program, warps) and online on 1M-column rows (chunk width,
warps), with a same-size device copy next to each for scale. Prints a table, JSON to $OUT.
usage: python3 scripts/softmax_probe.py
"""
import json
import os

import torch
import triton

from kernels import softmax
from kernels.bench import _median_ms


def main():
    rows = []

    def add(tag, shape, dtype, nbytes, fn):
        ms = _median_ms(fn)
        rows.append(dict(shape=shape, dtype=dtype, variant=tag, GBps=nbytes / ms / 1e6))
        print(rows[-1], flush=True)

    cases = [((4096, 4096), torch.float16, "single_pass"), ((4096, 4096), torch.float32, "single_pass"),
             ((256, 1048576), torch.float16, "online"), ((256, 1048576), torch.float32, "online"),
             ((1024, 262144), torch.float32, "online")]
    for (r, c), dt, variant in cases:
        x = torch.randn(r, c, device="cuda", dtype=dt)
        y = torch.empty_like(x)
        nbytes = 2 * x.numel() * x.element_size()
        shape = f"{r}x{c}"
        add("torch", shape, str(dt), nbytes, lambda: torch.softmax(x, -1))
        add("copy same size", shape, str(dt), nbytes, lambda: y.copy_(x))
        add("ours default", shape, str(dt), nbytes, lambda: softmax.softmax(x, variant=variant, out=y))
        ref = torch.softmax(x.float(), -1)
        if variant == "single_pass":
            sweep = [(rp, w, 1) for rp in (1, 2, 4) for w in (4, 8, 16)]
            kernel = softmax.softmax_single_pass_kernel
            block = c
        else:
            sweep = [(1, w, blk) for blk in (2048, 4096, 8192, 16384) for w in (4, 8, 16)]
            kernel = softmax.softmax_online_kernel
        for rp, w, blk in sweep:
            if variant == "single_pass":
                fn = lambda: kernel[(triton.cdiv(r, rp),)](y, x, y, y.stride(0), x.stride(0), r, c, BLOCK=block,
                                                             ROWS=rp, COUNT=False, num_warps=w)
                tag = f"rows={rp} warps={w}"
            else:
                fn = lambda: kernel[(r,)](y, x, y, y, y, y.stride(0), x.stride(0), 0, r, c, BLOCK=blk, ROWS=1,
                                          COUNT=False, TRACE=False, num_warps=w)
                tag = f"block={blk} warps={w}"
            fn()
            err = float((y.float() - ref).abs().max())
            add(tag + f" err={err:.0e}", shape, str(dt), nbytes, fn)
        del x, y, ref
        torch.cuda.empty_cache()
    json.dump(rows, open(os.path.join(os.environ.get("OUT", "."), "softmax_probe.json"), "w"), indent=1)
    print("\nranked:")
    for key in dict.fromkeys((r["shape"], r["dtype"]) for r in rows):
        for r in sorted([r for r in rows if (r["shape"], r["dtype"]) == key], key=lambda r: -r["GBps"])[:6]:
            print(f"  {key[0]:>12} {key[1]:14s} {r['variant']:32s} {r['GBps']:7.0f}")


if __name__ == "__main__":
    main()
