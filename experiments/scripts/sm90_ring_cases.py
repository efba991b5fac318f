"""compile_sm90.py cases for what the interpreter accepts and triton's compiler may refuse: the
ring's pair launches (issue 24: the forward with TRACE on and a float32 out, causal given as NumPy
bools, as the ranks launch them; the H200 refused np.bool_ as an `if` condition before launch.meta
made it a bool), and the paths issue 20 added (INTERPRETER_GAPS). Run before spending device time:
    /tmp/v36/bin/python experiments/scripts/compile_sm90.py . experiments/scripts/sm90_ring_cases.py OUT.json"""
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
    return [(f"ring pair causal={c!r}", _pair(c)) for c in (np.False_, np.True_, False, True)] + INTERPRETER_GAPS()


def _softmax(variant, chunk):
    from kernels import softmax

    x = torch.empty(1, 5)
    return lambda: softmax._launch(variant, x, torch.empty_like(x), 16, 1, counts=torch.zeros(2, dtype=torch.int64),
                                   chunk=chunk, **({"m_trace": torch.empty(1, 8), "l_trace": torch.empty(1, 8)}
                                                   if variant == "online" else {}))


def _hand():
    from kernels import flash_fwd, traffic
    from kernels.launch import Config
    from kernels.trace_buffers import TraceBuffers

    q, k, v = (torch.empty(1, 1, 18, 16) for _ in range(3))
    buf = TraceBuffers(18, 16, 16, 16, (0, 1), "cpu", counter_keys=traffic.FA2_COUNTERS, n_keys=18)
    return lambda: flash_fwd.launch(q, k, v, False, 0.5, Config(16, 16, num_stages=2), trace=buf, key_tile=2)


def INTERPRETER_GAPS():
    """What the interpreter runs and the compiler may refuse: the paths issue 20 added (a typed
    row's chunk below the tile, a hand example's KEY_TILE) and the ring's NumPy compile-time options.
    Standard attention's kernels are not here (standard.run moves its inputs to the device): their
    plain-int globals are what tests/test_jit_globals.py catches on CPU; they ran on the H200."""
    return [(f"softmax {v} chunk 3", _softmax(v, 3)) for v in ("naive", "safe", "online")] + [("hand KEY_TILE 2",
                                                                                                _hand())]
