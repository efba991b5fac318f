"""Standard attention's three kernels (kernels/standard.py) against float64, their counters against the
traffic model (S written once and read once, P written once and read once), and their argument checks."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from kernels import inputs, limits, reference, standard, traffic
from viz.figures.memory import nice_bytes

ROOT = Path(__file__).resolve().parents[1]


def _torch_low(q, k, v, causal, dtype):
    """What PyTorch's own computation in `dtype` gets: the yardstick for the kernels' error."""
    t = [torch.as_tensor(x).to(standard.TORCH_DTYPES[dtype]) for x in (q, k, v)]
    s = (t[0] @ t[1].T) * q.shape[1] ** -0.5
    if causal:
        s = s.masked_fill(torch.ones_like(s, dtype=torch.bool).triu(1), float("-inf"))
    return (torch.softmax(s.float(), dim=-1).to(t[0].dtype) @ t[2]).double().numpy()


@pytest.mark.parametrize("seq_len, head_dim, block_m, block_n", [(113, 16, 32, 16), (200, 64, 64, 32), (37, 32, 16, 64)])
@pytest.mark.parametrize("causal", [False, True])
def test_standard_matches_float64_and_counts_the_model(seq_len, head_dim, block_m, block_n, causal):
    q, k, v = inputs.attention_inputs(seq_len, head_dim, block_n, "random", seed=seq_len)
    got = standard.run(q, k, v, causal, block_m, block_n)
    ref = reference.attention(q, k, v, causal, head_dim ** -0.5)
    for name, a, b in (("S", got.s, ref["s"]), ("P", got.p, ref["p"]), ("O", got.out, ref["out"])):
        assert not np.isnan(a).any(), f"{name} has unwritten (NaN) entries"
        kept = np.isfinite(b)  # S: the causal -inf entries are compared below
        err = np.max(np.abs(a[kept] - b[kept]))
        assert err < 1e-4, f"{name}: max |kernel - float64| = {err:.2e} at N={seq_len}, d={head_dim}, causal={causal}"
    if causal:
        assert np.isneginf(got.s[np.triu_indices(seq_len, 1)]).all(), "S above the diagonal must be -inf in HBM"
    assert got.counters == traffic.standard_kernels(seq_len, head_dim, block_m), got.counters
    model = traffic.standard_attention(seq_len, head_dim)
    c = got.counters
    assert c["s_stores"] == c["s_loads"] == c["p_stores"] == c["p_loads"] == seq_len * seq_len
    assert c["s_stores"] + c["p_stores"] == model["s_p_elements"], "S and P written once each"
    assert c["s_loads"] + c["p_loads"] == model["s_p_elements"], "S and P read back once each"


@pytest.mark.parametrize("dtype", [d for d in limits.dtypes() if d != "float32"])
def test_low_precision_within_torch_error(dtype):
    q, k, v = inputs.attention_inputs(100, 32, 32, "random", seed=3)
    got = standard.run(q, k, v, False, 32, 32, dtype=dtype)
    ref = reference.attention(q, k, v, False, 32 ** -0.5)["out"]
    ours, theirs = np.max(np.abs(got.out - ref)), np.max(np.abs(_torch_low(q, k, v, False, dtype) - ref))
    assert ours <= 2 * theirs + 1e-6, f"{dtype}: kernels err {ours:.2e} vs torch's own {theirs:.2e}"


def test_count_off_gives_the_same_output_and_no_counters():
    q, k, v = inputs.attention_inputs(70, 16, 16, "large", seed=1)
    on, off = standard.run(q, k, v, True, 16, 16), standard.run(q, k, v, True, 16, 16, count=False)
    assert off.counters == {} and on.counters
    assert np.array_equal(on.out, off.out), "counting changed the output"


@pytest.mark.parametrize("kw, message", [(dict(block_m=48), "block_m"), (dict(dtype="int8"), "dtype"),
                                         (dict(k_rows=10), "alike")])
def test_bad_arguments_are_messages(kw, message):
    q, k, v = inputs.attention_inputs(32, 16, 16, "random", seed=0)
    if "k_rows" in kw:
        k = k[: kw.pop("k_rows")]
    args = dict(block_m=16, block_n=16) | kw
    with pytest.raises(ValueError, match=message):
        standard.run(q, k, v, False, args["block_m"], args["block_n"], dtype=args.get("dtype", "float32"))


# ---------------------------------------------------------------- the page
def _page(step: int | None = None, **config):
    from streamlit.testing.v1 import AppTest

    from viz.specs import ATTENTION
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.switch_page("viz/pages/attention.py")
    for key, value in ATTENTION.keyed(**config).items():
        at.session_state[key] = value
    if step is not None:
        at.session_state[ATTENTION.key("std_step")] = step
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"(?<![\w_\[])-?\d+\.?\d*(?:e[-+]?\d+)?(?![\w\]])", line.split("=", 1)[1])]


CONFIG = dict(seq_len=100, head_dim=16, block_m=32, block_n=32, follow=1, dtype="float32", causal=True)


@pytest.mark.parametrize("step", [1, 2, 5, 6, 9])
def test_page_steps_standard_attention_and_its_equations_hold(step):
    at = _page(step, **CONFIG)
    lines = [m.value.strip("`") for m in at.markdown if m.value.startswith("`") and ("S[" in m.value or "O[" in m.value
                                                                                    or "m = max" in m.value)]
    assert lines, "no standard-attention equation on the page"
    steps = standard.walk(100, 32)
    kernel = steps[step - 1].kernel
    assert any(f"Kernel {kernel}: {standard.KERNEL_NAMES[kernel]}" in m.value for m in at.markdown)
    _assert_hold(lines)
    caption = " ".join(c.value for c in at.caption if "max |O − float64|" in c.value)
    assert f"the whole run moved {nice_bytes(4 * 100 * 100 * 4)} of S and P" in caption, caption
    err = float(re.search(r"max \|O − float64\| = ([\d.e+-]+)", caption)[1])
    assert err < 1e-4, caption
    assert "FlashAttention: 0 bytes of S and P" in caption


def _assert_hold(lines: list[str]) -> None:
    """Each equation the page shows holds with the numbers it shows."""
    for line in lines:
        nums = _numbers(line)
        if line.startswith("S[") and "−∞" not in line:
            dot, scale, s = nums
            assert abs(dot * scale - s) <= 1e-5 * max(1.0, abs(s)), line
        elif line.startswith("P["):
            e, ell, p = nums
            assert abs(e / ell - p) <= 1e-5 * max(1e-3, p), line
    o_lines = [_numbers(line)[-1] for line in lines if line.startswith("O[")]
    if len(o_lines) == 2:  # the last tile: the partial sum shown is the O the kernel wrote
        assert abs(o_lines[0] - o_lines[1]) <= 1e-5 * max(1.0, abs(o_lines[1])), lines


@pytest.mark.parametrize("present", [False, True], ids=["normal", "presenter"])
@pytest.mark.parametrize("step", [3, 6, 9])
def test_std_1_steps_standard_attention_as_the_page_s_steps(step, present):
    """?std=1: the three kernels' steps are the page's (the stepper, the URL's step and std=1), in
    presenter view one screen a step; the equations it shows hold; 'Back' returns to the tiles."""
    import html as html_lib

    from streamlit.testing.v1 import AppTest

    from viz.specs import ATTENTION
    from viz.stepping import PRESENT
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.switch_page("viz/pages/attention.py")
    for key, value in ATTENTION.keyed(**CONFIG, std=True, step=step - 1).items():
        at.session_state[key] = value
    at.session_state[PRESENT] = present
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    kernel = standard.walk(100, 32)[step - 1].kernel
    label = " ".join(m.value for m in at.markdown if "Standard attention" in m.value)
    assert f"Kernel {kernel}: {standard.KERNEL_NAMES[kernel]}" in label and f"step {step} of 9" in label, label
    if present:
        shown = [html_lib.unescape(re.sub("<[^>]+>", "", h.proto.body)) for h in at.get("html")]
    else:
        shown = [m.value.strip("`") for m in at.markdown if m.value.startswith("`")]
    lines = [t for t in shown if t.startswith(("S[", "P[", "O[", "m = max"))]
    assert lines, shown
    _assert_hold(lines)
    assert at.query_params.get("std") == "1" and at.query_params.get("step") == str(step), at.query_params
    if not present:
        at.button(key=ATTENTION.key("std_off")).click().run()
        assert not at.exception and not at.session_state[ATTENTION.key("std")]
        assert not any("Standard attention ·" in m.value for m in at.markdown)


def test_a_link_with_std_1_opens_the_stepped_view():
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.switch_page("viz/pages/attention.py")
    for key, value in dict(seq_len=100, head_dim=16, block_m=32, block_n=32, std=1, step=4).items():
        at.query_params[key] = str(value)
    at.run()
    assert not at.exception and not at.warning, ([e.value for e in at.exception], [w.value for w in at.warning])
    assert any("Standard attention" in m.value and "step 4 of 9" in m.value for m in at.markdown), \
        [m.value for m in at.markdown][:5]
