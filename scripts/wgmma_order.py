"""Print the order of wgmma issues, commits, waits and exp2s in the PTX of the forward kernels, as
the installed Triton compiles them on this GPU: is the P V product left in flight over a softmax?
usage: python3 scripts/wgmma_order.py   (needs a GPU; compiles, does not time)"""
import importlib.util
import os
import re

import torch

import kernels  # noqa: F401  (kernels.backend first)


spec = importlib.util.spec_from_file_location("probe", os.path.join(os.path.dirname(__file__), "attn_split_probe.py"))
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


def order(ptx: str) -> str:
    seq = re.findall(r"(wgmma\.mma_async|wgmma\.wait_group\.sync\.aligned\s+\d+|wgmma\.commit_group|ex2\.approx\S*)", ptx)
    runs = []
    for x in seq:
        x = re.sub(r"wgmma\.|\.sync\.aligned|approx\.ftz\.|\s+", "", x)
        if runs and runs[-1][0] == x:
            runs[-1][1] += 1
        else:
            runs.append([x, 1])
    return " ".join(f"{a}x{b}" for a, b in runs)


q, k, v = (torch.randn(1, 2, 1024, 128, device="cuda", dtype=torch.float16) for _ in range(3))
kernel, _ = probe.defer(q, k, v, 128, 64, 8, 3)
print("deferred PV, 128 x 64, 8 warps, 3 stages:\n ", order(kernel.asm["ptx"]))
kernel, _ = probe.split(q, k, v, 128, 64, 4, 2, 1, 0)
print("plain loop, 128 x 64, 4 warps, 2 stages:\n ", order(kernel.asm["ptx"]))
