"""The traced kernel with the masks of issue 23: each trace goes through the file format and the
loader that trusts nothing (every row's state against float64, each tile's kind against the kernel's
loop bounds, the counters against the traffic model), the tiles a mask skips are never loaded (the
kernel's own counts), GQA's K/V tiles are loaded once for the whole group, and a file that lies
about how a tile ran is refused."""
import dataclasses
import io

import numpy as np
import pytest

from kernels import masks, steps, trace_io, traffic, truth
from kernels.trace import TraceConfig, capture_trace

C = dict(head_dim=16, block_m=16, block_n=32)
CONFIGS = [
    TraceConfig(seq_len=150, causal=True, window_left=40, **C),
    TraceConfig(seq_len=150, window_left=20, window_right=20, dtype="float16", **C),
    TraceConfig(seq_len=130, causal=True, documents=4, seed=3, **C),
    TraceConfig(seq_len=100, documents=3, seed=1, **C),
    TraceConfig(seq_len=70, causal=True, group=4, **C),
    TraceConfig(seq_len=200, causal=True, q_len=3, group=4, **C),  # decode + GQA: 12 rows in one q-block
    TraceConfig(seq_len=200, causal=True, q_len=1, group=8, kv_splits=4, **C),  # flash-decoding
    TraceConfig(seq_len=160, causal=True, window_left=50, kv_splits=3, **C),
]


def _id(c):
    return (f"N{c.seq_len}-{'causal' if c.causal else 'full'}-w{c.window_left},{c.window_right}-docs{c.documents}"
            f"-g{c.group}-q{c.q_len}-s{c.kv_splits}")


@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
def test_a_masked_trace_holds_and_loads_back(cfg):
    trace = capture_trace(cfg)
    back = trace_io.load(io.BytesIO(trace_io.to_bytes(trace)), "masked.npz")  # every check of kernels/trace_verify.py
    assert np.array_equal(back.tile_kind, trace.tile_kind) and back.config == cfg
    assert np.array_equal(trace.tile_kind, cfg.tile_kinds()), "the kernel ran other tiles than its loop bounds say"
    bad = list(truth.forward_violations(trace, label=_id(cfg)))
    assert not bad, f"{len(bad)} equations do not hold, e.g. " + "; ".join(map(str, bad[:3]))
    seen = cfg.masks().allowed(0, cfg.n_rows)
    for i in range(cfg.n_q_blocks):
        for j in range(cfg.n_kv_blocks):
            tile = seen[cfg.rows(i).start:cfg.rows(i).stop, cfg.keys(j).start:cfg.keys(j).stop]
            if trace.tile_kind[i, j] == masks.SKIPPED:
                assert not tile.any() and trace.visit_order[i, j] == -1, (i, j)
            elif trace.tile_kind[i, j] == masks.WHOLE:
                assert tile.all(), (i, j)


def test_skipped_tiles_are_never_loaded_and_the_group_shares_each_kv_tile():
    """A window skips tiles: the kernel's own K, V counts fall to what its visited tiles hold. Decode
    with 8 query heads per K/V head: the group's 8 rows are one q-block, so K and V are read once
    (counted), not once per head as 8 separate programs would."""
    window = capture_trace(TraceConfig(seq_len=256, causal=True, window_left=32, **C))
    full = traffic.flash_fa2(256, 16, 16, 32, causal=False)
    assert window.counters["k_loads"] == window.model_counters()["k_loads"] < full["k_loads"] // 3
    skipped = int((window.tile_kind == masks.SKIPPED).sum())
    assert skipped > window.tile_kind.size // 2
    decode = capture_trace(TraceConfig(seq_len=256, causal=True, q_len=1, group=8, **C))
    assert decode.config.n_q_blocks == 1 and decode.counters["k_loads"] == 256 * 16  # each K row once, for 8 heads
    per_head = traffic.flash_fa2(256, 16, 16, 32, False, masks.Masks(1, 256, True, group=1))
    assert decode.counters["k_loads"] * 8 == 8 * per_head["k_loads"] and decode.counters["q_loads"] == 8 * 16


def test_a_file_that_lies_about_its_tiles_is_refused():
    trace = capture_trace(CONFIGS[0])
    kinds = trace.tile_kind.copy()
    i, j = np.argwhere(kinds == masks.MASKED)[0]
    kinds[i, j] = masks.WHOLE  # says a masked tile ran whole
    with pytest.raises(ValueError, match=r"tile_kind says tile \(\d+, \d+\) ran 1; the kernel's loop bounds run it 2"):
        trace_io.load(io.BytesIO(trace_io.to_bytes(dataclasses.replace(trace, tile_kind=kinds))), "lying.npz")
    s = trace.s.copy()
    slot, step = trace.tile_slot(2), steps.steps(trace, 2)[0]
    s[slot, step.kv_block, 0, :] = 0.5  # scores where the window masks them
    with pytest.raises(ValueError):
        trace_io.load(io.BytesIO(trace_io.to_bytes(dataclasses.replace(trace, s=s))), "lying.npz")


@pytest.mark.parametrize("kwargs,match", [
    (dict(window_left=-2), "window_left must be between -1"),
    (dict(documents=0), "documents must be between 1"),
    (dict(documents=3, q_len=10), "documents pack queries and keys into one sequence"),
    (dict(group=9), "group must be between 1 and 8"),
    (dict(q_len=101), "q_len must be between 0 and 100"),
    (dict(window_left=4, loop_order="fa1"), "the FA1-order kernel runs plain and causal attention"),
])
def test_bad_mask_configs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TraceConfig(seq_len=100, **kwargs)
