"""Time variants of the forward kernel (loads, warp specialization, blocks) on the GPU: which pays?
usage: python3 scripts/attn_variants.py  (prints a table; a JSON to $OUT/variants.json)
env overrides: CONFIGS="256x64w8s2,..." (block_m x block_n, warps, stages), SHAPES="8192x128x0,..."
(seq_len x head_dim x causal), MODES="ptr,tma,tma+ws", NAME (of the JSON)"""
import json
import os
import sys

import torch

from kernels import attention
from kernels.bench import _median_ms, _sdpa, attention_flops

B, H = 4, 16
SHAPES = [(8192, 128, False), (8192, 128, True), (8192, 64, False)]
CONFIGS = [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 2), (128, 128, 8, 3), (128, 64, 4, 4), (128, 128, 4, 3)]
MODES = [("ptr", False, False), ("tma", True, False), ("tma+ws", True, True)]
# overrides, e.g. CONFIGS="256x64w8s2,128x128w8s3" SHAPES="8192x128x0,8192x64x1" MODES="ptr,tma"
if os.environ.get("CONFIGS"):
    CONFIGS = [tuple(int(x) for x in c.replace("x", " ").replace("w", " ").replace("s", " ").split())
               for c in os.environ["CONFIGS"].split(",")]
if os.environ.get("SHAPES"):
    SHAPES = [(int(n), int(d), bool(int(c))) for n, d, c in (sh.split("x") for sh in os.environ["SHAPES"].split(","))]
if os.environ.get("MODES"):
    MODES = [m for m in MODES if m[0] in os.environ["MODES"].split(",")]
rows = []
for n, d, causal in SHAPES:
    q, k, v = (torch.randn(B, H, n, d, device="cuda", dtype=torch.float16) for _ in range(3))
    ref = _sdpa("FLASH_ATTENTION")(q, k, v, causal)
    flops = attention_flops(B, H, n, d, causal)
    for name in ("FLASH_ATTENTION", "CUDNN_ATTENTION"):
        ms = _median_ms(lambda: _sdpa(name)(q, k, v, causal))
        rows.append(dict(n=n, d=d, causal=causal, variant=name, tflops=flops / ms / 1e9))
        print(rows[-1], flush=True)
    for bm, bn, w, st in CONFIGS:
        for mode, tma, ws in MODES:
            tag = f"{mode} {bm}x{bn} w{w} s{st}"
            try:
                fn = lambda: attention._launch(q, k, v, causal, None, bm, bn, num_warps=w, num_stages=st,
                                               use_tma=tma, warp_spec=ws)
                err = float((fn()[0].float() - ref.float()).abs().max())
                ms = _median_ms(fn)
                rows.append(dict(n=n, d=d, causal=causal, variant=tag, tflops=flops / ms / 1e9, err=err))
            except Exception as e:
                rows.append(dict(n=n, d=d, causal=causal, variant=tag, error=str(e).splitlines()[0][:150]))
            print(rows[-1], flush=True)
json.dump(rows, open(os.path.join(os.environ.get("OUT", "."), os.environ.get("NAME", "variants") + ".json"), "w"),
          indent=1)
print("\nbest per shape:")
for n, d, causal in SHAPES:
    rs = sorted([r for r in rows if r["n"] == n and r["d"] == d and r["causal"] == causal and "tflops" in r],
                key=lambda r: -r["tflops"])
    for r in rs[:6]:
        print(f"  N={n} d={d} causal={causal}: {r['variant']:28s} {r['tflops']:6.1f}")
