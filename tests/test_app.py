"""The app through streamlit.testing.v1.AppTest: every page at its defaults, edge settings, stepping
and play without re-running the kernel, deep links and invalid URL parameters, the followed q-block
staying put, scenes and trace files replayed, bad input as a message and never a traceback.

Stepping here sets the spec's `step` key as the stepper component does (its presses are counted in the
browser: tests/test_browser.py; the arithmetic of the counts: test_apply_presses)."""
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from kernels import backend, limits, results, scenes, trace_io
from kernels import trace as ktrace
from kernels.trace import TraceConfig, capture_trace
from viz.specs import ATTENTION, BACKWARD, ORDERS, SOFTMAX
from viz.stepper import apply_presses
from viz.stepping import PRESENT

# naive softmax overflowing in the interpreter (the "large" input and the overflow demos) is the point
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                                        "ignore:invalid value encountered:RuntimeWarning")
ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PAGES = {"attention": "viz/pages/attention.py", "orders": "viz/pages/orders.py", "softmax": "viz/pages/softmax.py",
         "backward": "viz/pages/backward.py", "benchmarks": "viz/pages/benchmarks.py", "start": "viz/pages/start.py",
         "ring": "viz/pages/ring.py"}
TIMEOUT = 180
# the CPU defaults, pinned so that the tests read the same on a GPU machine (whose defaults are larger)
SMALL = ATTENTION.keyed(seq_len=256, head_dim=64, block_m=64, block_n=64, follow=3, dtype="float32")
BWD_SMALL = BACKWARD.keyed(seq_len=256, head_dim=64, block_m=64, block_n=64, dtype="float32")
SHIPPED, _ = scenes.read_manifest()


