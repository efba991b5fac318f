"""Published update rules on the kernel's numbers (kernels/rules.py), and the GPU against the
interpreter against float64 (kernels/consistency.py), on shipped GPU scenes and live traces."""
import math

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from kernels import consistency, rules, scenes, steps
from kernels.trace import TraceConfig, capture_trace
from tests.test_truth import ROOT
from viz.specs import ATTENTION

SHIPPED, _ = scenes.read_manifest()
FORWARD = [s for s in SHIPPED if s.page == "attention"]


def _follow(trace, scene):
    return scene.follow if trace.tile_slot(scene.follow) is not None else int(trace.tile_q_blocks[0])


@pytest.mark.parametrize("scene", [s.name for s in FORWARD])
def test_correct_rules_hold_and_printed_ones_miss(scene):
    s = next(x for x in FORWARD if x.name == scene)
    trace = scenes.load_scene(s)
    got = {r["rule"].name: r for r in rules.evaluate(trace, _follow(trace, s), s.row)}
    walk = [x for x in steps.steps(trace, _follow(trace, s)) if x.q_block == _follow(trace, s)]
    # a row with no key yet at its first tile (packed documents) has l = 0 there and nothing to divide
    empty_first = steps.row_update(trace, walk[0], min(s.row, len(walk[0].rows) - 1)).empty
    for name, r in got.items():
        if r["rule"].correct:
            assert r["holds"], f"{scene}: {name} misses by {max(r['residuals']):.3g} (tolerance {max(r['tolerances']):.3g})"
        else:
            assert not r["holds"], f"{scene}: the printed {name} was not caught"
            assert empty_first or not r["first_finite"], f"{scene}: the printed {name} is finite at the first tile"
    # where the max grew after the first tile, the printed ^-1 misses visibly
    ups = [steps.row_update(trace, x, min(s.row, len(x.rows) - 1)) for x in walk]
    grew = [k for k, (x, u) in enumerate(zip(walk, ups, strict=True))
            if not x.first and not u.empty and u.m_old > -math.inf and u.alpha < 0.99]
    printed = got["FA2 Algorithm 1, line 10, as printed"]
    for k in grew:
        assert printed["residuals"][k] > 10 * printed["tolerances"][k], (scene, k)


def test_rules_on_live_fa1_and_split():
    for cfg in (TraceConfig(seq_len=77, head_dim=16, block_m=16, block_n=16, loop_order="fa1", causal=True),
                TraceConfig(seq_len=77, head_dim=16, block_m=16, block_n=16, kv_splits=3, scenario="increasing")):
        trace = capture_trace(cfg)
        for r in rules.evaluate(trace, 2, 3):
            assert r["holds"] == r["rule"].correct, (cfg.loop_order, r["rule"].name, r["residuals"])


def test_ulps_counts_units_in_the_last_place():
    one = np.float32(1.0)
    assert consistency.ulps(one, np.nextafter(one, np.float32(2)), 1.0) == pytest.approx(1.0)
    assert consistency.ulps(1.0, 1.0 + 3 * 2.0 ** -23, 1.0) == pytest.approx(3.0)
    assert consistency.ulps(-math.inf, -math.inf, 1.0) == 0 and consistency.ulps(0.0, math.inf, 1.0) == math.inf
    assert consistency.ulps(1e-8, 2e-8, 1.0) == pytest.approx(1e-8 / 2.0 ** -23, rel=1e-6), "judged at the scale"


def test_gpu_scene_against_the_interpreter_and_float64():
    """A scene the H200 recorded, the same config through the interpreter here, float64: the two
    backends agree to a few float32 ulps on m and l, to an ulp of float16 on out, and the acc
    differences come from the rounding of p to float16 (what each operation adds by itself)."""
    s = next(x for x in FORWARD if x.name == "first-look")
    gpu = scenes.load_scene(s)
    assert "H200" in gpu.device
    cpu = capture_trace(gpu.config, q_blocks=tuple(int(i) for i in gpu.tile_q_blocks))
    summary = consistency.summary(consistency.compare(gpu, cpu))
    assert summary["m a–b"] <= 16 and summary["l a–b"] <= 64, summary
    assert summary["out a–b"] <= 2 and summary["out a–f64"] <= 2, summary
    own_gpu, own_cpu = consistency.own_errors(gpu), consistency.own_errors(cpu)
    for own in (own_gpu, own_cpu):
        assert own["s"] <= 16 and own["p"] <= 16 and own["l"] <= 8 and own["acc"] <= 32, own
        assert own["cast"] > 10 * own["acc"], f"p's rounding to float16 dominates acc's error: {own}"
    same = consistency.summary(consistency.compare(cpu, cpu))
    assert all(v == 0 for k, v in same.items() if "a–b" in k), same


def test_the_panel_on_the_page():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.switch_page("viz/pages/attention.py")
    at.query_params["scene"] = "first-look"
    at.run()
    assert not at.exception
    at.button(key=ATTENTION.key("twin_go")).click().run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "GPU vs interpreter" in d.value.columns)
    assert list(table[""]) == ["m", "l", "acc", "out"] and table["GPU vs interpreter"].max() > 0
    where = next(d.value for d in at.dataframe if "operation" in d.value.columns)
    assert set(where["operation"]) == set(consistency.WHERE)
    rules_table = next(d.value for d in at.dataframe if "residual now" in d.value.columns)
    assert len(rules_table) == len(rules.RULES)
