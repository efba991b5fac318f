"""The speaker's words (viz/words.py) never contradict the step they describe: every number they
say is the kernel's (read back and compared with the trace), every claim ("nothing is rescaled",
"m rises", "beats m") holds at that step, on every shipped scene and on live configs; a scene's own
templates hold no number of their own; every stop of the talk has a script a console can read."""
import math
import re

import numpy as np
import pytest

from kernels import scenes, steps
from kernels.scenes import check_words
from kernels.trace import TraceConfig, capture_trace
from viz import words

SHIPPED, _ = scenes.read_manifest()
TOKEN = re.compile(r"(?<![\w.])(−?∞|−?\d+(?:\.\d+)?(?:e[+−-]?\d+)?)(?![\w])")


def said_numbers(text: str) -> list[float]:
    """The numbers a sentence says (not the digits of a name like K2 or float16)."""
    return [words.said(t) for t in TOKEN.findall(text)]


def close(a: float, b: float) -> bool:
    """a as printed with 4 significant digits is b."""
    if math.isinf(a) or math.isinf(b) or math.isnan(a) or math.isnan(b):
        return a == b or (math.isnan(a) and math.isnan(b))
    return abs(a - b) <= 5e-4 * max(abs(b), 1e-30) + 1e-12


def check_attention(trace, step, row: int, text: str) -> list[str]:
    u = steps.row_update(trace, step, row)
    bad = []
    allowed = [u.m_old, u.m_new, u.alpha, u.l_old, u.l_new, u.rowsum_p, u.rowmax_s, float(u.row), float(u.masked),
               float(len(step.keys)), float(step.split), float(step.k + 1), float(step.program_steps),
               -math.inf, 0.0]  # where every program starts: m = -inf, l = 0
    if trace.config.kv_splits > 1:
        allowed.append(float(np.max(trace.split_m[:, u.row])))
        allowed.append(float(np.max(np.abs(trace.out[u.row].astype(np.float64) - trace.ref_out[u.row]))))
    if step.last:
        allowed.append(steps.output_row(trace, step.q_block, row)["err"])
    for x in said_numbers(text):
        if not any(close(x, a) or (abs(a) < 1 and abs(x - a) <= 0.05 * abs(a)) for a in allowed):  # err: 2 digits
            bad.append(f"says {x}, which is none of the step's numbers")
    first = step.first or u.m_old == -math.inf
    if "nothing is rescaled" in text and not (u.alpha == 1 and not first):
        bad.append(f"says nothing is rescaled at α = {u.alpha}")
    if ("shrink by" in text or "m rises" in text) and not (u.alpha < 1 and not first and u.m_new > u.m_old):
        bad.append(f"says m rises at α = {u.alpha}, m {u.m_old} -> {u.m_new}")
    if "no mask" in text and u.masked:
        bad.append(f"says no mask with {u.masked} keys masked")
    if "last tile" in text and not step.last:
        bad.append("says last tile before the program's last tile")
    return bad


@pytest.mark.parametrize("scene", [s for s in SHIPPED if s.page == "attention"], ids=lambda s: s.name)
def test_attention_words_hold_on_every_step_of_every_scene(scene):
    trace = scenes.load_scene(scene)
    walk = steps.steps(trace, scene.follow)
    for row in sorted({0, scene.row % len(walk[0].rows), len(walk[0].rows) - 1}):
        for step in walk:
            text = words.attention(trace, step, row, scene)
            assert "(not at this step)" not in text, f"{scene.name} step {step.index + 1}: {text}"
            bad = check_attention(trace, step, row, text)
            assert not bad, f"{scene.name} step {step.index + 1} row {row}: {bad}: {text}"


@pytest.mark.parametrize("cfg", [
    TraceConfig(seq_len=70, head_dim=16, block_m=16, block_n=32, causal=True, scenario="increasing"),
    TraceConfig(seq_len=90, head_dim=16, block_m=32, block_n=16, kv_splits=3, causal=True, seed=2),
    TraceConfig(seq_len=50, head_dim=16, block_m=16, block_n=16, loop_order="fa1", scenario="decreasing"),
], ids=["causal-ragged", "split3-causal", "fa1"])
def test_attention_words_hold_live(cfg):
    trace = capture_trace(cfg)
    for i in range(cfg.n_q_blocks) if cfg.loop_order != "fa1" else (0,):
        for step in steps.steps(trace, i):
            rows = len(step.rows)
            for row in sorted({0, rows - 1}):
                text = words.attention(trace, step, row)
                assert not check_attention(trace, step, row, text), (step, row, text)