def _app(page: str = "attention", query: dict | None = None, small: bool = True, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page(PAGES[page])
    for k, v in (query or {}).items():
        at.query_params[k] = str(v)
    base = {"attention": SMALL, "backward": BWD_SMALL}.get(page, {}) if small and not query else {}
    for k, v in {**base, **state}.items():
        at.session_state[k] = v
    return at.run()


def _table(at: AppTest, column: str, last: bool = False):
    """The first (or last) dataframe on the page that has this column."""
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert found, f"no table with a column {column!r}"
    return found[-1] if last else found[0]


def _shown(markdown: str) -> str:
    """Markdown as it reads on screen: the backslash escapes of text from files and URLs removed."""
    return re.sub(r"\\(.)", r"\1", markdown)


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


def _goto(at: AppTest, spec, step: int) -> AppTest:
    """Step to `step` (1-based) as the stepper's on_change does."""
    at.session_state[spec.key("step")] = step - 1
    return at.run()


def _latex(at: AppTest) -> str:
    return " ".join(x.value for x in at.latex)


# ---------------------------------------------------------------- the stepper's arithmetic
def test_apply_presses():
    """Running totals from the browser: every press counts once, however they are batched."""
    seen = None
    step, playing, seen, present, move = apply_presses(0, 10, False, {"nonce": "a", "next": 5}, seen)
    assert (step, playing, present, move) == (5, False, 0, None)
    step, playing, seen, *_ = apply_presses(step, 10, playing, {"nonce": "a", "next": 5}, seen)
    assert step == 5, "the same totals again are no new press"
    step, playing, seen, *_ = apply_presses(step, 10, playing, {"nonce": "a", "next": 7, "prev": 1}, seen)
    assert step == 6
    step, playing, seen, _, move = apply_presses(step, 10, playing, {"nonce": "a", "next": 27, "prev": 1}, seen)
    assert step == 9 and move == ("beyond", 1), "clamped at the last step; the talk may go on"
    step, playing, seen, *_ = apply_presses(step, 10, playing, {"nonce": "a", "next": 27, "prev": 1, "toggle": 1}, seen)
    assert playing and step == 0, "play at the end starts again from the first step"
    step, playing, seen, *_ = apply_presses(4, 10, True, {"nonce": "a", "next": 28, "prev": 1, "toggle": 1}, seen)
    assert (step, playing) == (5, False), "a step press stops play"
    step, playing, seen, present, _ = apply_presses(5, 10, False, {"nonce": "b", "last": 1, "present": 1}, seen)
    assert (step, present) == (9, 1), "a remounted component (new nonce) counts from zero"
    *_, move = apply_presses(0, 10, False, {"nonce": "b", "last": 1, "present": 1, "prev": 1}, seen)
    assert move == ("beyond", -1)
    *_, move = apply_presses(3, 10, False, {"nonce": "b", "last": 1, "present": 1, "chapter_next": 1}, seen)
    assert move == ("chapter", 1)
    assert apply_presses(3, 10, False, None, seen)[:2] == (3, False)
    assert apply_presses(3, 10, False, "junk", seen)[:2] == (3, False)


# ---------------------------------------------------------------- every page
@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders(page):
    at = _app(page)
    _ok(at)
    if page in ("attention", "orders", "softmax", "backward", "ring"):
        k, n = _step(at)
        assert k == 1 and n >= 2
        assert at.get("bidi_component"), "no stepper"
        assert at.get("plotly_chart")


def test_start_page_links_every_scene():
    at = _app("start")
    _ok(at)
    linked = {re.search(r"scene=([a-z0-9-]+)", str(p.proto)).group(1) for p in at.get("page_link")
              if "scene=" in str(p.proto)}
    assert linked and linked <= {s.name for s in SHIPPED}
    assert {"first-look", "backward", "softmax-overflow", "split-kv"} <= linked


# ---------------------------------------------------------------- attention: stepping
def test_stepping_changes_the_label_equations_and_url():
    at = _app()
    _ok(at)
    assert _step(at) == (1, 4)
    assert "first tile of Q3: m starts at −∞" in _step_label(at)
    trace = ktrace.capture_trace(TraceConfig(seq_len=256, head_dim=64, block_m=64, block_n=64))
    for k in (2, 4, 3):
        _goto(at, ATTENTION, k)
        _ok(at)
        assert _step(at) == (k, 4)
        assert at.query_params["step"] == str(k) and at.query_params["q_block"] == "3"
        m = trace.m[3, k - 1, 0]
        assert f"{m:.4g}" in _latex(at), f"step {k}: the equations must carry the kernel's m = {m:.4g}"
    assert "max grew in" in _step_label(at) and "row updates so far" in _step_label(at)


def test_stepping_does_not_rerun_the_kernel(monkeypatch):
    at = _app(**ATTENTION.keyed(seq_len=96, block_m=32, block_n=32, follow=1))
    calls = []
    real = ktrace.capture_trace
    monkeypatch.setattr(ktrace, "capture_trace", lambda *a, **k: calls.append(a) or real(*a, **k))
    for k in (2, 3, 1, 2):
        _goto(at, ATTENTION, k)
    at.session_state[ATTENTION.key("row")] = 5
    at.run()
    assert calls == [], f"stepping launched the kernel {len(calls)} times"
    at.sidebar.slider(key=ATTENTION.key("seq_len")).set_value(97).run()  # a new config captures once
    assert len(calls) == 1
    _ok(at)


def test_play_advances_stops_and_loops():
    at = _app(**ATTENTION.keyed(seq_len=128, follow=1))
    assert _step(at) == (1, 2)
    at.session_state[ATTENTION.key("playing")] = True
    at.run()  # the run that starts the timer shows the current step
    assert _step(at)[0] == 1
    at.run()  # a tick of the timer
    assert _step(at)[0] == 2
    at.run()
    assert _step(at)[0] == 2 and not at.session_state[ATTENTION.key("playing")], "play must stop at the last step"
    at.session_state[ATTENTION.key("loop")] = True
    at.session_state[ATTENTION.key("playing")] = True
    at.run()
    at.run()
    assert _step(at)[0] == 1 and at.session_state[ATTENTION.key("playing")], "loop: after the last step, the first"


EDGES = [
    dict(seq_len=1),
    dict(seq_len=100, block_m=32, block_n=16),  # ragged: no multiple of either block
    dict(seq_len=100, block_m=16, block_n=32, causal=True),
    dict(seq_len=70, head_dim=16, causal=True, follow=0),  # one step only
    *[dict(seq_len=48, block_m=16, block_n=16, scenario=s) for s in limits.SCENARIOS],
    *[dict(seq_len=48, block_m=16, block_n=32, dtype=d, causal=True) for d in limits.dtypes()],
    dict(seq_len=100, block_m=32, block_n=16, loop_order="fa1", causal=True),
    dict(seq_len=200, block_m=32, block_n=16, kv_splits=3),
    dict(seq_len=100, block_m=32, block_n=32, kv_splits=4, causal=True),  # a split per kv-block; causal rows see fewer
]


@pytest.mark.parametrize("edge", EDGES, ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()))
def test_edge_settings(edge):
    at = _app(**{ATTENTION.key(f"{k}"): v for k, v in edge.items()})
    _ok(at)
    k, n = _step(at)
    assert k == 1 and n >= 1
    if n > 1:
        _goto(at, ATTENTION, 2)
        _ok(at)
        assert _step(at)[0] == 2
    assert at.latex, "no equations"
    table = _table(at, "equal?")  # memory: the kernel's counts equal the model, whatever the order
    assert table["equal?"].iloc[-1] == "✓", table


