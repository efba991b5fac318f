"""The kernel's source beside each value: the marked lines are read from the kernel modules, each
computes what its tag names (a test fails when a marked line no longer does), and the branch the
page highlights is the one the kernel's own loop bounds ran."""
import ast

import pytest

from kernels import source_lines, steps
from kernels.trace import TraceConfig, capture_trace

# what the marked line must assign, and what its right-hand side must contain
MEANING = {
    "m": ("m_ij", ("tl.maximum", "tl.max(qk")),
    "alpha": ("alpha", ("exp2", "m_i - ")),
    "p": ("p", ("exp2", "qk")),
    "l": ("l_i", ("l_i * alpha", "tl.sum(p")),
    "acc": ({"acc", "o_new"}, ("alpha",)),
    "out": ("out", ("acc / l_i",)),
    "D": ("delta", ("tl.sum(o * do",)),
    "dS": ("dsT", ("pT * (dpT - Di",)),
}


@pytest.mark.parametrize("name", list(MEANING))
def test_marked_lines_compute_what_they_name(name):
    kernels = ("backward",) if name in ("D", "dS") else ("fa2", "fa1")
    found = [line for k in kernels for line in source_lines.lines(name, k)]
    assert found, f"no line of the kernels is marked [{name}]"
    target, parts = MEANING[name]
    for line in found:
        text = (source_lines.KERNELS / line.file.removeprefix("kernels/")).read_text().splitlines()[line.line - 1]
        assert source_lines.TAG.search(text), f"{line.file}:{line.line} lost its tag"
        tree = ast.parse(line.code.strip())
        assign = tree.body[0]
        assert isinstance(assign, ast.Assign), f"{line.file}:{line.line} is no assignment: {line.code!r}"
        got = ast.unparse(assign.targets[0])
        assert got in (target if isinstance(target, set) else {target}), (
            f"{line.file}:{line.line} is marked [{name}] but assigns {got}: {line.code.strip()!r}")
        rhs = ast.unparse(assign.value)
        assert any(p.replace(" ", "") in rhs.replace(" ", "") for p in parts) or name == "acc" and "tl.dot(p" in rhs, (
            f"{line.file}:{line.line} is marked [{name}] but computes {rhs!r}")


def test_every_branch_has_each_line_once():
    for branch in source_lines.BRANCHES:
        for name in ("m", "alpha", "p", "l"):
            got = source_lines.lines(name, "fa2", branch)
            assert len(got) == 1 and got[0].function == "softmax_tile", (branch, name, got)
        assert {x.function for x in source_lines.lines("acc", "fa2", branch)} == {"_attn_fwd_inner"}
    assert [x.function for x in source_lines.lines("acc", "fa1")] == ["_attn_fwd_fa1"]


@pytest.mark.parametrize("cfg,want", [
    (TraceConfig(seq_len=64, head_dim=16, block_m=16, block_n=16), {"unmasked"}),
    (TraceConfig(seq_len=70, head_dim=16, block_m=16, block_n=16), {"unmasked", "masked"}),
    (TraceConfig(seq_len=64, head_dim=16, block_m=32, block_n=16, causal=True), {"unmasked", "masked"}),
    # split-KV: the masked tiles (here the ragged end and the causal band) take the branch where a row
    # may have seen no key; whole tiles the unmasked one (before the tile kinds were recorded, every
    # split-KV tile was said to be "split")
    (TraceConfig(seq_len=64, head_dim=16, block_m=16, block_n=16, kv_splits=2), {"unmasked"}),
    (TraceConfig(seq_len=70, head_dim=16, block_m=32, block_n=16, kv_splits=2, causal=True), {"unmasked", "empty"}),
    (TraceConfig(seq_len=64, head_dim=16, block_m=16, block_n=16, loop_order="fa1"), {"masked"}),
    (TraceConfig(seq_len=90, head_dim=16, block_m=16, block_n=16, causal=True, window_left=40), {"unmasked", "empty"}),
    (TraceConfig(seq_len=90, head_dim=16, block_m=16, block_n=16, documents=3), {"unmasked", "empty"}),
])
def test_branch_follows_the_kernels_loop_bounds(cfg, want):
    trace = capture_trace(cfg)
    got = {source_lines.branch(trace, s) for i in range(cfg.n_q_blocks) for s in steps.steps(trace, i)}
    assert got == want
    kinds = {int(trace.tile_kind[s.q_block, s.kv_block]) for i in range(cfg.n_q_blocks) for s in steps.steps(trace, i)}
    assert kinds == {1 if b == "unmasked" else 2 for b in want}  # the kernel's record (masks.WHOLE, masks.MASKED)
    if cfg.seq_len == 70 and cfg.kv_splits == 1:  # only the ragged last kv-block runs masked
        last = steps.steps(trace, 0)[-1]
        assert source_lines.branch(trace, last) == "masked"
        assert source_lines.branch(trace, steps.steps(trace, 0)[0]) == "unmasked"
