"""The app through streamlit.testing.v1.AppTest: no exception at the defaults and at edge settings,
stepping (Next, Prev, slider, Play) moves the step and never re-runs the kernel, the equations show
the trace's numbers, state survives switching pages, bad input is a message and not a traceback."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from kernels import backend, limits, trace_io
from kernels import trace as ktrace
from kernels.trace import TraceConfig, capture_trace

# naive softmax overflowing in the interpreter (the "large" input and the float16 x 100 demo) is the point
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                                        "ignore:invalid value encountered:RuntimeWarning")
ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
SOFTMAX = "viz/pages/softmax.py"
TIMEOUT = 120


# the CPU defaults, pinned so that the tests read the same on a GPU machine (whose defaults are larger)
SMALL = {"attn.seq_len": 256, "attn.head_dim": 64, "attn.block_m": 64, "attn.block_n": 64, "attn.q_block": 3}


def _app(defaults: bool = False, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for k, v in ({} if defaults else SMALL).items():
        at.session_state[k] = v
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def _ok(at: AppTest) -> None:
    assert not at.exception, f"exception on the page: {[e.value for e in at.exception]}"
    assert not at.error, f"error on the page: {[e.value for e in at.error]}"


def _step_label(at: AppTest) -> str:
    hits = [m.value for m in at.markdown if "-step-label" in m.value]
    assert hits, "no step label on the page"
    return re.sub(r"<[^>]+>", "", hits[0])


def _step(at: AppTest) -> tuple[int, int]:
    k, n = re.search(r"Step (\d+) of (\d+)", _step_label(at)).groups()
    return int(k), int(n)


def _config(at: AppTest) -> TraceConfig:
    s = at.session_state
    return TraceConfig(seq_len=s["attn.seq_len"], head_dim=s["attn.head_dim"], block_m=s["attn.block_m"],
                       block_n=s["attn.block_n"], causal=s["attn.causal"], dtype=s["attn.dtype"],
                       seed=s["attn.seed"], scenario=s["attn.scenario"])


def test_defaults_render():
    at = _app(defaults=True)
    _ok(at)
    cfg = _config(at)
    assert _step(at) == (1, cfg.n_kv_blocks)
    if backend.INTERPRET:  # small enough for the interpreter: 16 tiles
        assert cfg.n_q_blocks * cfg.n_kv_blocks == 16
    assert any("CPU" in m.value or "GPU" in m.value or "·" in m.value for m in at.sidebar.markdown)
    assert len(at.get("plotly_chart")) >= 7
    table = at.dataframe[0].value  # memory accesses: the kernels counted what the model says
    assert list(table["equal?"]) == ["✓", "✓", "✓", "✓", "—", "✓"], table


def test_next_prev_slider_change_the_step_and_equations():
    at = _app()
    trace = capture_trace(_config(at))
    q_block, row = at.session_state["attn.q_block"], at.session_state["attn.row"]
    assert _step(at)[0] == 1
    at.button(key="attn.next").click().run()
    assert _step(at)[0] == 2
    at.button(key="attn.next").click().run()
    assert _step(at)[0] == 3
    at.button(key="attn.prev").click().run()
    assert _step(at)[0] == 2
    at.slider(key="attn.step_slider").set_value(4).run()
    assert _step(at)[0] == 4
    _ok(at)
    # the equations carry the kernel's numbers for this step and row
    j = int(trace.steps(q_block)[3])
    tex = at.latex[0].value
    for x in (trace.m[q_block, j, row], trace.alpha[q_block, j, row], trace.l[q_block, j, row],
              trace.m[q_block, int(trace.steps(q_block)[2]), row]):
        assert f"{float(x):.4g}" in tex, f"{float(x):.4g} not in the equations: {tex}"
    # another row: other numbers
    at.slider(key="attn.row").set_value(9).run()
    assert f"{float(trace.l[q_block, j, 9]):.4g}" in at.latex[0].value
    # the last step shows out = acc / l next to the float64 reference
    assert any("out = acc / ℓ" in m.value for m in at.markdown)


def test_stepping_does_not_rerun_the_kernel(monkeypatch):
    at = _app()
    calls = []
    real = ktrace.capture_trace
    monkeypatch.setattr(ktrace, "capture_trace", lambda *a, **k: calls.append(a) or real(*a, **k))
    for _ in range(3):
        at.button(key="attn.next").click().run()
    at.button(key="attn.prev").click().run()
    at.slider(key="attn.row").set_value(5).run()
    assert calls == [], f"stepping launched the kernel {len(calls)} times"
    at.sidebar.slider(key="attn.seq_len").set_value(97).run()  # a new config captures once
    assert _step(at)[0] == 1  # and starts from the first step
    at.button(key="attn.next").click().run()
    assert len(calls) == 1
    _ok(at)


def test_play_advances_and_stops_at_the_last_step():
    at = _app()
    at.button(key="attn.play").click().run()
    assert at.session_state["attn.playing"]
    seen = [_step(at)[0]]
    for _ in range(5):  # each run is one tick of the play timer
        at.run()
        seen.append(_step(at)[0])
    assert seen[:4] == [2, 3, 4, 4], seen
    assert not at.session_state["attn.playing"], "play must stop at the last step"
    at.button(key="attn.play").click().run()  # play again: from the start
    assert _step(at)[0] == 2 and at.session_state["attn.playing"]
    at.button(key="attn.play").click().run()  # pause
    assert not at.session_state["attn.playing"]
    k = _step(at)[0]
    at.run()
    assert _step(at)[0] == k


EDGES = [
    dict(seq_len=1),
    dict(seq_len=100, block_m=32, block_n=16),  # ragged: no multiple of either block
    dict(seq_len=100, block_m=16, block_n=32, causal=True),
    dict(seq_len=70, head_dim=16, causal=True, **{"q_block": 0}),  # one step only
    *[dict(seq_len=48, block_m=16, block_n=16, scenario=s) for s in limits.SCENARIOS],
    *[dict(seq_len=48, block_m=16, block_n=32, dtype=d, causal=True) for d in limits.dtypes()],
]


@pytest.mark.parametrize("edge", EDGES, ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()))
def test_edge_settings(edge):
    at = _app(**{f"attn.{k}": v for k, v in edge.items()})
    _ok(at)
    k, n = _step(at)
    assert k == 1 and n >= 1
    if n > 1:
        at.button(key="attn.next").click().run()
        _ok(at)
        assert _step(at)[0] == 2
    assert at.latex, "no equations"


def test_widgets_drive_the_config():
    at = _app()
    at.sidebar.slider(key="attn.seq_len").set_value(80).run()
    at.sidebar.select_slider(key="attn.block_n").set_value(16).run()
    at.sidebar.toggle(key="attn.causal").set_value(True).run()
    at.sidebar.selectbox(key="attn.scenario").set_value("increasing").run()
    _ok(at)
    assert "80 × 80 scores in 64 × 16 tiles" in " ".join(c.value for c in at.caption)
    assert at.sidebar.slider(key="attn.q_block").value == 1  # clamped: 2 q-blocks now
    assert _step(at) == (1, 5)  # causal: q-block 1 (rows 64-79) visits kv-blocks 0..4


CPU_ONLY = pytest.mark.skipif(not backend.INTERPRET, reason="a limit of the CPU interpreter")


@pytest.mark.parametrize("state, words", [
    pytest.param(dict(seq_len=4096, block_m=16, block_n=16), "tiles", marks=CPU_ONLY),  # too many tiles
    (dict(block_m=256, block_n=128), "block_m * block_n"),
    pytest.param(dict(seq_len=1024, block_m=16, block_n=16), "limit", marks=CPU_ONLY),
])
def test_refused_sizes_show_a_message(state, words):
    at = _app(**{f"attn.{k}": v for k, v in state.items()})
    assert not at.exception
    assert at.error and words in at.error[0].value, [e.value for e in at.error]
    assert not at.get("plotly_chart"), "nothing may run or draw for a refused config"


def test_state_survives_switching_pages():
    at = _app()
    at.sidebar.slider(key="attn.seq_len").set_value(120).run()
    at.button(key="attn.next").click().run()
    at.switch_page(SOFTMAX).run()
    _ok(at)
    at.sidebar.slider(key="sm.length").set_value(40).run()
    at.switch_page("viz/pages/attention.py").run()
    _ok(at)
    assert at.sidebar.slider(key="attn.seq_len").value == 120
    assert _step(at)[0] == 2
    at.switch_page(SOFTMAX).run()
    assert at.sidebar.slider(key="sm.length").value == 40


def test_load_a_recorded_trace(tmp_path):
    cfg = TraceConfig(seq_len=48, head_dim=16, block_m=16, block_n=16, causal=True)
    path = tmp_path / "t.npz"
    trace_io.save(capture_trace(cfg), path)
    at = _app()
    at.sidebar.file_uploader[0].set_value(("t.npz", path.read_bytes(), "application/octet-stream")).run()
    _ok(at)
    assert any("Replaying" in i.value for i in at.info)
    assert "48 × 48 scores in 16 × 16 tiles" in " ".join(c.value for c in at.caption)
    at.button(key="attn.back").click().run()
    _ok(at)
    assert not at.info


def test_load_a_broken_file_shows_an_error():
    at = _app()
    at.sidebar.file_uploader[0].set_value(("junk.npz", b"not a zip at all", "application/octet-stream")).run()
    assert not at.exception
    assert any("junk.npz" in e.value for e in at.error), [e.value for e in at.error]


# ---------------------------------------------------------------- softmax page
def _softmax(**state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    return at.switch_page(SOFTMAX).run()


def test_softmax_defaults_and_stepping():
    at = _softmax()
    _ok(at)
    assert _step(at) == (1, 12)
    at.button(key="sm.next").click().run()
    assert _step(at)[0] == 2
    at.button(key="sm.prev").click().run()
    assert _step(at)[0] == 1
    at.slider(key="sm.step_slider").set_value(7).run()
    assert "pass 2, chunk 3" in _step_label(at)
    assert len(at.get("plotly_chart")) == 6  # 4 variants, online (m, d), overflow
    access = at.dataframe[-1].value
    assert list(access["per element (model)"]) == [3, 4, 3, 2]
    assert list(access["equal?"]) == ["✓"] * 4


@pytest.mark.parametrize("state", [
    {"sm.length": 1}, {"sm.length": 100, "sm.block": 32},
    *[{"sm.scenario": s} for s in ("randn", "large", "increasing", "decreasing")],
])
def test_softmax_edges(state):
    _ok(_softmax(**state))


def test_softmax_overflow_demo_uses_the_kernels():
    at = _softmax(**{"sm.length": 64, "sm.scenario": "increasing"})
    _ok(at)
    spec = json.loads(at.get("plotly_chart")[-1].proto.spec)
    titles = [a["text"] for a in spec["layout"]["annotations"]]
    assert titles[0].startswith("naive: ") and "NaN/inf" in titles[0], f"naive must overflow on float16 x 100: {titles}"
    assert [t.split(":")[0] for t in titles[1:]] == ["safe", "online"]
    assert all("finite, max err" in t for t in titles[1:]), titles
    table = at.dataframe[0].value  # the online kernel's (m, d): every chunk of a sorted row grows
    assert np.isfinite(table["d ×"].iloc[1:].astype(float)).all()


def test_slow_softmax_counts_wait_for_a_click(monkeypatch):
    from viz import state

    monkeypatch.setattr(state, "AUTO_COUNT_SECONDS", 0.0)  # as if this size took minutes to count
    at = _app(**{"attn.seq_len": 128})
    _ok(at)
    assert list(at.dataframe[0].value["equal?"]) == ["—", "—", "—", "—", "—", "✓"]  # model only, and FA's own
    at.button(key="attn.next").click().run()  # stepping still never runs them
    assert at.button(key="attn.count").label.startswith("Count the softmax accesses")
    at.button(key="attn.count").click().run()
    _ok(at)
    assert list(at.dataframe[0].value["equal?"]) == ["✓", "✓", "✓", "✓", "—", "✓"]


def test_a_kernel_failure_is_a_message(monkeypatch):
    def broken(*args, **kwargs):
        try:
            raise AttributeError("'int' object has no attribute 'to'")
        except AttributeError as e:
            raise RuntimeError("at 57:26: a long compiler dump") from e

    monkeypatch.setattr(ktrace, "capture_trace", broken)
    at = _app(**{"attn.seq_len": 77, "attn.seed": 12345})  # a config no other test has cached
    assert not at.exception
    assert at.error and "AttributeError: 'int' object has no attribute 'to'" in at.error[0].value
    assert not at.get("plotly_chart")


# ---------------------------------------------------------------- backward page
BACKWARD = "viz/pages/backward.py"
BWD_SMALL = {"bwd.seq_len": 256, "bwd.head_dim": 64, "bwd.block_m": 64, "bwd.block_n": 64}


def _backward(defaults: bool = False, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for k, v in {**({} if defaults else BWD_SMALL), **state}.items():
        at.session_state[k] = v
    at.run()
    return at.switch_page(BACKWARD).run()


def test_backward_defaults_and_stepping():
    at = _backward(defaults=True)
    _ok(at)
    cfg_tq = -(-at.session_state["bwd.seq_len"] // at.session_state["bwd.block_m"])
    assert _step(at) == (1, cfg_tq)  # non-causal: kv-block 0's program visits every q-block
    assert len(at.get("plotly_chart")) == 8  # row, grid, P, dP, dS, D, accumulators, memory
    at.button(key="bwd.next").click().run()
    _ok(at)
    assert _step(at)[0] == 2 and "Q<sub>1</sub>" in [m.value for m in at.markdown if "-step-label" in m.value][0]
    at.button(key="bwd.prev").click().run()
    assert _step(at)[0] == 1
    at.slider(key="bwd.step_slider").set_value(3).run()
    assert _step(at)[0] == 3
    row_table, mem_table = at.dataframe[0].value, at.dataframe[1].value
    assert (row_table["difference"].abs() < 1e-6).all(), row_table
    assert list(mem_table["equal?"]) == ["—", "✓", "✓", "✓", "✓"], mem_table
    assert any("65,536 elements (256 KiB in float32)" in m.value for m in at.markdown), "N² per row, with units"
    assert any("256 elements (1 KiB in float32)" in m.value for m in at.markdown), "N per row, with units"


def test_backward_stepping_does_not_rerun_the_kernel(monkeypatch):
    from kernels import trace_backward

    at = _backward(**{"bwd.seq_len": 200, "bwd.causal": True})
    calls = []
    real = trace_backward.capture_backward_trace
    monkeypatch.setattr(trace_backward, "capture_backward_trace", lambda *a, **k: calls.append(a) or real(*a, **k))
    at.button(key="bwd.next").click().run()
    at.slider(key="bwd.row").set_value(150).run()
    at.button(key="bwd.prev").click().run()
    assert calls == [], f"stepping launched the kernel {len(calls)} times"
    at.sidebar.slider(key="bwd.kv_block").set_value(2).run()  # another program: same trace, step 1
    assert calls == [] and _step(at) == (1, 2)  # causal: kv-block 2 (cols 128-191) meets q-blocks 2, 3
    _ok(at)


BWD_EDGES = [
    dict(seq_len=1, block_m=16, block_n=16),
    dict(seq_len=100, block_m=32, block_n=16, causal=True, kv_block=6, row=99),
    dict(seq_len=77, head_dim=16, block_m=16, block_n=64, dtype="float16", scenario="large"),
    dict(seq_len=64, head_dim=128, block_m=128, block_n=64, causal=True, scenario="increasing"),
]


@pytest.mark.parametrize("edge", BWD_EDGES, ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()))
def test_backward_edge_settings(edge):
    at = _backward(**{f"bwd.{k}": v for k, v in edge.items()})
    _ok(at)
    k, n = _step(at)
    assert k == 1 and n >= 1
    if n > 1:
        at.button(key="bwd.next").click().run()
        _ok(at)
        assert _step(at)[0] == 2
    assert list(at.dataframe[1].value["equal?"])[1:] == ["✓"] * 4


@pytest.mark.parametrize("state, words", [
    pytest.param(dict(seq_len=4096, block_m=16, block_n=16), "tiles", marks=CPU_ONLY),
    (dict(block_m=256, block_n=128), "block_m * block_n"),
])
def test_backward_refused_sizes_show_a_message(state, words):
    at = _backward(**{f"bwd.{k}": v for k, v in state.items()})
    assert not at.exception
    assert at.error and words in at.error[0].value, [e.value for e in at.error]
    assert not at.get("plotly_chart")


def test_backward_row_falls_back_when_tiles_were_not_kept(monkeypatch):
    from kernels import trace_backward

    cfg = TraceConfig(seq_len=96, head_dim=64, block_m=32, block_n=32, seed=4321)
    monkeypatch.setattr(limits, "TILE_BUDGET_BYTES", trace_backward.tile_bytes(cfg))  # one kv-block fits
    at = _backward(**{"bwd.seq_len": 96, "bwd.block_m": 32, "bwd.block_n": 32, "bwd.seed": 4321})
    _ok(at)
    assert any("recomputed in float64" in c.value for c in at.caption)
    assert (at.dataframe[0].value["difference"].abs() < 1e-6).all()