def test_split_kv_steps_split_by_split_then_shows_the_merge():
    at = _app(**ATTENTION.keyed(seq_len=200, block_m=32, block_n=16, kv_splits=3, follow=2))
    _ok(at)
    assert "split 0 of 3 (keys 0–63)" in _step_label(at) and "first tile of Q2 in this split" in _step_label(at)
    assert not any("merged row" in c.value for c in at.caption), "the merge comes after every split's last step"
    k, n = _step(at)
    _goto(at, ATTENTION, n)
    _ok(at)
    assert "split 2 of 3" in _step_label(at)
    caption = next(c.value for c in at.caption if "merged row against the unsplit float64 reference" in c.value)
    err_ref, err_formula = (float(x) for x in re.findall(r"\d\.\d+e[+-]\d+", caption)[:2])
    assert err_ref < 1e-5 and err_formula < 1e-5
    assert r"\max_s m_s" in _latex(at)


def test_followed_q_block_stays_put():
    at = _app(**ATTENTION.keyed(follow=2))
    assert "Q2" in _step_label(at)
    at.sidebar.slider(key=ATTENTION.key("seq_len")).set_value(260).run()
    assert at.session_state[ATTENTION.key("follow")] == 2 and "Q2" in _step_label(at)
    at.sidebar.select_slider(key=ATTENTION.key("block_m")).set_value(32).run()
    assert at.session_state[ATTENTION.key("follow")] == 2 and "Q2 (rows 64–95)" in _step_label(at)
    at.sidebar.slider(key=ATTENTION.key("seq_len")).set_value(40).run()  # only 2 q-blocks now: the last one
    assert "Q1" in _step_label(at)
    at.sidebar.slider(key=ATTENTION.key("seq_len")).set_value(256).run()  # more blocks again: it stays where it is
    assert at.session_state[ATTENTION.key("follow")] == 1 and "Q1" in _step_label(at)
    _ok(at)


def test_row_is_the_sequence_row():
    at = _app(**ATTENTION.keyed(follow=3, row=10))
    assert "Row 202" in " ".join(m.value for m in at.markdown)
    assert at.query_params["row"] == "202"
    row_slider = next(s for s in at.sidebar.slider if s.label == "row")
    assert row_slider.value == 202 and row_slider.min == 192 and row_slider.max == 255


CPU_ONLY = pytest.mark.skipif(not backend.INTERPRET, reason="a limit of the CPU interpreter")


@pytest.mark.parametrize("state, words", [
    pytest.param(dict(seq_len=4096, block_m=16, block_n=16), "tiles", marks=CPU_ONLY),  # too many tiles
    (dict(block_m=256, block_n=128), "block_m * block_n"),
    pytest.param(dict(seq_len=1024, block_m=16, block_n=16), "limit", marks=CPU_ONLY),
    (dict(seq_len=100, block_n=32, kv_splits=8), "kv_splits must be at most the number of kv-blocks"),
])
def test_refused_sizes_show_a_message(state, words):
    at = _app(**{ATTENTION.key(f"{k}"): v for k, v in state.items()})
    assert not at.exception
    assert at.error and words in _shown(at.error[0].value), [e.value for e in at.error]
    assert not at.get("plotly_chart"), "nothing may run or draw for a refused config"


