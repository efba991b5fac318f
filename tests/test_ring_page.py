"""The Ring attention page (viz/pages/ring.py): every step of every ring scene renders, and the
merge it prints holds with the printed numbers (parsed back from the LaTeX, tests/rendered.py);
the URL holds the scene, step and row; presenter view renders; a ring file replays here and is
sent here from other pages; the live ring runs on local processes. The parser is shown to fail."""
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from kernels import scenes
from kernels.ring_trace import step_view
from tests.rendered import check_ring_final, check_ring_merge
from viz.figures import ring as fr
from viz.figures.attention import tex_num
from viz.specs import RING

ROOT = Path(__file__).resolve().parents[1]
RING_SCENES = [s for s in scenes.read_manifest()[0] if s.page == "ring"]


def _app(query: dict | None = None, **state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.switch_page("viz/pages/ring.py")
    for k, v in (query or {}).items():
        at.query_params[k] = str(v)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _label(at) -> str:
    hits = [re.sub("<[^>]+>", "", m.value) for m in at.markdown if "ring-step-label" in m.value]
    assert hits, "no step label"
    return hits[0]


def _latex(at, marker: str) -> list[str]:
    return [x.value.strip().strip("$").strip() for x in at.latex if marker in x.value]


@pytest.mark.parametrize("scene", RING_SCENES, ids=lambda s: s.name)
def test_every_step_renders_a_merge_that_holds(scene):
    trace = scenes.load_scene(scene)
    p = trace.config.world_size
    for step in range(1, p + 1):
        at = _app({"scene": scene.name, "step": step})
        assert not at.error, [e.value for e in at.error]
        assert f"Step {step} of {p}" in _label(at)
        assert dict(at.query_params) == {"scene": scene.name, "row": str(scene.row), "step": str(step)}
        merges = _latex(at, r"M &= \max")
        assert len(merges) == 1, merges
        bad = check_ring_merge(merges[0])
        assert not bad, f"{scene.name} step {step}: " + "; ".join(bad)
        finals = _latex(at, r"\mathrm{lse}")
        assert bool(finals) == (step == p), finals
        for t in finals:
            assert not check_ring_final(t), check_ring_final(t)
        rows = [d.value for d in at.dataframe if "holds K/V of" in d.value.columns]
        assert rows and len(rows[0]) == p


def test_presenter_view_and_another_row():
    at = _app({"scene": "ring-contiguous", "step": 2, "row": 200, "present": 1})
    assert "Step 2 of 4" in _label(at) and "rank 3 (row 200)" in _label(at)
    assert dict(at.query_params)["present"] == "1" and dict(at.query_params)["row"] == "200"
    assert len(at.get("plotly_chart")) == 2  # lanes and chunk pairs; the load chart is below, not on the screen
    assert not check_ring_merge(_latex(at, r"M &= \max")[0])


def test_the_checker_catches_a_wrong_page():
    trace = scenes.load_scene(RING_SCENES[0])
    view = step_view(trace, 1, int(trace.rows[100]))
    good = fr.merge_tex(view)
    assert not check_ring_merge(good)
    assert check_ring_merge(good.replace(rf"\mathbf{{{tex_num(view.l)}}}", rf"\mathbf{{{tex_num(view.l * 1.01)}}}"))
    assert check_ring_merge(good.replace(rf"\mathbf{{{tex_num(view.o[0])}}}",
                                         rf"\mathbf{{{tex_num(view.o[0] + 0.05)}}}"))
    assert check_ring_merge(good.replace(rf"\mathbf{{{tex_num(view.m)}}}", rf"\mathbf{{{tex_num(view.m + 0.5)}}}"))
    compact = fr.merge_tex(view, compact=True)  # the presenter's column: no symbolic middle, same numbers
    assert len(compact) < len(good) and not check_ring_merge(compact)
    assert check_ring_merge(compact.replace(rf"\mathbf{{{tex_num(view.l)}}}", rf"\mathbf{{{tex_num(view.l * 1.01)}}}"))
    final = fr.final_tex(trace, step_view(trace, 3, int(trace.rows[100])))
    assert not check_ring_final(final)
    small = fr.final_tex(trace, step_view(trace, 3, int(trace.rows[100])), compact=True)
    assert not check_ring_final(small) and small.count(r"\\[4pt]") == 1
    lse_shown = tex_num(float(trace.lse[int(trace.rows[100])]))
    assert check_ring_final(small.replace(rf"\mathbf{{{lse_shown}}}", rf"\mathbf{{{tex_num(float(lse_shown) + 0.01)}}}"))
    lse = tex_num(float(trace.lse[int(trace.rows[100])]))
    assert check_ring_final(final.replace(rf"\mathbf{{{lse}}}", rf"\mathbf{{{tex_num(float(lse) + 0.01)}}}"))


def test_a_ring_file_replays_here_and_elsewhere_is_sent_here():
    data = (ROOT / "scenes" / "ring-zigzag.npz").read_bytes()
    at = _app()
    at.sidebar.file_uploader[0].set_value(("r.npz", data, "application/octet-stream")).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Step 1 of 4" in _label(at)
    other = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    other.switch_page("viz/pages/backward.py").run()
    other.sidebar.file_uploader[0].set_value(("r.npz", data, "application/octet-stream")).run()
    assert any("ring trace: open it on the Ring attention page" in e.value for e in other.error)


def test_the_live_ring_runs_on_local_processes():
    """A URL with a config runs the ring live: `python -m kernels.ring_local` in a child process,
    two gloo ranks here, its trace checked on the way in."""
    at = _app({"world_size": 2, "seq_len": 60, "head_dim": 16, "causal": 1, "layout": "zigzag", "block_m": 16,
               "block_n": 16, "dtype": "float32", "scenario": "randn", "seed": 3, "row": 40, "step": 2})
    assert not at.error, [e.value for e in at.error]
    assert "Step 2 of 2" in _label(at) and "(row 40)" in _label(at)
    assert any("gloo · 2 processes on one machine" in c.value.replace("\\", "") for c in at.caption)
    assert not check_ring_merge(_latex(at, r"M &= \max")[0])
    assert at.session_state[RING.key("source")] != "ring-zigzag"
