"""Rows typed by hand and the documents' worked examples through the real softmax kernels: chunks from
1 against float64, the seeds' printed numbers, every malformed row a message on the page (AppTest),
the typed row's URL round trip, the presets, the underflow demonstration, and every equation the page
shows holding with the numbers it shows."""
import math
import re

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from kernels import reference, softmax_hand
from kernels.softmax_trace import SoftmaxConfig, capture_softmax
from tests import rendered
from tests.test_app import APP, PAGES, TIMEOUT
from viz.specs import SOFTMAX
from viz.stepping import PRESENT

pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                                        "ignore:invalid value encountered:RuntimeWarning")
ROW = (3.0, 1.0, 4.0, 1.0, 5.0)


def _page(query: dict | None = None, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page(PAGES["softmax"])
    for k, v in (query or {}).items():
        at.query_params[k] = str(v)
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def _ok(at: AppTest) -> None:
    assert not at.exception, f"exception on the page: {[e.value for e in at.exception]}"
    assert not at.error, f"error on the page: {[e.value for e in at.error]}"


# ---------------------------------------------------------------- the kernels at a chunk from 1
@pytest.mark.parametrize("block", [1, 2, 3, 5, 7, 16])
@pytest.mark.parametrize("row", [ROW, (-2.5,), (0.5, -1.25, 7.0, 7.0, -3.0, 2.0, 0.0)])
def test_typed_row_against_float64(row, block):
    t = capture_softmax(SoftmaxConfig(length=len(row), block=block), row=row)
    x = np.asarray(row, dtype=np.float64)[None, :]
    ref = reference.softmax_online(x, block)
    n_chunks = math.ceil(len(row) / block)
    assert t.config.scenario == "typed" and t.x.shape == (len(row),) and t.m.shape == (n_chunks,)
    eps = np.finfo(np.float32).eps
    for name, got, want in (("m", t.m, ref["m_traj"][0]), ("d", t.d, ref["d_traj"][0]), ("y", t.y, ref["y"][0])):
        err = np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-30))
        assert err < 8 * len(row) * eps, f"{name} at chunk {block} on {row}: relative error {err:.2e} to float64"
    n = len(row)  # every kernel counted the real entries only, never the masked lanes of its tile
    assert t.variant_counts("online") == {"loads": 2 * n, "stores": n}
    assert t.variant_counts("safe") == {"loads": 3 * n, "stores": n}
    assert t.variant_counts("naive") == {"loads": 2 * n, "stores": n}
    live = np.isfinite(t.split_m)
    assert live.sum() == n_chunks, f"split-row ran {live.sum()} live slices, want {n_chunks}"
    np.testing.assert_allclose(t.split_m[live], [max(row[i:i + block]) for i in range(0, n, block)])


def test_capture_rejects_a_row_that_does_not_fit():
    with pytest.raises(ValueError, match="row has 5 values but cfg.length is 4"):
        capture_softmax(SoftmaxConfig(length=4, block=2), row=ROW)
    with pytest.raises(ValueError, match="row must hold finite float32 numbers, got nan at index 1"):
        capture_softmax(SoftmaxConfig(length=2, block=2), row=[1.0, float("nan")])
    with pytest.raises(ValueError, match="block must be between 1 and 1024, got 0"):
        SoftmaxConfig(length=5, block=0)
    with pytest.raises(ValueError, match="scenario 'typed' runs the row handed over"):
        capture_softmax(SoftmaxConfig(length=5, block=2, scenario="typed"))


@pytest.mark.parametrize("text,message", [
    ("", "row: the row is empty"), (" , ", "row: the row is empty"),
    ("3, x, 4", "row: value 2, 'x', is not a number"), ("1, nan", "row: value 2, 'nan', is NaN"),
    ("inf", "row: value 1, 'inf', is not a finite float32 number"),
    ("1e39", "row: value 1, '1e39', is not a finite float32 number"),
    ("3,,1", "row: value 2 is empty"),
    (",".join(["1"] * 17), f"row: 17 values, at most {softmax_hand.MAX_VALUES}"),
])
def test_parse_row_names_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        softmax_hand.parse_row(text)