def test_state_survives_switching_pages():
    at = _app()
    at.sidebar.slider(key=ATTENTION.key("seq_len")).set_value(120).run()
    _goto(at, ATTENTION, 2)
    at.switch_page(PAGES["softmax"]).run()
    _ok(at)
    at.session_state[SOFTMAX.key("length")] = 40
    at.run()
    at.switch_page(PAGES["attention"]).run()
    _ok(at)
    assert at.sidebar.slider(key=ATTENTION.key("seq_len")).value == 120
    assert _step(at)[0] == 2
    at.switch_page(PAGES["softmax"]).run()
    assert at.sidebar.slider(key=SOFTMAX.key("length")).value == 40


def test_a_kernel_failure_is_a_message(monkeypatch):
    def broken(*args, **kwargs):
        try:
            raise AttributeError("'int' object has no attribute 'to'")
        except AttributeError as e:
            raise RuntimeError("at 57:26: a long compiler dump") from e

    monkeypatch.setattr(ktrace, "capture_trace", broken)
    at = _app(**ATTENTION.keyed(seq_len=77, seed=12345))  # a config no other test has cached
    assert not at.exception
    assert at.error and "AttributeError: 'int' object has no attribute 'to'" in at.error[0].value
    assert not at.get("plotly_chart")


def test_slow_softmax_counts_wait_for_a_click(monkeypatch):
    from viz import state

    monkeypatch.setattr(state, "AUTO_COUNT_SECONDS", 0.0)  # as if this size took minutes to count
    at = _app(**ATTENTION.keyed(seq_len=128))
    _ok(at)
    assert list(_table(at, "equal?")["equal?"]) == ["—", "—", "—", "—", "—", "✓"]  # model only, and FA's own
    _goto(at, ATTENTION, 2)  # stepping still never runs them
    assert at.button(key=ATTENTION.key("count")).label.startswith("Count the softmax accesses")
    at.button(key=ATTENTION.key("count")).click().run()
    _ok(at)
    assert list(_table(at, "equal?")["equal?"]) == ["✓", "✓", "✓", "✓", "—", "✓"]


def test_measured_bytes_show_where_the_config_matches():
    from types import SimpleNamespace


    cfg = SimpleNamespace(seq_len=4096, head_dim=64, block_m=64, block_n=64, causal=False, dtype="float16",
                          loop_order="fa2", kv_splits=1)  # a replayed trace's config (the CPU refuses 4096 live)
    got = results.measured_bytes(cfg)
    assert got is not None and got["gpu"] == "NVIDIA H200"
    assert set(got["bytes"]) >= {"flash", "standard", "naive", "safe", "online"}
    assert got["bytes"]["standard"] > 50 * got["bytes"]["flash"], "L2 absorbs FlashAttention's K/V re-reads"
    assert results.measured_bytes(SimpleNamespace(**{**cfg.__dict__, "seq_len": 256})) is None
    assert results.measured_bytes(SimpleNamespace(**{**cfg.__dict__, "kv_splits": 2})) is None, "another kernel"
    fa1 = results.measured_bytes(SimpleNamespace(**{**cfg.__dict__, "loop_order": "fa1"}))
    assert fa1["bytes"]["flash"] != got["bytes"]["flash"]


# ---------------------------------------------------------------- deep links and the URL
def test_deep_link_restores_the_attention_state():
    query = dict(seq_len=200, head_dim=32, block_m=64, block_n=32, causal=1, dtype="float32", scenario="large",
                 seed=3, q_block=2, row=140, step=3)
    at = _app(query=query)
    _ok(at)
    assert _step(at) == (3, 6)  # causal: q-block 2 (rows 128-191) visits kv-blocks 0-5 (keys 0-191)
    s = at.session_state
    assert tuple(s[ATTENTION.key(k)] for k in ("seq_len", "head_dim", "block_n", "causal", "scenario", "seed")) == (
        200, 32, 32, True, "large", 3)
    assert "Row 140" in " ".join(m.value for m in at.markdown)
    url = dict(at.query_params.items())
    for k, v in query.items():  # the URL still says exactly this state
        assert url[k] == str(v), (k, url[k], v)


