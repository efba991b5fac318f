"""Time variants of the forward kernel (loads, warp specialization, blocks) on the GPU: which pays?
Every variant of a shape is timed in interleaved rounds and each one's median reported.
usage: python3 scripts/attn_variants.py  (prints a table; a JSON to $OUT/variants.json)
env overrides: CONFIGS="256x64w8s2,256x64w8s3p2,128x128w4s2p2L,..." (block_m x block_n, warps, stages, p2
for the q-block split into two halves, L for V loaded after the softmax),
SHAPES="8192x128x0,..." (seq_len x head_dim x causal), MODES="ptr,tma,tma+ws",
NAME (of the JSON); OLD=path/to/attention.py also times that copy of the module (before/after a change)"""
import importlib.util
import itertools
import json
import os
import re

import torch

from kernels import attention
from kernels.attention import interleaved_medians
from kernels.bench import _median_ms, _sdpa, attention_flops

B, H = 4, 16
SHAPES = [(8192, 128, False), (8192, 128, True), (8192, 64, False)]
CONFIGS = [(128, 64, 4, 3, 1, False), (128, 64, 8, 3, 1, False), (128, 128, 8, 2, 1, False),
           (128, 128, 8, 3, 1, False), (128, 64, 4, 4, 1, False), (128, 128, 4, 3, 1, False)]
MODES = [("ptr", False, False), ("tma", True, False), ("tma+ws", True, True)]
# overrides, e.g. CONFIGS="256x64w8s2,128x128w8s3" SHAPES="8192x128x0,8192x64x1" MODES="ptr,tma"
if os.environ.get("CONFIGS"):  # L: V_j loaded after the softmax (LATE_V)
    CONFIGS = []
    for c in os.environ["CONFIGS"].split(","):
        bm, bn, w, st, split, flags = re.fullmatch(r"(\d+)x(\d+)w(\d+)s(\d+)(?:p(\d))?(L?)", c).groups()
        CONFIGS.append((int(bm), int(bn), int(w), int(st), int(split or 1), "L" in flags))
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
ROUNDS = 5
rows = []
for n, d, causal in SHAPES:
    q, k, v = (torch.randn(B, H, n, d, device="cuda", dtype=torch.float16) for _ in range(3))
    ref = _sdpa("FLASH_ATTENTION")(q, k, v, causal)
    flops = attention_flops(B, H, n, d, causal)
    # every variant of a shape timed in interleaved rounds, the median of each (kernels.bench's method)
    fns = {name: (lambda name=name: _sdpa(name)(q, k, v, causal)) for name in ("FLASH_ATTENTION", "CUDNN_ATTENTION")}
    errs = {}
    for (bm, bn, w, st, split, late_v), (mode, tma, ws), (prefix, mod) in itertools.product(CONFIGS, MODES, modules):
        if late_v and prefix:  # the old module has no LATE_V: its V load is always late
            continue
        tag = (f"{prefix}{mode} {bm}x{bn} w{w} s{st}" + (f" split{split}" if split != 1 else "")
               + (" late-V" if late_v else ""))
        extra = ({"split": split} if split != 1 else {}) | ({"late_v": True} if late_v else {})
        fn = (lambda mod=mod, bm=bm, bn=bn, w=w, st=st, tma=tma, ws=ws, extra=extra: mod._launch(
            q, k, v, causal, None, bm, bn, num_warps=w, num_stages=st, use_tma=tma, warp_spec=ws, **extra))
        try:
            errs[tag] = float((fn()[0].float() - ref.float()).abs().max())
            fns[tag] = fn
        except Exception as e:  # a variant that does not compile is a result too
            rows.append(dict(n=n, d=d, causal=causal, variant=tag, error=str(e).splitlines()[0][:150]))
            print(rows[-1], flush=True)
    times, failed = interleaved_medians(fns, ROUNDS, _median_ms)
    for tag, ms in times.items():
        rows.append(dict(n=n, d=d, causal=causal, variant=tag, tflops=flops / ms / 1e9,
                         **({"err": errs[tag]} if tag in errs else {})))
        print(rows[-1], flush=True)
    for tag, err in failed.items():
        rows.append(dict(n=n, d=d, causal=causal, variant=tag, error=err))
    del q, k, v, ref
json.dump(rows, open(os.path.join(os.environ.get("OUT", "."), os.environ.get("NAME", "variants") + ".json"), "w"),
          indent=1)
print("\nbest per shape:")
for n, d, causal in SHAPES:
    rs = sorted([r for r in rows if r["n"] == n and r["d"] == d and r["causal"] == causal and "tflops" in r],
                key=lambda r: -r["tflops"])
    for r in rs[:10]:
        print(f"  N={n} d={d} causal={causal}: {r['variant']:36s} {r['tflops']:6.1f}")
