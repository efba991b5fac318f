"""Every equation the pages show holds with the numbers they show, in every mode.

The invariant suite runs kernels/truth.py's checks (on the values the pages draw, through
kernels/steps.py) at every step and row of every shipped scene and of fuzzed live configs: ragged
sizes, causal, FA1's order, split-KV, float16, and the masks of issue 23 (sliding windows, packed
documents, GQA's packed heads, decode, alone and together). Then the pages themselves are rendered (AppTest)
and the LaTeX they hand to the browser is parsed back (tests/rendered.py): each equation must hold
with the printed numbers. The checks are shown to fail: a split's old state taken from another
split (the bug this suite was written for), a changed alpha, l or acc, a wrong merge."""
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from kernels import ring_verify, scenes, steps, truth
from kernels.ring_trace import RingTrace, step_view
from kernels.softmax_trace import SoftmaxConfig, SoftmaxTrace, capture_softmax
from kernels.trace import AttentionTrace, TraceConfig, capture_trace
from kernels.trace_backward import BackwardTrace, capture_backward_trace
from tests.rendered import check_merge, check_out, check_update
from viz.figures import attention as fa
from viz.figures import split

ROOT = Path(__file__).resolve().parents[1]
SHIPPED, _ = scenes.read_manifest()
RNG = np.random.default_rng(2026)