def test_deep_link_to_a_scene_and_presenter_view():
    at = _app(query={"scene": "causal", "step": 2, "present": 1})
    _ok(at)
    assert _step(at)[0] == 2 and at.session_state[PRESENT]
    keys = {e.proto.id for e in at.get("plotly_chart")}
    assert keys, "presenter view draws charts"
    assert len(at.get("plotly_chart")) == 4 and len(at.latex) == 1  # grid, m/l, alpha, acc; the equations
    assert at.query_params["scene"] == "causal" and at.query_params["present"] == "1"


@pytest.mark.parametrize("page, query, state", [
    ("softmax", dict(length=100, block=32, scenario="increasing", seed=2, step=5), SOFTMAX.keyed(length=100, block=32)),
    ("backward", dict(seq_len=128, head_dim=32, block_m=32, block_n=32, causal=1, kv_block=1, row=70, step=2,
                      dtype="float32"), BACKWARD.keyed(kv_block=1, row=70, causal=True)),
    ("orders", dict(seq_len=100, block_m=32, block_n=32, head_dim=32, causal=1, dtype="float32", row=40, step=4),
     ORDERS.keyed(row_abs=40, seq_len=100)),
])
def test_deep_link_restores_each_page(page, query, state):
    at = _app(page, query=query)
    _ok(at)
    assert _step(at)[0] == query["step"]
    for k, v in state.items():
        assert at.session_state[k] == v, k
    assert at.query_params["step"] == str(query["step"])


@pytest.mark.parametrize("query, words", [
    ({"block_m": "7"}, "block_m"), ({"seq_len": "abc"}, "seq_len"), ({"step": "0"}, "step"),
    ({"scene": "no-such-scene"}, "no-such-scene"), ({"causal": "maybe"}, "causal"), ({"zzz": "1"}, "zzz"),
])
def test_invalid_url_parameters_are_a_message(query, words):
    at = _app(query=query)
    assert not at.exception
    messages = _shown(" ".join(w.value for w in at.warning) + " ".join(e.value for e in at.error))
    assert words in messages, messages
    if "scene" not in query:
        assert _step(at)[0] == 1, "the page still opens, at the defaults"


# ---------------------------------------------------------------- scenes and files
@pytest.mark.parametrize("scene", SHIPPED, ids=lambda s: s.name)
def test_every_scene_replays(scene):
    at = _app(scene.page, query={"scene": scene.name})
    _ok(at)
    assert _step(at)[0] == scene.step
    shown = _shown(" ".join(c.value for c in at.caption) + " ".join(i.value for i in at.sidebar.info))
    if scene.recorded:  # recorded elsewhere than the manifest's GPU (the ring scenes, on CPU): said so
        assert f"Recorded on {scene.recorded}" in shown, shown
    else:
        assert "NVIDIA H200" in shown or scene.page == "softmax"


def test_load_a_recorded_trace(tmp_path):
    cfg = TraceConfig(seq_len=48, head_dim=16, block_m=16, block_n=16, causal=True)
    path = tmp_path / "t.npz"
    trace_io.save(capture_trace(cfg), path)
    at = _app()
    at.sidebar.file_uploader[0].set_value(("t.npz", path.read_bytes(), "application/octet-stream")).run()
    _ok(at)
    assert any("replaying the file t.npz" in _shown(c.value) for c in at.caption)
    assert _step(at) == (1, 3) or _step(at)[1] <= 3
    at.button(key=ATTENTION.key("back")).click().run()
    _ok(at)
    assert not any("replaying the file" in c.value for c in at.caption)


def test_a_trace_of_another_kind_names_its_page(tmp_path):
    at = _app()
    data = (ROOT / "scenes" / "backward.npz").read_bytes()
    at.sidebar.file_uploader[0].set_value(("b.npz", data, "application/octet-stream")).run()
    assert not at.exception
    assert any("backward trace: open it on the Backward page" in e.value for e in at.error), [e.value for e in at.error]


def test_load_a_broken_file_shows_an_error():
    at = _app()
    at.sidebar.file_uploader[0].set_value(("junk.npz", b"not a zip at all", "application/octet-stream")).run()
    assert not at.exception
    assert any("junk.npz" in e.value for e in at.error), [e.value for e in at.error]


