"""The trace file format (kernels/trace_io.py): round trips of both kinds, and a corpus of malformed
files, bombs included, each refused with a message that says what is wrong, in bounded memory."""
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kernels import trace_io
from kernels.ring_trace import RingTrace
from kernels.trace import AttentionTrace, TraceConfig, capture_trace
from kernels.trace_backward import BackwardTrace, capture_backward_trace
from tests.trace_corpus import corpus

ROOT = Path(__file__).resolve().parents[1]
CFG = TraceConfig(seq_len=40, head_dim=16, block_m=16, block_n=16, causal=True)  # ragged, skipped tiles


@pytest.fixture(scope="module")
def good():
    return {"forward": capture_trace(CFG), "backward": capture_backward_trace(CFG, do_seed=3),
            "fa1": capture_trace(TraceConfig(**{**dict(CFG.fields()), "loop_order": "fa1"})),
            "split": capture_trace(TraceConfig(**{**dict(CFG.fields()), "kv_splits": 3}))}


@pytest.fixture(scope="module")
def files(good):
    return corpus(trace_io.to_bytes(good["forward"]), trace_io.to_bytes(good["backward"]),
                  trace_io.to_bytes(good["split"]))


def _same(a, b) -> None:
    assert type(a) is type(b) and a.config == b.config
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), name
        else:
            assert x == y, name


@pytest.mark.parametrize("kind", ["forward", "backward", "fa1", "split"])
def test_round_trip(good, kind, tmp_path):
    path = tmp_path / f"{kind}.npz"
    trace_io.save(good[kind], path)
    back = trace_io.load(path)
    _same(good[kind], back)
    assert isinstance(back, BackwardTrace if kind == "backward" else AttentionTrace)
    _same(good[kind], trace_io.load(io.BytesIO(trace_io.to_bytes(good[kind])), "x.npz"))


def test_a_ring_trace_round_trips():
    trace = trace_io.load(ROOT / "scenes" / "ring-contiguous.npz")
    assert isinstance(trace, RingTrace)
    back = trace_io.load(io.BytesIO(trace_io.to_bytes(trace)), "back.npz")
    assert back.config == trace.config and back.transport == trace.transport
    for name in trace.__dataclass_fields__:
        if isinstance(getattr(trace, name), np.ndarray):
            assert np.array_equal(getattr(back, name), getattr(trace, name)), name


def test_save_refuses_other_objects():
    with pytest.raises(ValueError, match="trace must be an AttentionTrace, a BackwardTrace, a SoftmaxTrace or a "
                                         "RingTrace, got dict"):
        trace_io.save({}, io.BytesIO())


def test_every_malformed_file_is_refused_with_its_reason(files):
    assert len(files) >= 60
    for name, data, pattern in files:
        with pytest.raises(ValueError) as e:
            trace_io.load(io.BytesIO(data), name)
        assert re.search(pattern, str(e.value)), f"{name}: refused as {e.value!r}, want /{pattern}/"
        assert name in str(e.value), f"{name}: the message does not name the file: {e.value}"


LOAD_ALL = """
import io, resource, sys
from kernels import trace_io
paths = sys.argv[1:]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for p in paths:
    try:
        trace_io.load(p)
        print("ACCEPTED", p)
    except ValueError:
        pass
print("growth_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_loading_bombs_stays_in_bounded_memory(files, tmp_path):
    """A fresh process loads every file of the corpus, the 1-4 GiB bombs included; its peak RSS
    may grow by at most 64 MiB (the good trace itself is under 1 MiB)."""
    paths = []
    for name, data, _ in files:
        paths.append(tmp_path / f"{name}.npz")
        paths[-1].write_bytes(data)
    out = subprocess.run([sys.executable, "-c", LOAD_ALL, *map(str, paths)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, check=True).stdout
    assert "ACCEPTED" not in out, out
    growth = int(re.search(r"growth_kib (\d+)", out).group(1))
    assert growth < 64 * 1024, f"loading the corpus grew the peak RSS by {growth / 1024:.0f} MiB"


# ---------------------------------------------------------------- lying files: well formed, not the kernel's
@pytest.fixture(scope="module")
def lying(good):
    from kernels.softmax_trace import SoftmaxConfig, capture_softmax
    from tests.lying_corpus import lies

    files = {k: trace_io.to_bytes(good[k]) for k in ("forward", "fa1", "split", "backward")}
    files["softmax"] = trace_io.to_bytes(capture_softmax(SoftmaxConfig(length=40, block=16, scenario="increasing")))
    files["ring"] = (ROOT / "scenes" / "ring-zigzag.npz").read_bytes()  # recorded by 4 gloo ranks
    return lies(files)


def test_the_corpus_is_large(files, lying):
    assert len(files) + len(lying) >= 150, (len(files), len(lying))


def test_every_lying_file_is_refused(lying):
    """A well-formed file whose numbers are not what a kernel computes from its own inputs is a
    ValueError naming the file: never accepted, never another exception."""
    accepted, crashed = [], []
    for name, data in lying:
        try:
            trace_io.load(io.BytesIO(data), name)
            accepted.append(name)
        except ValueError as e:
            assert name in str(e), f"{name}: the refusal does not name the file: {e}"
        except Exception as e:
            crashed.append(f"{name}: {type(e).__name__}: {e}")
    assert not crashed, crashed[:5]
    assert not accepted, f"{len(accepted)} lying files accepted as the kernel's numbers: {accepted[:10]}"


def test_lying_files_load_in_bounded_memory(lying, tmp_path):
    """Lying files in a fresh process: refused, the peak RSS growing by under 300 MB over the imports."""
    paths = []
    for name, data in lying[::7]:
        paths.append(tmp_path / f"{name}.npz")
        paths[-1].write_bytes(data)
    out = subprocess.run([sys.executable, "-c", LOAD_ALL, *map(str, paths)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, check=True).stdout
    assert "ACCEPTED" not in out, out
    peak = int(re.search(r"growth_kib (\d+)", out).group(1))
    assert peak < 300 * 1024, f"peak RSS grew by {peak / 1024:.0f} MB"