def _fuzzed(count: int) -> list[TraceConfig]:
    """Small live configs that do not divide the blocks, in every mode the forward page steps."""
    out = []
    for k in range(count):
        n = int(RNG.integers(1, 150))
        bm, bn = (int(x) for x in RNG.choice([16, 32], 2))
        mode = ("fa2", "fa1", "split", "split")[k % 4]
        splits = min(int(RNG.integers(2, 5)), -(-n // bn)) if mode == "split" else 1
        out.append(TraceConfig(seq_len=n, head_dim=int(RNG.choice([16, 32])), block_m=bm, block_n=bn,
                               causal=bool(k % 3 != 1), dtype=("float32", "float16")[k % 2],
                               scenario=("randn", "large", "increasing", "decreasing")[k % 4], seed=k,
                               loop_order="fa1" if mode == "fa1" else "fa2", kv_splits=max(1, splits)))
    return out


def _fuzzed_masks(count: int) -> list[TraceConfig]:
    """Small live configs with the masks models run: a window, documents, GQA, decode, and mixes."""
    out = []
    for k in range(count):
        n = int(RNG.integers(40, 160))
        bm, bn = (int(x) for x in RNG.choice([16, 32], 2))
        mode = ("window", "documents", "gqa", "decode", "window+documents", "gqa+window", "decode+gqa", "split")[k % 8]
        window = (int(RNG.integers(0, 40)), int(RNG.choice([-1, 0, 7]))) if "window" in mode else (-1, -1)
        q_len = int(RNG.integers(1, 12)) if "decode" in mode else 0
        group = int(RNG.choice([2, 4])) if "gqa" in mode or mode == "split" else 1
        out.append(TraceConfig(seq_len=n, head_dim=16, block_m=bm, block_n=bn, causal=bool(k % 3 != 1) or "decode" in mode,
                               dtype=("float32", "float16")[k % 2], seed=k, window_left=window[0], window_right=window[1],
                               documents=int(RNG.integers(2, 5)) if "documents" in mode else 1, group=group, q_len=q_len,
                               kv_splits=min(3, -(-n // bn)) if mode == "split" else 1))
    return out


FUZZED = _fuzzed(16)
MASKED = _fuzzed_masks(8)


@pytest.mark.parametrize("scene", [s.name for s in SHIPPED])
def test_every_shipped_scene_holds(scene):
    trace = scenes.load_scene(next(s for s in SHIPPED if s.name == scene))
    if isinstance(trace, AttentionTrace):
        bad = list(truth.forward_violations(trace, label=scene))
    elif isinstance(trace, BackwardTrace):
        bad = [c for c in truth.backward_checks(trace) if not c.ok]
    elif isinstance(trace, RingTrace):
        bad = [c for row in trace.rows for t in range(trace.config.world_size)
               for c in ring_verify.step_checks(trace, step_view(trace, t, int(row))) if not c.ok]
    else:
        bad = [c for c in truth.softmax_checks(trace) if not c.ok]
    assert not bad, f"{scene}: {len(bad)} equations do not hold, e.g. " + "; ".join(map(str, bad[:3]))


def _id(c) -> str:
    masks = f"-w{c.window_left},{c.window_right}-d{c.documents}-g{c.group}-q{c.q_len}" if not c.masks().plain_or_causal else ""
    return f"N{c.seq_len}-{c.block_m}x{c.block_n}-{c.loop_order}-s{c.kv_splits}-{'causal' if c.causal else 'full'}-" \
           f"{c.dtype}{masks}"


@pytest.mark.parametrize("cfg", FUZZED + MASKED, ids=_id)
def test_fuzzed_live_configs_hold(cfg):
    trace = capture_trace(cfg)
    bad = list(truth.forward_violations(trace, label=str(cfg.fields())))
    assert not bad, f"{len(bad)} equations do not hold, e.g. " + "; ".join(map(str, bad[:3]))
    if cfg.kv_splits > 1:  # every split's first step starts afresh, never from another split
        for i in range(cfg.n_q_blocks):
            for s in steps.steps(trace, i):
                assert (s.prev_kv is None) == s.first and (s.first or s.prev_kv in range(*cfg.split_range(s.split)))


def test_backward_and_softmax_live_hold():
    bwd = capture_backward_trace(TraceConfig(seq_len=77, head_dim=16, block_m=16, block_n=32, causal=True, seed=5))
    assert all(c.ok for c in truth.backward_checks(bwd))
    for cfg in (SoftmaxConfig(length=100, block=16, scenario="increasing"), SoftmaxConfig(length=7, block=16),
                SoftmaxConfig(length=300, block=32, scenario="large")):
        checks = truth.softmax_checks(capture_softmax(cfg))
        assert checks and all(c.ok for c in checks), [str(c) for c in checks if not c.ok]


# ---------------------------------------------------------------- the checks can fail
def _tampered(trace, **arrays):
    return dataclasses.replace(trace, **arrays)


def test_a_split_stepped_with_another_splits_state_fails():
    """The page's old walk (programs' steps sorted by their visit counters across splits) paired a
    split's first tile with the previous split's state: the suite sees it."""
    trace = capture_trace(TraceConfig(seq_len=128, head_dim=16, block_m=32, block_n=16, kv_splits=4, seed=1))
    walk = steps.steps(trace, 1)
    second_split = next(s for s in walk if s.split == 1 and s.first)
    wrong = dataclasses.replace(second_split, k=1, prev_kv=walk[second_split.index - 1].kv_block)
    bad = [c for c in truth.row_checks(trace, wrong, 0) if not c.ok]
    assert any("alpha" in c.equation for c in bad) or any("l_new" in c.equation for c in bad), bad


@pytest.mark.parametrize("name,change", [("alpha", lambda a: a * 0.999), ("l", lambda a: a * 1.001),
                                         ("acc_after", lambda a: a + 1e-3), ("m", lambda a: a + 1e-3)])
def test_a_changed_number_fails(name, change):
    trace = capture_trace(TraceConfig(seq_len=70, head_dim=16, block_m=32, block_n=16, causal=True, seed=2))
    arr = getattr(trace, name).copy()
    arr[1, 1] = change(arr[1, 1])  # q-block 1 after kv-block 1 (state), or its slot-1 tile (acc)
    bad = list(truth.forward_violations(_tampered(trace, **{name: arr})))
    assert bad, f"a changed {name} went unnoticed"


def test_a_wrong_merge_and_a_wrong_softmax_fail():
    trace = capture_trace(TraceConfig(seq_len=64, head_dim=16, block_m=16, block_n=16, kv_splits=2, seed=3))
    out = trace.out.copy()
    out[5] *= 1.01
    assert any(not c.ok for c in truth.merge_checks(_tampered(trace, out=out), 5))
    sm = capture_softmax(SoftmaxConfig(length=64, block=16, scenario="increasing"))
    d = sm.d.copy()
    d[2] *= 1.001
    assert any(not c.ok for c in truth.softmax_checks(dataclasses.replace(sm, d=d)))
    assert isinstance(sm, SoftmaxTrace)
    bwd = capture_backward_trace(TraceConfig(seq_len=40, head_dim=16, block_m=16, block_n=16, seed=4))
    ds = bwd.ds.copy()
    ds[0, 0, 0, 0] += 1e-3
    assert any(not c.ok for c in truth.backward_checks(dataclasses.replace(bwd, ds=ds)))


# ---------------------------------------------------------------- what the pages render
def _latex(at) -> list[str]:
    return [x.value.strip().strip("$").strip() for x in at.latex]


def _render(query: dict, step: int):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.switch_page("viz/pages/attention.py")
    for k, v in {**query, "step": step}.items():
        at.query_params[k] = str(v)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


FORWARD_SCENES = [s for s in SHIPPED if s.page == "attention"]


@pytest.mark.parametrize("scene", [s.name for s in FORWARD_SCENES])
def test_rendered_equations_hold_on_every_scene(scene):
    """Every step of the scene's walk, rendered: the update equations, and split-KV's merge after
    the last step, hold with the numbers printed on the page."""
    trace = scenes.load_scene(next(s for s in FORWARD_SCENES if s.name == scene))
    s = next(x for x in FORWARD_SCENES if x.name == scene)
    follow = s.follow if trace.tile_slot(s.follow) is not None else int(trace.tile_q_blocks[0])
    n = steps.step_count(trace, follow)
    for k in sorted({1, 2, n // 2, n - 1, n} - {0}):
        at = _render({"scene": scene}, k)
        tex = [t for t in _latex(at) if "m_\\text{new}" in t]
        assert tex, f"{scene} step {k}: no update equations on the page"
        bad = check_update(tex[0])
        assert not bad, f"{scene} step {k}: " + "; ".join(bad)
        merges = [t for t in _latex(at) if r"\max_s m_s" in t]
        assert bool(merges) == (trace.config.kv_splits > 1 and k == n), f"{scene} step {k}: the merge shows {merges}"
        for t in merges:
            assert not check_merge(t), f"{scene} merge: {check_merge(t)}"


@pytest.mark.parametrize("scene", [s.name for s in FORWARD_SCENES])
def test_rendered_presenter_screens_hold_on_every_scene(scene):
    """Presenter view's own equations (one vector entry, no line gaps), `out = acc / l` after a
    q-block's last tile and split-KV's merge (two terms written out) hold with their printed numbers."""
    s = next(x for x in FORWARD_SCENES if x.name == scene)
    trace = scenes.load_scene(s)
    n = steps.step_count(trace, s.follow)
    for k in sorted({1, n - 1, n} - {0}):
        tex = _latex(_render({"scene": scene, "present": 1}, k))
        updates = [t for t in tex if "m_\\text{new}" in t]
        outs = [t for t in tex if r"\text{kernel's out}" in t]
        merges = [t for t in tex if r"\max_s m_s" in t]
        from viz import words

        end = words.attention_facts(trace, steps.steps(trace, s.follow)[k - 1], s.row % trace.config.block_m)["end"]
        if end == "merge":
            assert merges and not check_merge(merges[0]), (scene, merges and check_merge(merges[0]))
        elif end == "out":
            assert outs and not check_out(outs[0]), (scene, k, outs and check_out(outs[0]))
        else:
            assert updates and not check_update(updates[0]), (scene, k, updates and check_update(updates[0]))


def test_the_out_checker_catches_a_wrong_division():
    from viz import screens

    trace = capture_trace(TraceConfig(seq_len=40, head_dim=16, block_m=16, block_n=16, seed=4))
    last = steps.steps(trace, 1)[-1]
    good = screens.out_tex(trace, last, 3)
    assert not check_out(good)
    o = steps.output_row(trace, 1, 3)
    assert check_out(good.replace(fa.tex_num(o["l"]), fa.tex_num(o["l"] * 1.02), 1))


@pytest.mark.parametrize("cfg", [c for c in FUZZED if c.seq_len > 16][:6] + MASKED[:4], ids=_id)
def test_rendered_equations_hold_live(cfg):
    query = {f: (int(v) if isinstance(v, bool) else v) for f, v in cfg.fields()} | {"q_block": cfg.n_q_blocks - 1}
    trace = capture_trace(cfg)
    n = steps.step_count(trace, cfg.n_q_blocks - 1)
    for k in sorted({1, n}):
        at = _render(query, k)
        label = " ".join(m.value for m in at.markdown if "attn-step-label" in m.value)
        assert f"Step {k} of {n}" in re.sub("<[^>]+>", "", label)
        tex = [t for t in _latex(at) if "m_\\text{new}" in t]
        assert tex and not check_update(tex[0]), check_update(tex[0]) if tex else "no equations"


def test_the_rendered_checker_catches_a_wrong_page():
    """The parser is no formality: equations with one number changed are refused."""
    trace = capture_trace(TraceConfig(seq_len=64, head_dim=16, block_m=16, block_n=16, scenario="increasing"))
    step = steps.steps(trace, 2)[2]
    good = fa.update_equations(trace, step, 3)
    assert not check_update(good)
    u = steps.row_update(trace, step, 3)
    wrong_l = good.replace(rf"\mathbf{{{fa.tex_num(u.l_new)}}}", rf"\mathbf{{{fa.tex_num(u.l_new * 1.01)}}}")
    assert check_update(wrong_l) and wrong_l != good
    wrong_alpha = good.replace(rf"\mathbf{{{fa.tex_num(u.alpha)}}}", rf"\mathbf{{{fa.tex_num(u.alpha * 0.9)}}}")
    assert check_update(wrong_alpha)
    merged = capture_trace(TraceConfig(seq_len=64, head_dim=16, block_m=16, block_n=16, kv_splits=2, seed=3))
    tex = split.merge_equations(split.merge_parts(merged, 7))
    assert not check_merge(tex)
    big_l = re.search(r"= ([0-9.]+)\\\\O", tex)[1]
    assert check_merge(tex.replace(f"= {big_l}\\\\O", f"= {float(big_l) * 1.05:.4g}\\\\O"))
