"""Time variants of the forward kernel (loads, warp specialization, blocks) on the GPU: which pays?
usage: python3 scripts/attn_variants.py  (prints a table; a JSON to $OUT/variants.json)
env overrides: CONFIGS="256x64w8s2,256x64w8s3p2,..." (block_m x block_n, warps, stages, and p2 for the
q-block split into two halves), SHAPES="8192x128x0,..." (seq_len x head_dim x causal), MODES="ptr,tma,tma+ws",
NAME (of the JSON); OLD=path/to/attention.py also times that copy of the module (before/after a change)"""
import importlib.util
import itertools
import json
import os
import sys

import torch

from kernels import attention
from kernels.bench import _median_ms, _sdpa, attention_flops

B, H = 4, 16
SHAPES = [(8192, 128, False), (8192, 128, True), (8192, 64, False)]
CONFIGS = [(128, 64, 4, 3, 1), (128, 64, 8, 3, 1), (128, 128, 8, 2, 1), (128, 128, 8, 3, 1), (128, 64, 4, 4, 1),
           (128, 128, 4, 3, 1)]
MODES = [("ptr", False, False), ("tma", True, False), ("tma+ws", True, True)]
# overrides, e.g. CONFIGS="256x64w8s2,128x128w8s3" SHAPES="8192x128x0,8192x64x1" MODES="ptr,tma"
if os.environ.get("CONFIGS"):
    CONFIGS = [tuple(int(x) for x in (c if "p" in c else c + "p1").replace("x", " ").replace("w", " ")
                     .replace("s", " ").replace("p", " ").split()) for c in os.environ["CONFIGS"].split(",")]
if os.environ.get("SHAPES"):
    SHAPES = [(int(n), int(d), bool(int(c))) for n, d, c in (sh.split("x") for sh in os.environ["SHAPES"].split(","))]
if os.environ.get("MODES"):
    MODES = [m for m in MODES if m[0] in os.environ["MODES"].split(",")]
modules = [("", attention)]
if os.environ.get("OLD"):
    spec = importlib.util.spec_from_file_location("old_attention", os.environ["OLD"])
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    modules.append(("old ", old))
rows = []
for n, d, causal in SHAPES:
    q, k, v = (torch.randn(B, H, n, d, device="cuda", dtype=torch.float16) for _ in range(3))
    ref = _sdpa("FLASH_ATTENTION")(q, k, v, causal)
    flops = attention_flops(B, H, n, d, causal)
    for name in ("FLASH_ATTENTION", "CUDNN_ATTENTION"):
        ms = _median_ms(lambda: _sdpa(name)(q, k, v, causal))
        rows.append(dict(n=n, d=d, causal=causal, variant=name, tflops=flops / ms / 1e9))
        print(rows[-1], flush=True)
    for (bm, bn, w, st, split), (mode, tma, ws), (prefix, mod) in itertools.product(CONFIGS, MODES, modules):
        if split != 1 and prefix:  # the old module has no split
            continue
        tag = f"{prefix}{mode} {bm}x{bn} w{w} s{st}" + (f" split{split}" if split != 1 else "")
        extra = {"split": split} if split != 1 else {}
        try:
            fn = lambda: mod._launch(q, k, v, causal, None, bm, bn, num_warps=w, num_stages=st,
                                     use_tma=tma, warp_spec=ws, **extra)
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
    for r in rs[:10]:
        print(f"  N={n} d={d} causal={causal}: {r['variant']:36s} {r['tflops']:6.1f}")
