"""H200 probe: forward and forward + backward of ours against SDPA FLASH and cuDNN at a few shapes,
eager and replayed from a CUDA graph, and the wall time of eager calls. Writes JSON to argv[1]."""
import json
import sys
import time

import torch

from bench.backward import grads
from bench.timing import attention_flops, graph_ms, interleaved_ms, sdpa
from kernels.attention import flash_attention, tuned_config_name

IMPLS = {"ours": lambda q, k, v, c: flash_attention(q, k, v, causal=c), "flash": sdpa("FLASH_ATTENTION"),
         "cudnn": sdpa("CUDNN_ATTENTION")}


def case(n, d, causal) -> dict:
    q, k, v = (torch.randn(4, 16, n, d, device="cuda", dtype=torch.float16, requires_grad=True) for _ in range(3))
    do = torch.randn(4, 16, n, d, device="cuda", dtype=torch.float16)
    fl = attention_flops(4, 16, n, d, causal)
    fns = {}
    for name, fn in IMPLS.items():
        fns[("fwd", name)] = lambda fn=fn: fn(q, k, v, causal)
        fns[("both", name)] = lambda fn=fn: grads(fn, q, k, v, do, causal)
        fns[("both", name)]()
    ms, failed = interleaved_ms(fns)
    out = {"seq_len": n, "head_dim": d, "causal": causal, "config": tuned_config_name(), "failed": failed}
    for (kind, name), t in ms.items():
        out[f"{kind}_{name}_ms"] = t
        out[f"{kind}_{name}_tflops"] = (1 if kind == "fwd" else 3.5) * fl / t / 1e9
    for name in IMPLS:
        try:
            out[f"graph_{name}_ms"] = graph_ms(fns[("both", name)])
        except RuntimeError as e:
            out[f"graph_{name}_note"] = str(e)[:120]
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(20):
            fns[("both", name)]()
        out[f"host_{name}_us"] = (time.perf_counter() - t0) / 20 * 1e6  # enqueue time: the host's share
        torch.cuda.synchronize()
    return out


result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cases": []}
for shape in [(1024, 64, True), (1024, 128, False), (4096, 128, True), (8192, 64, False), (16384, 128, False)]:
    result["cases"].append(case(*shape))
    print(json.dumps(result["cases"][-1]), flush=True)
with open(sys.argv[1], "w") as f:
    json.dump(result, f, indent=1)