# ---------------------------------------------------------------- softmax page
def test_softmax_page_values():
    at = _app("softmax", **SOFTMAX.keyed(length=64, block=16, scenario="increasing"))
    _ok(at)
    assert _step(at) == (1, 12)
    _goto(at, SOFTMAX, 7)
    assert "pass 2, chunk 3" in _step_label(at)
    table = at.dataframe[0].value  # the online kernel's (m, d): every chunk of a sorted row grows
    assert np.isfinite(table["d ×"].iloc[1:].astype(float)).all()
    access = _table(at, "per element (model)")  # the hierarchy section's tables follow it
    assert list(access["per element (model)"])[:4] == [3, 4, 3, 2]
    assert list(access["equal?"]) == ["✓"] * len(access)
    ladder = at.dataframe[1].value
    assert list(ladder["reads of each element of the row"]) == [3, 2, 0]


def test_softmax_overflow_is_labelled_with_the_arithmetic_dtype():
    import json

    at = _app("softmax", **SOFTMAX.keyed(length=64, scenario="randn"))
    _ok(at)
    charts = {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    titles = {k: [a["text"] for a in spec["layout"].get("annotations", [])] for k, spec in charts.items()}
    f32 = next(t for k, t in titles.items() if "overflow32" in k)
    f16 = next(t for k, t in titles.items() if "overflow16" in k)
    for t in (f32, f16):
        assert t[0].startswith("<b>naive</b><br>") and "NaN/inf" in t[0], t
        assert all("finite, max err" in x for x in t[1:3]), t
    assert any("float16 row computing in float32: 0 NaN/inf" in c.value for c in at.caption)


@pytest.mark.parametrize("state", [
    SOFTMAX.keyed(length=1), SOFTMAX.keyed(length=100, block=32), SOFTMAX.keyed(length=1000, block=16),
    *[SOFTMAX.keyed(scenario=s) for s in ("randn", "large", "increasing", "decreasing")],
])
def test_softmax_edges(state):
    at = _app("softmax", **state)  # 1000 / 16: 63 chunks, the split-row kernel's 64 slices
    _ok(at)
    assert _step(at)[0] == 1


def test_softmax_refuses_too_many_slices():
    """The length slider stops at 64 slices of the chunk; a URL asking for more is named and defaulted."""
    at = _app("softmax", query={"length": 2000, "block": 16})
    assert not at.exception
    shown = [w.value.replace("\\", "") for w in at.warning]  # as plain text: markdown's escapes removed
    assert any("length='2000'" in w and "at most 64 slices" in w for w in shown), shown
    assert at.session_state[SOFTMAX.key("length")] == 64


# ---------------------------------------------------------------- backward page
def test_backward_page_values():
    at = _app("backward")
    _ok(at)
    assert _step(at) == (1, 4)
    _goto(at, BACKWARD, 3)
    assert _step(at)[0] == 3 and "Q2" in _step_label(at)
    row_table = at.dataframe[0].value
    assert (row_table["difference"].abs() < 1e-6).all(), row_table
    mem_table = at.dataframe[-1].value
    assert list(mem_table["equal?"]) == ["—", "✓", "✓", "✓", "✓"], mem_table
    text = " ".join(m.value for m in at.markdown)
    assert "65,536 elements (256 KiB in float32)" in text and "256 elements (1 KiB in float32)" in text


def test_backward_worked_example():
    at = _app("backward")
    tex = _latex(at)
    assert r"- 0.04a - 0.2b + 0.24c" in tex.replace("\\,", ""), tex
    assert "0.28" in tex and "-0.13" in tex
    assert any("dS = [-0.13, -0.15, 0.28], D = 2.3" in m.value for m in at.markdown)
    # the second form in a, b, c and its numbers; the same row through attention's dK/dV kernel
    second = next(t.value.strip("$\n") for t in at.latex if r"P \circ dP - (P^\top dP)" in t.value)
    assert r"0.1a + 0.5b + 0.4c" in second and second.endswith(r"\begin{bmatrix} -0.13 \\ -0.15 \\ 0.28 \end{bmatrix}")
    through = next(m.value for m in at.markdown if "Through attention's own backward" in m.value)
    shown = [float(x) for x in re.search(r"dS = \[([^\]]+)\] read off its dK", _shown(through))[1].split(",")]
    assert shown == pytest.approx([-0.13, -0.15, 0.28], abs=1e-6)
    assert float(re.search(r"max \|dK/dV kernel − Jacobian form\| = ([0-9.e+-]+)", _shown(through))[1]) < 1e-6
    at.number_input(key=BACKWARD.key("ex_p0")).set_value(0.5).run()  # sums to 1.4: not a softmax output
    assert any("P must be non-negative and sum to 1" in _shown(e.value) for e in at.error)


def test_backward_stepping_does_not_rerun_the_kernel(monkeypatch):
    from kernels import trace_backward

    at = _app("backward", **BACKWARD.keyed(seq_len=200, causal=True))
    calls = []
    real = trace_backward.capture_backward_trace
    monkeypatch.setattr(trace_backward, "capture_backward_trace", lambda *a, **k: calls.append(a) or real(*a, **k))
    _goto(at, BACKWARD, 2)
    at.session_state[BACKWARD.key("row")] = 150
    at.run()
    _goto(at, BACKWARD, 1)
    assert calls == [], f"stepping launched the kernel {len(calls)} times"
    at.session_state[BACKWARD.key("kv_block")] = 2
    at.run()
    assert calls == [] and _step(at)[1] == 2  # causal: kv-block 2 (keys 128-191) meets q-blocks 2, 3
    _ok(at)


BWD_EDGES = [
    dict(seq_len=1, block_m=16, block_n=16),
    dict(seq_len=100, block_m=32, block_n=16, causal=True, kv_block=6, row=99),
    dict(seq_len=77, head_dim=16, block_m=16, block_n=64, dtype="float16", scenario="large"),
    dict(seq_len=64, head_dim=128, block_m=128, block_n=64, causal=True, scenario="increasing", row=0),
]


@pytest.mark.parametrize("edge", BWD_EDGES, ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()))
def test_backward_edge_settings(edge):
    at = _app("backward", **{BACKWARD.key(f"{k}"): v for k, v in edge.items()})
    _ok(at)
    k, n = _step(at)
    assert k == 1 and n >= 1
    if n > 1:
        _goto(at, BACKWARD, 2)
        _ok(at)
        assert _step(at)[0] == 2
    assert list(_table(at, "equal?", last=True)["equal?"])[1:] == ["✓"] * 4


