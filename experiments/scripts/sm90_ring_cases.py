"""compile_sm90.py cases for the ring's pair launches (issue 24): the forward with TRACE on and a
float32 out, causal given as NumPy bools (the ring's pair kinds compared in NumPy), as the ranks
launch them; the H200 refused np.bool_ as an `if` condition before launch.meta made it a bool."""
import numpy as np
import torch


def _pair(causal):
    from kernels import flash_fwd, traffic
    from kernels.launch import Config
    from kernels.trace_buffers import TraceBuffers

    q, k, v = (torch.empty(1, 1, 512, 64, dtype=torch.float16) for _ in range(3))
    out = torch.empty(1, 1, 512, 64)
    buf = TraceBuffers(512, 64, 64, 64, (), "cpu", counter_keys=traffic.FA2_COUNTERS)
    return lambda: flash_fwd.launch(q, k, v, causal, 0.125, Config(64, 64), trace=buf, out=out)


def CASES():
    return [(f"ring pair causal={c!r}", _pair(c)) for c in (np.False_, np.True_, False, True)]