def test_parse_and_format_round_trip():
    for row in (ROW, softmax_hand.SEED003_ROW, (-0.1, 1e-7, 123456.5)):
        assert softmax_hand.parse_row(softmax_hand.format_row(row)) == row
    assert softmax_hand.parse_row("3 1, 4  1,5,") == ROW  # spaces or commas; a trailing comma holds no value


# ---------------------------------------------------------------- the documents' numbers
def test_seed003_prints_the_posts_numbers():
    p = softmax_hand.PRESETS["seed-003-merge"]
    t = capture_softmax(SoftmaxConfig(length=5, block=p.block), row=p.values)
    assert [f"{y:.4f}" for y in t.y] == [f"{y:.4f}" for y in p.printed], f"kernel {t.y} against the post's {p.printed}"
    # the post's merge: L = L1 e^(M1 - M) + L2 e^(M2 - M) over X1 = x[:3], X2 = x[3:], in float64
    x = np.asarray(p.values)
    m1, m2 = x[:3].max(), x[3:].max()
    big_m = max(m1, m2)
    big_l = np.exp(x[:3] - m1).sum() * np.exp(m1 - big_m) + np.exp(x[3:] - m2).sum() * np.exp(m2 - big_m)
    live = np.isfinite(t.split_m)
    assert np.allclose(t.split_m[live], [m1, m2]) and abs(t.d[-1] - big_l) < 1e-6 * big_l


def test_seed000_recurrence_element_by_element():
    p = softmax_hand.PRESETS["seed-000-recurrence"]
    t = capture_softmax(SoftmaxConfig(length=5, block=1), row=p.values)
    m, d = -math.inf, 0.0
    for j, x in enumerate(p.values):  # d_j = d_(j-1) e^(m_(j-1) - m_j) + e^(x_j - m_j), in float64
        m_new = max(m, x)
        d = d * math.exp(m - m_new) + math.exp(x - m_new)
        m = m_new
        assert t.m[j] == m and abs(t.d[j] - d) < 4e-7 * d, f"element {j}: kernel ({t.m[j]}, {t.d[j]}), want ({m}, {d})"
    assert t.variant_counts("naive") == {"loads": 10, "stores": 5}  # the review's 3 accesses per element
    assert t.variant_counts("safe") == {"loads": 15, "stores": 5}  # and safe's 4


def test_safe_and_online_bit_by_bit():
    from kernels import inputs

    r = softmax_hand.safe_vs_online(inputs.softmax_row(64, "randn", 0), 16)
    assert r["n"] == 64 and 0 < r["differ"] <= 64 and 1 <= r["max_ulp"] <= 8, r  # equal to rounding only
    y_s, y_o = r["y_safe"], r["y_online"]
    assert r["differ"] == int((y_s != y_o).sum())
    assert softmax_hand.ulps(np.float32([1.0]), np.nextafter(np.float32([1.0]), np.float32(2))).tolist() == [1]


def test_underflow_naive_gives_nan_safe_and_online_do_not():
    u = softmax_hand.underflow(40, 3, 0)
    assert u["math"] == "float32" and u["x"].max() == softmax_hand.UNDERFLOW_MAX
    assert np.all(np.exp(u["x"].astype(np.float32)) == 0), "the row must underflow float32 everywhere"
    naive, safe, online = u["out"]
    assert np.isnan(naive).all(), "naive softmax must give 0 / 0 = NaN on every element"
    for name, y in (("safe", safe), ("online", online)):
        assert np.max(np.abs(y - u["ref"])) < 1e-6, f"{name} against float64"


# ---------------------------------------------------------------- the page
def _typed(values: str, block: int = 2, **state) -> AppTest:
    return _page(**SOFTMAX.keyed(scenario="typed", values=values, block=block), **state)


@pytest.mark.parametrize("text,message", [
    ("", "row: the row is empty"), ("3, one, 4", "row: value 2, 'one', is not a number"),
    ("3, nan", "row: value 2, 'nan', is NaN"), ("3, -inf", "row: value 2, '-inf', is not a finite float32"),
    (",".join(["2"] * 20), f"row: 20 values, at most {softmax_hand.MAX_VALUES}"),
])
def test_page_names_a_malformed_row(text, message):
    at = _typed(text)
    assert not at.exception, f"exception on the page: {[e.value for e in at.exception]}"
    errors = [re.sub(r"\\(.)", r"\1", e.value) for e in at.error]  # as read on screen: escapes removed
    assert any(message in e for e in errors), f"typed {text!r}: errors shown {errors}, want {message!r}"