def test_backward_row_falls_back_when_tiles_were_not_kept(monkeypatch):
    from kernels import trace_backward

    cfg = TraceConfig(seq_len=96, head_dim=64, block_m=32, block_n=32, seed=4321)
    monkeypatch.setattr(limits, "TILE_BUDGET_BYTES", trace_backward.tile_bytes(cfg))  # one kv-block fits
    at = _app("backward", **BACKWARD.keyed(seq_len=96, block_m=32, block_n=32, seed=4321))
    _ok(at)
    assert any("recomputed in float64" in c.value for c in at.caption)
    assert (at.dataframe[0].value["difference"].abs() < 1e-6).all()


# ---------------------------------------------------------------- FA1 vs FA2
def test_orders_page_walks_and_counts():
    at = _app("orders", **ORDERS.keyed(seq_len=100, block_m=32, block_n=32, head_dim=32, causal=True, dtype="float32",
                                       row_abs=40))
    _ok(at)
    k, n = _step(at)
    assert (k, n) == (1, 10)  # 4 x 4 tiles, causal: 1 + 2 + 3 + 4
    _goto(at, ORDERS, n)
    table = at.dataframe[0].value
    assert list(table["equal?"]) == ["✓", "✓"]
    fa1 = table.iloc[1]
    fa2 = table.iloc[0]
    # FA1 writes O, m, l back at every tile; FA2 writes O and the log-sum-exp once
    assert fa1["stores (counted by the kernel)"] > 2 * fa2["stores (counted by the kernel)"]
    text = " ".join(m.value for m in at.markdown)
    assert f"<b>{fa2['loads (counted by the kernel)']:,}</b> loads" in text, "so far, at the last step: the total"
    assert r"\text{review: }" in _latex(at)