def test_the_words_checker_catches_a_lie():
    """The check is no formality: the words of a step where the max grew, put on a step where it did
    not (and a number changed), are refused."""
    trace = scenes.load_scene(next(s for s in SHIPPED if s.name == "every-step-rescales"))
    walk = steps.steps(trace, 2)
    grew = next(s for s in walk if not s.first and steps.row_update(trace, s, 0).alpha < 1)
    text = words.attention(trace, grew, 0)
    assert "m rises" in text and not check_attention(trace, grew, 0, text)
    kept = scenes.load_scene(next(s for s in SHIPPED if s.name == "max-in-first-block"))
    later = steps.steps(kept, 2)[3]
    assert check_attention(kept, later, 0, text)  # "m rises" where α = 1, and numbers not its own
    u = steps.row_update(trace, grew, 0)
    assert check_attention(trace, grew, 0, text.replace(words.num(u.l_new), words.num(u.l_new * 1.01)))


@pytest.mark.parametrize("scene", [s for s in SHIPPED if s.page == "softmax"], ids=lambda s: s.name)
def test_softmax_words_hold(scene):
    trace = scenes.load_scene(scene)
    c = trace.config
    for k in range(steps.softmax_step_count(c.length, c.block)):
        text = words.softmax(trace, k, scene)
        f = words.softmax_facts(trace, k)
        p, ch = steps.softmax_position(c.length, c.block, k)
        if "beats m" in text:
            assert trace.m[ch] > trace.m[ch - 1], (k, text)
        if "stays below" in text:
            assert trace.m[ch] == trace.m[ch - 1], (k, text)
        facts = [words.said(v) for v in f.values() if isinstance(v, str) and TOKEN.fullmatch(v)]
        facts += [float(v) for v in f.values() if isinstance(v, int | float) and not isinstance(v, bool)]
        facts += [100.0, 0.0]  # the overflow experiment's scale (kernels/softmax_trace.py: the row x 100), d's start
        for x in said_numbers(text):
            assert any(close(x, a) or x == a for a in facts), f"{scene.name} step {k + 1} says {x}: {text}"
    naive = int((~np.isfinite(trace.out100[0])).sum())
    last = words.softmax(trace, steps.softmax_step_count(c.length, c.block) - 1)
    assert f"returns {naive} NaN or inf" in last


def test_backward_words_say_the_traces_numbers():
    scene = next(s for s in SHIPPED if s.page == "backward")
    trace = scenes.load_scene(scene)
    for b in steps.backward_steps(trace, scene.follow):
        text = words.backward(trace, b, scene.row)
        slot = trace.tile_slot(b.kv_block)
        assert words.num(np.nanmax(np.abs(trace.ds[slot, b.q_block]))) in text
        assert (f"D = rowsum(dO ∘ O) = {words.num(trace.delta[scene.row])}" in text) == (scene.row in b.rows)


@pytest.mark.parametrize("template, match", [
    ("m is {m_new} and 100 more", "number of their own"),
    ("m is {m_new}, step 3", "number of their own"),
    ("the {nonsense} fact", "name facts"),
    ("unclosed {m_new", "words for step"),
    ("", "1 to 400"),
])
def test_scene_words_hold_no_number_of_their_own(template, match):
    with pytest.raises(ValueError, match=match):
        check_words("a-scene", "attention", {"2": template})
    with pytest.raises(ValueError, match="keyed by a step number"):
        check_words("a-scene", "attention", {"two": "m is {m_new}"})
    assert check_words("a-scene", "attention", {"*": "m is {m_new} in float32"})  # a name's digits are no number


def test_scenes_open_with_next_enabled():
    """Each scene opens at its narrated step, never its last: Next has somewhere to go on arrival."""
    for s in SHIPPED:
        trace = scenes.load_scene(s)
        if s.page == "attention":
            n = steps.step_count(trace, s.follow)
        elif s.page == "backward":
            n = len(steps.backward_steps(trace, s.follow))
        elif s.page == "ring":
            n = trace.config.world_size
        else:
            n = steps.softmax_step_count(trace.config.length, trace.config.block)
        assert 1 <= s.step < n, f"{s.name} opens at step {s.step} of {n}"


@pytest.mark.parametrize("scene", [s for s in SHIPPED if s.page == "ring"], ids=lambda s: s.name)
def test_ring_words_say_the_traces_numbers(scene):
    from kernels import ring_trace

    trace = scenes.load_scene(scene)
    row = trace.nearest_row(scene.row)
    for t in range(trace.config.world_size):
        text = words.ring(trace, t, row)
        view = ring_trace.step_view(trace, t, row)
        assert f"holds rank {view.src}'s K/V shard" in text and f"M = {words.num(view.m)}, L = {words.num(view.l)}" in text
        skipped, live = any(p.kind == 0 for p in view.parts), bool(view.live)
        assert ("skips" in text or "nothing to compute" in text) == skipped, text
        assert ("nothing to compute" in text) == (not live), text