def test_page_shows_every_number_and_the_equations_hold():
    at = _typed("3, 1, 4, 1, 5", block=2)
    _ok(at)
    table = [d.value for d in at.dataframe if "y f64" in d.value.columns][0]
    assert table["x"].tolist() == list(ROW) and len(table) == 5
    n = 3 * math.ceil(5 / 2)
    for step in range(1, n + 1):
        at.session_state[SOFTMAX.key("step")] = step - 1
        at.run()
        _ok(at)
        tex = [x.value for x in at.latex if "m_{" in x.value or "y = " in x.value]
        assert tex, f"no equation at step {step}"
        bad = rendered.check_softmax_step(tex[0])
        assert not bad, f"step {step}: {bad}"


def test_typed_row_url_round_trip():
    at = _typed("3, 1, 4, 1, 5", block=2)
    at.session_state[SOFTMAX.key("step")] = 3
    at.run()
    url = {k: at.query_params[k] for k in at.query_params}
    assert url["values"] == "3,1,4,1,5" and url["block"] == "2" and url["scenario"] == "typed" and url["step"] == "4"
    back = _page(url)
    _ok(back)
    table = [d.value for d in back.dataframe if "y f64" in d.value.columns][0]
    assert table["x"].tolist() == list(ROW)
    assert "Step 4 of 9" in " ".join(m.value for m in back.markdown)


@pytest.mark.parametrize("name", list(softmax_hand.PRESETS))
def test_presets_open_with_their_notes(name):
    p = softmax_hand.PRESETS[name]
    at = _page({"scenario": "typed", "values": softmax_hand.format_row(p.values), "block": p.block})
    _ok(at)
    shown = " ".join(m.value for m in at.markdown)
    assert p.title in shown, f"{name}: its title is not on the page"
    if p.printed:
        assert "(the same)" in shown
    if "naive-store" in p.claims:
        assert "leaves out the store of the output y" in shown and "holds to rounding only" in shown
    links = [x for x in at.get("page_link") if p.label in str(x.proto.label)]
    assert links, f"no link for {name}"


def test_presenter_view_shows_the_numbers():
    at = _typed("3, 1, 4, 1, 5", block=1, **{PRESENT: True})
    _ok(at)
    assert [d for d in at.dataframe if "y f64" in d.value.columns], "no numbers in presenter view"
    assert not rendered.check_softmax_step([x.value for x in at.latex if "m_{" in x.value][0])


def test_the_step_checker_catches_a_wrong_number():
    from viz import softmax_hand as vh

    t = capture_softmax(SoftmaxConfig(length=5, block=2), row=ROW)
    fold, write = vh.step_tex(t, 1), vh.step_tex(t, 3)
    assert not rendered.check_softmax_step(fold) and not rendered.check_softmax_step(write)
    d_shown = vh.g(float(t.d[1]))
    assert rendered.check_softmax_step(fold.replace(rf"\mathbf{{{d_shown}}}", r"\mathbf{1.6}")), "a wrong d passed"
    assert rendered.check_softmax_step(fold.replace(r"\max(3,\ 4) = \mathbf{4}", r"\max(3,\ 4) = \mathbf{3}"))
    y0 = vh.g(float(t.y[0]))
    assert rendered.check_softmax_step(write.replace(rf"\mathbf{{{y0}}}", r"\mathbf{0.5}")), "a wrong y passed"


def test_readme_links_open_the_presets():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for p in softmax_hand.PRESETS.values():
        link = f"/softmax?scenario=typed&values={softmax_hand.format_row(p.values)}&block={p.block})"
        assert link in readme, f"README has no link {link!r} for {p.name}"


def test_a_typed_row_trace_saves_and_loads():
    from kernels import trace_io

    t = capture_softmax(SoftmaxConfig(length=5, block=2), row=ROW)
    import io

    back = trace_io.load(io.BytesIO(trace_io.to_bytes(t)), "typed.npz")
    assert back.config == t.config and np.array_equal(back.x, t.x) and np.array_equal(back.d, t.d)