def test_measured_dram_bytes_are_on_the_page():
    """Where the config is not one ncu measured, the measured cases are listed; where it is, the memory
    table gains the measured column (a recorded 4096 trace's config)."""
    from types import SimpleNamespace

    from viz.figures import memory

    at = _app()
    _ok(at)
    table = next(d.value for d in at.dataframe if "measured / model" in d.value.columns)
    assert len(table) == 18 and set(table["N"]) == {4096, 16384}
    fa2 = table[(table[""] == "FlashAttention-2") & (table["causal"] == "") & (table["N"] == 4096)].iloc[0]
    assert fa2["measured / model"] < 0.05 and fa2["model MB"] == pytest.approx(68.165632)
    trace = capture_trace(TraceConfig(seq_len=64, head_dim=16, block_m=16, block_n=16))
    measured = results.measured_bytes(SimpleNamespace(seq_len=4096, head_dim=64, block_m=64, block_n=64, causal=False,
                                                    dtype="float16", loop_order="fa2", kv_splits=1))
    rows = memory.memory_rows(trace, None, measured)
    shown = memory.memory_table(rows, measured)
    col = "DRAM MB, NVIDIA H200 (ncu)"
    assert shown[-1][col] == pytest.approx(1.58848) and shown[-2][col] > 100  # FlashAttention, standard
    assert "L2 cache absorbs" in memory.memory_note(trace.config, rows, measured)


def test_a_scene_never_waits_on_the_kernel_lock(monkeypatch):
    """Replaying a scene runs no kernel (its softmax counts were counted when it was prepared): it
    draws while another visitor holds the lock."""
    from viz import state

    lock = state.kernel_lock()
    assert lock.acquire(timeout=5)
    state.kernel_holder().update(what="someone's capture", since=0.0)
    try:
        monkeypatch.setattr(state, "LOCK_WAIT_SECONDS", 0.5)
        for scene in ("first-look", "bf16-long", "backward", "softmax-overflow"):
            page = next(s.page for s in SHIPPED if s.name == scene)
            at = _app(page, {"scene": scene})
            _ok(at)
            assert not at.warning or all("Not run" not in w.value for w in at.warning)
        table = next(d.value for d in _app("attention", {"scene": "ragged"}).dataframe if "equal?" in d.value.columns)
        assert (table["equal?"] == "✓").sum() >= 4, "the scene's softmax rows carry the kernels' counts"
        assert "someone" in state.busy_note() and "running for" in state.busy_note()
    finally:
        state.kernel_holder().clear()
        lock.release()


MARKUP = "[click](http://evil.example/) ![i](http://evil.example/x.png) :red[ALARM] <img src=http://evil.example/y>"
UNESCAPED = re.compile(r"(?<!\\)\]\(|(?<!\\)!\[|(?<!\\):red(?<!\\)\[|(?<!\\)<img")


def _texts(at: AppTest) -> list[str]:
    out = []
    for kind in ("markdown", "caption", "warning", "error", "info", "success"):
        out += [e.value for e in getattr(at, kind)]
    return out


def test_text_from_files_and_urls_is_text(tmp_path):
    """A device string, a file name and URL values with markup are shown as their characters: no
    link, no image, no colour (every markdown character escaped)."""
    import dataclasses

    trace = capture_trace(TraceConfig(seq_len=48, head_dim=16, block_m=16, block_n=16))
    data = trace_io.to_bytes(dataclasses.replace(trace, device=MARKUP))
    at = _app()
    at.sidebar.file_uploader[0].set_value(("[x](http://evil.example).npz", data, "application/octet-stream")).run()
    _ok(at)
    assert any("evil.example" in _shown(t) for t in _texts(at)), "the device string is shown"
    bad = [t for t in _texts(at) if "evil" in t and UNESCAPED.search(t)]
    assert not bad, bad
    at = _app(query={"scenario": MARKUP, "seed": "<img src=x>", "scene": "[a](http://evil.example)"})
    assert not at.exception
    bad = [t for t in _texts(at) if UNESCAPED.search(t) and ("evil" in t or "img" in t)]
    assert not bad and at.warning, (bad, [w.value for w in at.warning])
