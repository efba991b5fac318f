"""Uploaded traces in bounded server memory (viz/uploads.py): one budget for every visitor, the
oldest unused freed first, the same file held once, and memory given back when visitors leave."""
import dataclasses
import gc
import os

import numpy as np
import pytest

from kernels.trace import TraceConfig, capture_trace
from viz.uploads import UploadStore, trace_bytes


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _copy(trace, k: int):
    """A distinct trace of the same size (as another visitor's file would be)."""
    return dataclasses.replace(trace, **{n: v.copy() + (0 if v.dtype.kind != "f" else k * 0.0)
                                        for n, v in vars(trace).items() if isinstance(v, np.ndarray)})


@pytest.fixture(scope="module")
def big():
    return capture_trace(TraceConfig(seq_len=512, head_dim=128, block_m=16, block_n=16))


def test_twenty_visitors_upload_and_leave_and_the_memory_comes_back(big):
    size = trace_bytes(big) / 2**20
    assert size > 15, f"the test trace is only {size:.0f} MiB"
    live = set()
    store = UploadStore(4 << 30, lambda: live)
    gc.collect()
    start = _rss_mb()
    for k in range(20):
        live.add(f"visitor-{k}")
        store.put(f"file-{k}", _copy(big, k), f"visitor-{k}")
    held = _rss_mb()
    assert held - start > 10 * size, f"20 visitors' traces should be held: {held - start:.0f} MiB"
    live.clear()  # every page closed
    assert store.prune() > 0 and not store.entries
    gc.collect()
    back = _rss_mb()
    assert back - start < 100, f"after everyone left the server holds {back - start:.0f} MiB more than at the start"


def test_one_budget_for_everyone(big):
    size = trace_bytes(big)
    live = {"a", "b", "c"}
    store = UploadStore(int(2.5 * size), lambda: live)
    store.put("one", _copy(big, 1), "a")
    store.put("two", _copy(big, 2), "b")
    with pytest.raises(ValueError, match="in use by other visitors"):
        store.put("three", _copy(big, 3), "c")
    live.discard("a")  # visitor a left: its trace is the oldest and nobody's now
    store.put("three", _copy(big, 3), "c")
    assert set(store.entries) == {"two", "three"}
    store.put("two", big, "c")  # the same file again: held once, for both visitors
    assert store.entries["two"].sessions == {"b", "c"} and len(store.entries) == 2
    with pytest.raises(ValueError, match=r"takes \d+ MiB; the server holds at most"):
        UploadStore(size // 2, lambda: live).put("x", big, "a")
    assert store.get("gone", "a") is None
