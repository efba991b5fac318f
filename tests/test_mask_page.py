"""The FlashAttention page with the masks of issue 23: the URL restores them and says them back,
the sidebar holds their controls, the tile grid marks what the kernel ran masked and leaves the
skipped tiles white, a line says what the mask saved (from the kernel's record), and what the
interpreter cannot run in time is refused with a message before anything runs."""
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from kernels import masks
from kernels.trace import TraceConfig, capture_trace
from viz.figures import grid
from viz.specs import ATTENTION

ROOT = Path(__file__).resolve().parents[1]
CPU_ONLY = pytest.mark.skipif(not __import__("kernels.backend").backend.INTERPRET, reason="the interpreter's limits")


def _page(query: dict) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.switch_page("viz/pages/attention.py")
    for k, v in query.items():
        at.query_params[k] = str(v)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_masked_deep_link_restores_the_state_and_the_url_says_it():
    query = dict(seq_len=200, block_m=32, block_n=32, causal=1, window_left=40, window_right=-1, documents=2, group=2,
                 q_block=6, step=2)
    at = _page(query)
    s = at.session_state
    assert (s[ATTENTION.key("window_left")], s[ATTENTION.key("documents")], s[ATTENTION.key("group")]) == (40, 2, 2)
    url = dict(at.query_params.items())
    assert all(url[k] == str(v) for k, v in query.items()), url
    line = " ".join(m.value for m in at.markdown if "The kernel ran" in m.value)
    assert "window (40, -1), 2 documents, 2 query heads per K/V head" in line and "skipped" in line, line
    labels = {n.label for n in at.number_input}
    assert {"window left", "window right", "documents", "heads per K/V", "queries"} <= labels


def test_the_grid_shows_whole_masked_and_skipped_tiles_from_the_kernels_record():
    cfg = TraceConfig(seq_len=256, head_dim=16, block_m=32, block_n=32, causal=True, window_left=64)
    trace = capture_trace(cfg)
    from kernels import steps

    fig = grid.tile_grid_figure(trace, steps.steps(trace, 5)[0])
    marks = next(t for t in fig.data if t.name == "ran masked")
    assert len(marks.x) == int((trace.tile_kind == masks.MASKED).sum()) > 0
    heat = fig.data[0]
    z = np.asarray(heat.z)
    assert ((z == grid.TILE_STATES.index("skipped")) == (trace.tile_kind == masks.SKIPPED)).all()
    assert "skipped (never loaded)" in {t.name for t in fig.data}
    line = grid.mask_line(trace)
    ran = int(trace.visited.sum())
    assert f"ran {ran} of 64 tiles" in line and f"{trace.counters['k_loads'] // 16:,} rows of K" in line, line
    wrong = trace.tile_kind.copy()
    wrong[5, 5] = masks.WHOLE  # the marks follow the record, not a copy of the mask
    import dataclasses

    fig2 = grid.tile_grid_figure(dataclasses.replace(trace, tile_kind=wrong), steps.steps(trace, 5)[0])
    assert len(next(t for t in fig2.data if t.name == "ran masked").x) == len(marks.x) - 1


@CPU_ONLY
@pytest.mark.parametrize("query,match", [
    (dict(seq_len=4096, block_m=16, block_n=16, group=8), "tiles would take the CPU interpreter"),
    (dict(seq_len=100, q_len=150), "q_len must be between 0 and 100"),
    (dict(seq_len=100, documents=3, q_len=10), "documents pack queries and keys"),
])
def test_what_the_interpreter_cannot_run_is_refused_before_it_runs(query, match):
    at = _page(query)
    shown = [w.value.replace("\\", "") for w in [*at.warning, *at.error]]  # the page escapes markdown
    assert any(match in w for w in shown), shown


def test_a_bad_mask_parameter_in_the_url_is_named_and_defaulted():
    at = _page(dict(seq_len=64, window_left=-7, group=3))
    text = " ".join(w.value.replace("\\", "") for w in at.warning)
    assert "window_left" in text and at.session_state[ATTENTION.key("window_left")] == -1
    assert at.session_state[ATTENTION.key("group")] == 3  # a group of 3 runs: 3 query heads per K/V head
