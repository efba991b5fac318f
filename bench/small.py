"""The Benchmarks page's live run, bounded: seq_len 1024 and 2048, head_dim 64, batch 2, 8 heads,
causal or not; softmax 4096 x 4096 float32; the ceilings. `python -m bench --small` runs it."""
import time

from bench.attention import bench_attention
from bench.softmax import bench_softmax
from bench.timing import ceilings, environment


def small_run(progress=None) -> dict:
    """`progress(fraction, message)`. `seconds` in the result is its wall time, compiling and
    tuning included (the first run in a process compiles every candidate config)."""
    progress = progress or (lambda f, m: None)
    t0 = time.perf_counter()
    progress(0.0, "ceilings")
    result = {"env": environment(), "ceilings": ceilings()}
    result["attention"] = bench_attention([1024, 2048], [64], batch=2, heads=8,
                                          progress=lambda f, m: progress(0.1 + 0.6 * f, m))
    result["softmax"] = bench_softmax([(4096, 4096)], dtypes=("float32",),
                                      progress=lambda f, m: progress(0.7 + 0.3 * f, m))
    result["seconds"] = time.perf_counter() - t0
    progress(1.0, "done")
    return result
