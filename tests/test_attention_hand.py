"""Attention with your own numbers (kernels/hand.py, viz/hand.py): small Q, K, V and blocks from 1
through the real forward kernel, against float64; the page's tables, messages, URL and equations."""
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from kernels import reference
from kernels.trace import TraceConfig, capture_trace
from tests import rendered
from viz import hand

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 180


def _ref_state(q, k, v, bm, bn):
    """float64 running (m, l, acc) of every row after every kv-block, by the recurrence's definition."""
    n, d = q.shape
    s = q.astype(np.float64) @ k.astype(np.float64).T / np.sqrt(d)
    tk = -(-n // bn)
    m, l = np.full((n, tk), np.nan), np.full((n, tk), np.nan)
    acc = np.zeros((n, tk, d))
    for j in range(tk):
        cols = slice(0, min((j + 1) * bn, n))  # every key folded in so far
        m[:, j] = s[:, cols].max(axis=1)
        e = np.exp(s[:, cols] - m[:, j][:, None])
        l[:, j] = e.sum(axis=1)
        acc[:, j] = e @ v[cols].astype(np.float64)
    return s, m, l, acc


@pytest.mark.parametrize("n, d, bm, bn", [(1, 1, 1, 1), (4, 2, 2, 2), (5, 3, 2, 3), (7, 2, 3, 2), (3, 5, 16, 1),
                                          (6, 16, 4, 16)])
def test_small_tiles_match_float64(n, d, bm, bn):
    rng = np.random.default_rng(n * 100 + d)
    q, k, v = (rng.standard_normal((n, d)).astype(np.float32) for _ in range(3))
    t = capture_trace(TraceConfig(seq_len=n, head_dim=d, block_m=bm, block_n=bn), inputs=(q, k, v))
    tq, tk = -(-n // bm), -(-n // bn)
    assert t.s.shape == (tq, tk, bm, bn) and t.acc_after.shape == (tq, tk, bm, d), "only the real entries are kept"
    s, m, l, acc = _ref_state(q, k, v, bm, bn)
    ref = reference.attention_rows(q, k, v, False, 1 / np.sqrt(d))
    err = np.abs(t.out - ref["out"]).max()
    assert err < 1e-5, f"out differs from float64 by {err:.2e}"
    for i in range(tq):
        rows = range(i * bm, min((i + 1) * bm, n))
        for j in range(tk):
            keys = range(j * bn, min((j + 1) * bn, n))
            got_s = t.s[i, j, : len(rows), : len(keys)]
            assert np.abs(got_s - s[rows.start:rows.stop, keys.start:keys.stop]).max() < 1e-5, f"s of tile ({i}, {j})"
            assert np.isnan(t.s[i, j, len(rows):]).all() and np.isnan(t.s[i, j, :, len(keys):]).all(), \
                f"tile ({i}, {j}) has entries past the sequence"
            for name, want in (("m", m), ("l", l)):
                got = getattr(t, name)[i, j, : len(rows)]
                diff = np.abs(got - want[rows.start:rows.stop, j]).max()
                assert diff < 1e-5 * max(1, np.abs(want).max()), f"{name} after tile ({i}, {j}) differs by {diff:.2e}"
            # acc is kept under the kernel's own m: the same as the float64 one to rounding
            diff = np.abs(t.acc_after[i, j, : len(rows)] - acc[rows.start:rows.stop, j]).max()
            assert diff < 1e-5 * max(1, np.abs(acc).max()), f"acc after tile ({i}, {j}) differs by {diff:.2e}"


@pytest.mark.parametrize("inputs, message", [
    (None, None),
    ("qkv", "inputs must be a tuple"),
    ((np.zeros((4, 2)), np.zeros((4, 2))), "inputs must be a tuple"),
    ((np.zeros((4, 3)), np.zeros((4, 2)), np.zeros((4, 2))), r"inputs q must have shape \(seq_len, head_dim\) = "
                                                               r"\(4, 2\), got \(4, 3\)"),
    ((np.ones((4, 2)), np.full((4, 2), np.nan), np.ones((4, 2))), "inputs k must be finite numbers, got nan at row 0"),
    ((np.ones((4, 2)), np.ones((4, 2)), [[1, 2]] * 4), "inputs v must be a NumPy array"),
])
def test_inputs_are_checked(inputs, message):
    cfg = TraceConfig(seq_len=4, head_dim=2, block_m=2, block_n=2)
    if message is None:
        assert capture_trace(cfg, inputs=(np.ones((4, 2)),) * 3).out.shape == (4, 2)
        return
    with pytest.raises(ValueError, match=message):
        capture_trace(cfg, inputs=inputs)


@pytest.mark.parametrize("fields, message", [
    (dict(block_m=0), "block_m must be at least 1, got 0"),
    (dict(head_dim=12), "head_dim must be at most 8"),
    (dict(seq_len=17), "seq_len must be between 1 and 16, got 17"),
    (dict(causal=True), "runs plain attention only"),
    (dict(block_n=24), "block_n must be one of 16, 32"),
])
def test_small_configs_are_checked(fields, message):
    with pytest.raises(ValueError, match=message):
        TraceConfig(**{**dict(seq_len=4, head_dim=2, block_m=2, block_n=2), **fields})


@pytest.mark.parametrize("text, message", [
    ("1,0;0,x", "Q row 2, column 2: 'x' is not a number"),
    ("1,0;nan,1", "Q row 2, column 1: 'nan' is not a finite number"),
    ("1,0;inf,1", "Q row 2, column 1: 'inf' is not a finite number"),
    ("1,0;1", "Q has ragged rows: row 1 has 2 values, row 2 has 1"),
    ("1,0;,", "Q row 2 is empty"),
    ("1,,0", "Q row 1, column 2 is blank"),
    (";".join(["1"] * 17), "Q has 17 rows: at most 16"),
    (",".join(["1"] * 9), "Q has 9 values a row: at most 8"),
])
def test_table_messages(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        hand.parse_text("Q", text)


def _matrices(line: str) -> list[np.ndarray]:
    """The bmatrix blocks of one LaTeX line, as the printed numbers."""
    out = []
    for body in re.findall(r"\\begin\{bmatrix\}(.*?)\\end\{bmatrix\}", line):
        out.append(np.array([[rendered.num(x) for x in row.split("&")] for row in body.split(r" \\ ")]))
    return out


def check_tile(tex: str, q_i=None, k_j=None) -> list[str]:
    """viz/hand.tile_tex: each matrix equation holds with the printed numbers (4 significant digits);
    S against the printed Q_i and K_j when given."""
    tex = re.sub(r"^\\(footnotesize|scriptsize) ", "", tex)  # presenter view's size
    lines = tex.removeprefix(r"\begin{aligned}").removesuffix(r"\end{aligned}").split(r" \\[6pt] ")
    (s,), (m_old, rowmax, m_new), (p,), (alpha,), (a2, l_old, rowsum, l_new), (a3, acc_old, p2, v), (acc_new,) = (
        _matrices(x) for x in lines)
    bad = []
    tol = 2 * rendered.PRINTED

    def close(name, got, want, scale):
        if not np.all(np.abs(got - want) <= tol * (scale + np.abs(want)) + 1e-12):
            bad.append(f"{name}: shown {got.ravel()}, the printed numbers give {want.ravel()}")

    if q_i is not None:
        d = q_i.shape[1]
        close("S = Q K^T / sqrt(d)", s, q_i @ k_j.T / np.sqrt(d), np.abs(q_i) @ np.abs(k_j).T / np.sqrt(d))
    if not np.array_equal(rowmax[:, 0], s.max(axis=1)):
        bad.append(f"rowmax {rowmax.ravel()} is not the max of the shown S rows {s.max(axis=1)}")
    if not np.array_equal(m_new, np.maximum(m_old, rowmax)):
        bad.append(f"m_new {m_new.ravel()} is not max(m_old, rowmax)")
    close("P = exp(S - m_new)", p, np.exp(s - m_new), np.exp(s - m_new) * (np.abs(s) + np.abs(m_new)))
    first = ~np.isfinite(m_old)  # the program's first tile: m_old = -inf, alpha = 0
    close("alpha = exp(m_old - m_new)", alpha, np.exp(m_old - m_new),
          np.where(first, 0.0, np.exp(np.where(first, 0.0, m_old - m_new)) * (np.abs(np.where(first, 0, m_old)) + np.abs(m_new))))
    if not (np.array_equal(a2, alpha) and np.array_equal(a3, alpha) and np.array_equal(p2, p)):
        bad.append("the l and acc lines do not show the alpha and P above")
    close("rowsum P", rowsum[:, 0], p.sum(axis=1), p.sum(axis=1))
    close("l_new = alpha l_old + rowsum", l_new, alpha * l_old + rowsum, alpha * l_old + rowsum)
    close("acc_new = alpha acc_old + P V", acc_new, alpha * acc_old + p @ v, np.abs(alpha * acc_old) + np.abs(p) @ np.abs(v))
    return bad


def test_check_tile_catches_a_wrong_number():
    """The tile checker fails when one printed entry of acc is off (a checker that cannot fail checks nothing)."""
    rng = np.random.default_rng(7)
    q, k, v = (rng.standard_normal((4, 2)).astype(np.float32) for _ in range(3))
    t = capture_trace(TraceConfig(seq_len=4, head_dim=2, block_m=2, block_n=2), inputs=(q, k, v))
    step = hand.walk(t)[1]
    tex = hand.tile_tex(t, step)
    assert check_tile(tex, t.q[:2], t.k[2:]) == []
    shown = hand.matrix(t.acc_after[0, 1, :2])
    wrong = t.acc_after[0, 1, :2].copy()
    wrong[1, 1] += 0.05 * (1 + abs(wrong[1, 1]))
    assert check_tile(tex.replace(shown, hand.matrix(wrong)), t.q[:2], t.k[2:]), "a wrong acc passed"


def _app(query: dict | None = None, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("viz/pages/attention.py")
    for k, v in {"hand": 1, **(query or {})}.items():
        at.query_params[k] = str(v)
    for k, v in state.items():
        at.session_state[k] = v
    return at.run()


def _ok(at: AppTest) -> None:
    assert not at.exception, f"exception on the page: {[e.value for e in at.exception]}"


def test_seed_004_preset_every_equation_holds():
    """The default (seed 004's two kv-blocks of 2): each step's equations hold with the printed numbers."""
    at = _app()
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    assert at.session_state["hand.q"] == hand.SEED_004["q"]
    for k in range(4):  # 2 q-blocks x 2 kv-blocks
        at.session_state["hand.step"] = k
        at.run()
        _ok(at)
        tex = [x.value.strip().strip("$").strip() for x in at.latex]
        updates = [x for x in tex if r"m_\text{new} &= \max(m_" in x or r"m_\text{new} &= \max(" in x]
        updates = [x for x in updates if "rowmax" not in x or r"\mathbf" in x]
        assert len(updates) == 2, f"step {k + 1}: {len(updates)} rows' update equations"
        for x in updates:
            assert rendered.check_update(x) == [], f"step {k + 1}: {rendered.check_update(x)}"
        outs = [x for x in tex if r"\text{kernel's out}" in x]
        assert len(outs) == (2 if k % 2 == 1 else 0), f"step {k + 1}: {len(outs)} out lines"
        for x in outs:
            assert rendered.check_out(x) == [], f"step {k + 1}: {rendered.check_out(x)}"
        tiles = [x for x in tex if x.startswith(r"\begin{aligned}S_{")]
        assert len(tiles) == 1, f"step {k + 1}: {len(tiles)} whole tiles printed"
        qi, kj = (slice(2 * (k // 2), 2 * (k // 2) + 2), slice(2 * (k % 2), 2 * (k % 2) + 2))
        q, kk = (hand.parse_text(n, hand.SEED_004[n.lower()]) for n in ("Q", "K"))
        assert check_tile(tiles[0], q[qi], kk[kj]) == [], f"step {k + 1}: {check_tile(tiles[0], q[qi], kk[kj])}"
    assert at.query_params["step"] == "4" and at.query_params["q"] == hand.SEED_004["q"]


@pytest.mark.parametrize("query, message", [
    ({"q": "1,0;0,abc;1,1;0,0"}, "Q row 2, column 2: 'abc' is not a number"),
    ({"k": "1,0;0,1;nan,1;1,2"}, "K row 3, column 1: 'nan' is not a finite number"),
    ({"v": "1,0;0,1;2;1,2"}, "V has ragged rows"),
    ({"q": "1,0;,;1,1;0,0"}, "Q row 2 is empty"),
    ({"q": ";".join(["1,0"] * 17)}, "Q has 17 rows: at most 16"),
    ({"k": "1,0;0,1;2,1"}, "K has 3 rows of 2 values; Q has 4 of 2"),
    ({"block_m": "0"}, "block_m must be from 1 to 4 (seq_len), got 0"),
    ({"block_n": "two"}, "block_n must be a whole number from 1 to 4"),
])
def test_malformed_input_is_a_message(query, message):
    at = _app(query)
    _ok(at)
    errors = [e.value for e in at.error]
    assert any(message in e for e in errors), f"no message {message!r}, got {errors}"


def test_table_edit_is_parsed():
    """An edit in the Q table goes through the same checks: a word is a message, a number runs."""
    at = _app()
    at.session_state["hand.q"] = "1,0;0,1;1,oops;-1,0.5"
    at.run()
    _ok(at)
    assert any("Q row 3, column 2: 'oops' is not a number" in e.value for e in at.error)
    at.session_state["hand.q"] = "1,0;0,1;1,2;-1,0.5"
    at.run()
    _ok(at)
    assert not at.error and at.query_params["q"] == "1,0;0,1;1,2;-1,0.5"


def test_url_round_trip():
    """A bookmarked step of a hand example opens at that step with those numbers; presenter view too."""
    q = "0.5,1;2,0;1,1"
    at = _app({"q": q, "k": "1,0;0,1;1,1", "v": "1,2;3,4;5,6", "block_m": 3, "block_n": 1, "step": 2})
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    assert at.session_state["hand.step"] == 1
    url = {k: at.query_params[k] for k in at.query_params}
    assert url == {"hand": "1", "q": q, "k": "1,0;0,1;1,1", "v": "1,2;3,4;5,6", "block_m": "3", "block_n": "1",
                   "step": "2"}, url
    at2 = _app({k: v for k, v in url.items() if k != "hand"} | {"present": 1},
               **{"app.present": True})
    _ok(at2)
    assert at2.session_state["hand.step"] == 1
    tiles = [x.value.strip().strip("$").strip() for x in at2.latex if r"S_{0" in x.value]
    assert len(tiles) == 1, "presenter view prints the whole tile"
    assert check_tile(tiles[0]) == [], check_tile(tiles[0])


def test_readme_preset_link_opens_seed_004():
    """The README's link is the page's own preset query, and it opens the page on those numbers."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    query = hand.preset_query(hand.SEED_004)
    assert f"/attention?{query})" in readme, "the README's seed 004 link is not the page's preset"
    at = _app(dict(x.split("=", 1) for x in query.split("&")))
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    assert [at.session_state[f"hand.{n}"] for n in ("q", "k", "v")] == [hand.SEED_004[n] for n in ("q", "k", "v")]


def test_backward_trace_refuses_small_tiles():
    from kernels.trace_backward import capture_backward_trace

    with pytest.raises(ValueError, match="got block_m 2, block_n 2, head_dim 2"):
        capture_backward_trace(TraceConfig(seq_len=4, head_dim=2, block_m=2, block_n=2))


def test_head_dim_widget_resizes_the_tables():
    """head_dim 3: every table gets a third column of zeros (q . k unchanged), and the kernel runs d = 3."""
    at = _app()
    at.number_input(key="hand.dim_w").set_value(3).run()
    _ok(at)
    assert not at.error, [e.value for e in at.error]
    assert at.session_state["hand.q"] == "1,0,0;0,1,0;1,1,0;-1,0.5,0"
    assert any(r"\sqrt{3}" in x.value for x in at.latex), "the scale is 1/sqrt(3)"


@pytest.mark.parametrize("n,d,bm,bn", [(4, 2, 2, 2), (5, 3, 2, 3), (7, 1, 3, 2), (13, 2, 2, 16), (15, 2, 16, 3)])
def test_a_hand_trace_saves_and_loads_as_an_untrusted_file(n, d, bm, bn):
    """A typed trace written by trace_io loads back through every check of an untrusted file: its
    scenario says 'typed' (no seed regenerates its inputs; the float64 references are rebuilt from
    the q, k, v it holds), every tile ran in the kernel's masked loop where the key lanes are
    masked, and its counters are the padded launch's. A changed number is refused."""
    import io

    from kernels import trace_io

    rng = np.random.default_rng(n * 10 + d)
    q, k, v = (rng.standard_normal((n, d)).astype(np.float32) for _ in range(3))
    t = capture_trace(TraceConfig(seq_len=n, head_dim=d, block_m=bm, block_n=bn), inputs=(q, k, v))
    model = t.model_counters()
    assert t.config.scenario == "typed" and t.counters == {key: model[key] for key in t.counters}
    back = trace_io.load(io.BytesIO(trace_io.to_bytes(t)), "hand.npz")
    assert back.config == t.config and np.array_equal(back.q, q) and np.array_equal(back.out, t.out)
    assert np.array_equal(back.s, t.s, equal_nan=True) and np.array_equal(back.tile_kind, t.tile_kind)
    assert (t.tile_kind == 2).all() or bn >= 16  # masked lanes: every tile in the masked loop
    t.out[0, 0] += 0.5
    with pytest.raises(ValueError, match="hand.npz"):
        trace_io.load(io.BytesIO(trace_io.to_bytes(t)), "hand.npz")


def test_typed_scenario_needs_its_inputs():
    with pytest.raises(ValueError, match="scenario 'typed' runs the inputs handed over"):
        capture_trace(TraceConfig(seq_len=4, head_dim=2, block_m=2, block_n=2, scenario="typed"))


def test_the_hand_page_offers_its_trace_file():
    at = _app()
    _ok(at)
    labels = [b.proto.label for b in at.get("download_button")]
    assert any(lab.startswith("Trace file (.npz)") for lab in labels), labels
