"""viz/figures.py on real traces: the right tiles highlighted, the kernel's values in the heatmaps
and lines, color ranges fixed across steps, the equations carrying the trace's numbers."""
import math
import re
from pathlib import Path

import numpy as np
import pytest

from kernels import (
    backend,  # noqa: F401  (before triton)
    scenes,
    steps,
    traffic,
)
from kernels import softmax as ksm
from kernels.trace import TraceConfig, capture_trace, scores_softmax_counts
from viz.figures import attention as fa
from viz.figures import backward as fb
from viz.figures import grid, memory, style
from viz.figures import softmax as fsm

ROOT = Path(__file__).resolve().parents[1]

# ragged (100 is no multiple of 32 or 16), causal, block_m != block_n
CAUSAL = TraceConfig(seq_len=100, head_dim=16, block_m=32, block_n=16, causal=True, seed=1)
# every step rescales: the max grows with each kv-block
FULL = TraceConfig(seq_len=64, head_dim=16, block_m=16, block_n=16, scenario="increasing", seed=2)


@pytest.fixture(scope="module")
def causal():
    return capture_trace(CAUSAL)


@pytest.fixture(scope="module")
def full():
    return capture_trace(FULL)


def _color_at(fig, i, j) -> str:
    """Color the tile grid heatmap paints at tile (i, j): its code through the stepwise colorscale."""
    hm = fig.data[0]
    code = hm.z[i][j]
    pos = (code - hm.zmin) / (hm.zmax - hm.zmin)  # (code + 0.5) / K: inside the code's band
    for (lo, c_lo), (hi, _) in zip(hm.colorscale[::2], hm.colorscale[1::2], strict=False):
        if lo <= pos <= hi:
            return c_lo
    raise AssertionError(f"no band of the colorscale holds {pos}")


def _walk(trace, q_block):
    return steps.steps(trace, q_block)


@pytest.mark.parametrize("q_block, k", [(2, 0), (2, 2), (3, 4), (0, 0)])
def test_tile_grid_colors(causal, q_block, k):
    c = causal.config
    walk = _walk(causal, q_block)
    step = walk[k]
    fig = grid.tile_grid_figure(causal, step)
    kvs = [s.kv_block for s in walk]
    tq, tk = causal.visit_order.shape
    for i in range(tq):
        for j in range(tk):
            if causal.visit_order[i, j] < 0:
                want = "skipped"
            elif i != q_block:
                want = "other"
            else:
                at = kvs.index(j)
                want = "done" if at < k else "current" if at == k else "pending"
            got = _color_at(fig, i, j)
            assert got == grid.TILE_COLORS[want], f"tile ({i}, {j}) at step {k}: {got}, want {want}"
    # the q-row and the kv-column on chip are outlined
    diagonal, row, col = fig.layout.shapes  # causal: the diagonal first
    assert (diagonal.x0, diagonal.y0, diagonal.x1, diagonal.y1) == (0, 0, c.seq_len, c.seq_len)
    assert (row.y0, row.y1) == (q_block * c.block_m, min((q_block + 1) * c.block_m, c.seq_len))
    assert (row.x0, row.x1) == (0, c.seq_len)
    assert (col.x0, col.x1) == (step.keys.start, step.keys.stop)
    names = {t.name for t in fig.data[1:]}
    assert "current tile" in names and ("skipped (causal)" in names) == bool((causal.visit_order < 0).any())


def test_causal_skips_match_kernel(causal):
    """Skipped tiles are exactly those the kernel never visited (above the diagonal)."""
    states = grid.tile_states(causal, _walk(causal, 1)[0])
    assert np.array_equal(states == "skipped", causal.visit_order < 0)
    assert steps.step_count(causal, 3) == int((causal.visit_order[3] >= 0).sum())


def test_split_kv_walk_goes_split_by_split():
    """Each split is its own program: its first step starts from m = -inf, l = 0, and every step's
    old state is its own split's previous tile; the grid numbers the walk and outlines each split."""
    trace = capture_trace(TraceConfig(seq_len=100, head_dim=16, block_m=32, block_n=16, kv_splits=3, causal=True))
    walk = _walk(trace, 3)
    assert [s.split for s in walk] == sorted(s.split for s in walk), "split by split"
    for s in walk:
        lo, hi = trace.config.split_range(s.split)
        assert lo <= s.kv_block < hi and s.keys.start >= s.split_keys.start and s.keys.stop <= s.split_keys.stop
        assert (s.prev_kv is None) == s.first
        if s.prev_kv is not None:
            assert trace.config.split_range(s.split)[0] <= s.prev_kv < s.kv_block
        u = steps.row_update(trace, s, 0)
        if s.first:
            assert u.m_old == -math.inf and u.l_old == 0 and not u.acc_old.any()
    fig = grid.tile_grid_figure(trace, walk[2])
    assert [a.text for a in fig.layout.annotations] == [f"<b>split {k}</b>" for k in range(3)]
    assert {sh.name for sh in fig.layout.shapes} >= {"split 0", "split 1", "split 2"}
    labels = [fa.step_label(trace, s) for s in walk]
    assert all(f"split {s.split} of 3" in lbl for s, lbl in zip(walk, labels, strict=True))


@pytest.mark.parametrize("which", ["s", "p"])
def test_tile_heatmap_values(causal, which):
    i = 3  # the ragged last q-block: 100 - 96 = 4 rows
    slot = causal.tile_slot(i)
    walk = _walk(causal, i)
    for step in walk:
        j = step.kv_block
        fig = fa.tile_heatmap_figure(causal, step, which, row=1)
        z = np.array(fig.data[0].z, dtype=float)
        want = getattr(causal, which)[slot, j, :4, : len(step.keys)]
        assert z.shape == want.shape == (4, want.shape[1]), f"step {step.index}: heatmap {z.shape}, tile {want.shape}"
        s = causal.s[slot, j, :4, : want.shape[1]]
        finite = np.isfinite(s)  # masked: s = -inf, p = 0; both drawn blank (NaN) on the grey background
        assert (~finite).any() == step.last_of_walk, f"step {step.index}: only the diagonal tile masks cells"
        assert np.array_equal(z[finite], want[finite]), f"{which} step {step.index}: heatmap differs from the trace"
        assert np.isnan(z[~finite]).all(), f"{which} step {step.index}: masked cells must be blank"
        if which == "p":
            assert (want[~finite] == 0).all()
        assert list(fig.data[0].y) == list(range(96, 100))  # absolute query rows, row 0 at the top
        assert fig.layout.yaxis.autorange == "reversed"


def test_heatmap_color_range_fixed_across_steps(full):
    walk = _walk(full, 1)
    first = fa.tile_heatmap_figure(full, walk[0], "s")
    last = fa.tile_heatmap_figure(full, walk[-1], "s")
    assert (first.data[0].zmin, first.data[0].zmax) == (last.data[0].zmin, last.data[0].zmax)
    s = full.s[full.tile_slot(1)]
    assert first.data[0].zmin == pytest.approx(float(s[np.isfinite(s)].min()))
    assert first.data[0].zmax == pytest.approx(float(s[np.isfinite(s)].max()))
    p0 = fa.tile_heatmap_figure(full, walk[0], "p").data[0]
    p3 = fa.tile_heatmap_figure(full, walk[3], "p").data[0]
    assert (p0.zmin, p0.zmax) == (p3.zmin, p3.zmax)


def test_running_state_lines(full, causal):
    """The followed row's m and l up to this step (solid), the rest faded, every value the trace's."""
    for trace, i, row in ((full, 2, 5), (causal, 3, 2)):
        walk = _walk(trace, i)
        kvs = [s.kv_block for s in walk]
        fig = fa.running_state_figure(trace, walk[1], row)
        r = i * trace.config.block_m + row  # labelled with its row of the sequence
        for name in ("m", "l"):
            want = getattr(trace, name)[i, kvs, row]
            line = next(t for t in fig.data if t.name == f"{name}: row {r}")
            assert np.array_equal(np.array(line.y, dtype=float), want[:2]), f"{name} of row {r} differs from the trace"
            assert list(line.x) == kvs[:2]
            future = next(t for t in fig.data if t.name == f"{name}: row {r}, to come")
            assert np.array_equal(np.array(future.y, dtype=float), want[1:]) and future.opacity < 0.5
            marker = next(t for t in fig.data if t.name == f"{name}: this step")
            assert marker.y[0] == want[1] and marker.x[0] == kvs[1]
    # no causal mask, the last step: every kv-block, so the line is the whole trace.m[i, :, row]
    line = next(t for t in fa.running_state_figure(full, _walk(full, 2)[-1], 5).data
                if t.name == f"m: row {2 * FULL.block_m + 5}")
    assert np.array_equal(np.array(line.y, dtype=float), full.m[2, :, 5])


def test_alpha_and_rescales(full):
    i = 2
    rows = len(FULL.rows(i))
    walk = _walk(full, i)
    for step in walk:
        k, j = step.index, step.kv_block
        bar = fa.alpha_figure(full, step, 0).data[0]
        assert np.array_equal(np.array(bar.y, dtype=float), full.alpha[i, j, :rows])
        grew = full.alpha[i, j, :rows] < 1 if k > 0 else np.zeros(rows, bool)
        assert [c == style.ORANGE for c in bar.marker.color] == list(grew)
        want = int((full.alpha[i, [s.kv_block for s in walk[1: k + 1]], :rows] < 1).sum())
        facts = fa.step_facts(full, step)
        assert facts["grew_so_far"] == want and facts["first"] == (k == 0)
        assert facts["multiplies_so_far"] == rows * (k + 1)  # the kernel multiplies acc by alpha every step
        assert facts["grew"] == (int(grew.sum()) if k else 0)
    # "increasing": each new kv-block holds a larger max, so every row's max grows at every step
    assert fa.step_facts(full, walk[3])["grew_so_far"] == 3 * rows


def test_accumulator_and_output(causal):
    """acc before and after are the trace's; alpha x acc before + p V (from the kernel's p and V,
    derived) adds up to acc after within float32 rounding; colours fixed over the steps."""
    i, row = 2, 7
    slot = causal.tile_slot(i)
    walk = _walk(causal, i)
    for step in walk:
        parts = fa.accumulator_parts(causal, step, row)
        assert np.array_equal(parts["before"], causal.acc_before[slot, step.kv_block, row])
        assert np.array_equal(parts["after"], causal.acc_after[slot, step.kv_block, row])
        assert np.allclose(parts["scaled"] + parts["pv"], parts["after"], rtol=1e-5, atol=1e-5)
        z = np.array(fa.accumulator_figure(causal, step, row).data[0].z, dtype=float)
        assert np.array_equal(z[0], parts["before"]) and np.array_equal(z[3], parts["after"])
    lim = {fa.accumulator_figure(causal, s, row).data[0].zmax for s in walk}
    assert len(lim) == 1, f"accumulator color range changes across steps: {lim}"
    out = steps.output_row(causal, i, row)
    r = i * CAUSAL.block_m + row
    assert np.array_equal(out["out"], causal.out[r]) and np.array_equal(out["ref"], causal.ref_out[r])
    assert np.allclose(out["acc_over_l"], out["out"], rtol=1e-5, atol=1e-6)


def test_equations_carry_the_trace_numbers(full):
    i, row = 1, 3
    walk = _walk(full, i)
    for step in walk:
        j = step.kv_block
        u = steps.row_update(full, step, row)
        assert u.m_new == full.m[i, j, row] and u.alpha == full.alpha[i, j, row]
        assert u.l_new == full.l[i, j, row]
        if step.index:
            prev = walk[step.index - 1].kv_block
            assert u.m_old == full.m[i, prev, row] and u.l_old == full.l[i, prev, row]
        else:
            assert u.m_old == -math.inf and u.l_old == 0
        tex = fa.update_equations(full, step, row)
        for x in (full.m[i, j, row], full.alpha[i, j, row], full.l[i, j, row], full.acc_after[full.tile_slot(i), j, row, 0]):
            assert f"{float(x):.4g}" in tex, f"step {step.index}: {float(x):.4g} missing from the equations"
    assert fa.tex_num(-math.inf) == r"-\infty"
    assert fa.tex_num(1.5e-7) == r"1.5 \times 10^{-7}"


def test_memory_rows_model_vs_counted():
    trace = capture_trace(TraceConfig(seq_len=40, head_dim=16, block_m=16, block_n=16, causal=True))
    rows = memory.memory_rows(trace, scores_softmax_counts(trace))
    by_id = {r["id"]: r for r in rows}
    assert by_id["flash"]["equal"], f"FlashAttention counted {by_id['flash']['counted']} != model {by_id['flash']['model']}"
    for v in ("naive", "safe", "online"):
        assert by_id[v]["equal"], f"{v}: counted {by_id[v]['counted']} != model {by_id[v]['model']}"
        assert by_id[v]["model_total"] == sum(traffic.SOFTMAX_ACCESSES[v]) * 40 * 40
    assert by_id["standard"]["counted"] is None
    ratio = traffic.total(traffic.standard_attention(40, 16)) / by_id["flash"]["counted_total"]
    assert memory.flash_ratio(rows) == pytest.approx(ratio)
    assert f"{ratio:.1f}×" in memory.flash_headline(rows)
    table = memory.memory_table(rows)
    assert [r["equal?"] for r in table].count("✓") == len(rows) - 1
    fig = memory.memory_figure(rows)
    assert [t.name for t in fig.data] == ["loads (model)", "stores (model)", "counted by the kernel (total)"]


def test_followed_block_in_its_own_capture():
    """Large configs keep the tiles of some q-blocks only: the app captures the followed one alone
    and draws it from the slot it got (one slot: n_slots == 1 stays a run-time value)."""
    cfg = TraceConfig(seq_len=64, head_dim=16, block_m=16, block_n=16)
    one = capture_trace(cfg, q_blocks=(3,))
    assert one.tile_slot(3) == 0 and one.tile_slot(2) is None
    step = _walk(one, 3)[1]
    fig = fa.tile_heatmap_figure(one, step, "s")
    want = one.s[0, step.kv_block, :16, :16]
    assert np.array_equal(np.array(fig.data[0].z, dtype=float), want)


# ---------------------------------------------------------------- softmax page
@pytest.mark.parametrize("variant", fsm.PASSES)
def test_softmax_passes_match_traffic_model(variant):
    loads, stores = traffic.SOFTMAX_ACCESSES[variant]
    assert len(fsm.PASSES[variant]) == loads  # one read per pass
    assert sum(w for _, w in fsm.PASSES[variant]) == stores
    length, block = 40, 16  # 3 chunks, the last one ragged
    n = steps.softmax_step_count(length, block)
    assert n == 9
    first = fsm.pass_states(variant, length, block, 0)
    assert (first[0, :16] == "current").all() or variant == "single_pass"
    last = fsm.pass_states(variant, length, block, n - 1)
    if variant == "safe":  # the slowest: still on its last chunk
        assert (last[2, 32:] == "current").all() and not np.isin(last[:2], ["current", "pending", "pending_alt"]).any()
    else:  # done: every cell read (and the last pass written)
        assert not np.isin(last, ["current", "pending", "pending_alt"]).any()
    fig = fsm.softmax_passes_figure(variant, length, block, 4)
    assert np.array(fig.data[0].z).shape == (loads, length)
    assert f"= {loads + stores} accesses per element" in fig.layout.title.text


def test_online_rescales_from_the_kernel():
    x = np.sort(np.random.default_rng(0).standard_normal(64)).astype(np.float32)  # every chunk a new max
    m, d = ksm.online_trajectory(x, 16)
    res = fsm.online_rescales(m)
    assert [c for c, _ in res] == [1, 2, 3]
    for c, factor in res:
        assert factor == pytest.approx(math.exp(float(m[c - 1]) - float(m[c])))
    fig = fsm.online_state_figure(x, m, d, 16, 2)
    bars = next(t for t in fig.data if t.name == "d (kernel)")
    assert np.array_equal(np.array(bars.y, dtype=float), d)
    x2 = x[::-1].copy()  # decreasing: the max is in chunk 0, no rescale after it
    assert fsm.online_rescales(ksm.online_trajectory(x2, 16)[0]) == []


def test_softmax_access_rows_equal_counts():
    x = np.random.default_rng(0).standard_normal((1, 50)).astype(np.float32)
    import torch

    counts = {v: ksm.softmax(torch.from_numpy(x), v, block=None if v == "single_pass" else 16, return_counts=True)[1]
              for v in ksm.VARIANTS}
    rows = fsm.softmax_access_rows(50, counts)
    assert [r["per element (model)"] for r in rows] == [3, 4, 3, 2]
    assert all(r["equal?"] == "✓" for r in rows), rows


# ---------------------------------------------------------------- backward page
@pytest.fixture(scope="module")
def bwd():
    from kernels.trace_backward import capture_backward_trace

    return capture_backward_trace(TraceConfig(seq_len=100, head_dim=16, block_m=32, block_n=16, causal=True, seed=3))


@pytest.mark.parametrize("kv_block, step", [(0, 0), (0, 3), (3, 1), (6, 0)])
def test_bwd_tile_grid_colors(bwd, kv_block, step):
    walk = steps.backward_steps(bwd, kv_block)
    fig = grid.bwd_tile_grid_figure(bwd, walk[step])
    order = [b.q_block for b in walk]
    tk, tq = bwd.visit_order.shape
    for i in range(tq):
        for j in range(tk):
            if bwd.visit_order[j, i] < 0:
                want = "skipped"
            elif j != kv_block:
                want = "other"
            else:
                k = order.index(i)
                want = "done" if k < step else "current" if k == step else "pending"
            assert _color_at(fig, i, j) == grid.TILE_COLORS[want], f"tile (q {i}, kv {j}) at step {step}: want {want}"


def test_bwd_heatmaps_show_the_kernel_tiles_with_fixed_ranges(bwd):
    c = bwd.config
    kv_block = 1
    walk = steps.backward_steps(bwd, kv_block)
    for name in ("p", "dp", "ds"):
        ranges = {(f.data[0].zmin, f.data[0].zmax) for f in (fb.bwd_tile_heatmap_figure(bwd, b, name) for b in walk)}
        assert len(ranges) == 1, f"{name}: color range changes across steps: {ranges}"
        b = walk[1]
        i = b.q_block
        z = np.asarray(fb.bwd_tile_heatmap_figure(bwd, b, name).data[0].z, dtype=float)
        want = getattr(bwd, name)[bwd.tile_slot(kv_block), i, : len(b.rows), : len(b.keys)]
        rows = i * c.block_m + np.arange(want.shape[0])[:, None]
        cols = kv_block * c.block_n + np.arange(want.shape[1])[None, :]
        keep = cols <= rows
        assert np.array_equal(z[keep], want[keep]) and np.isnan(z[~keep]).all(), f"{name}: not the kernel's tile"


def test_bwd_row_parts_and_memory_rows(bwd):
    parts = fb.backward_row_parts(bwd, 50)
    assert parts["source"] == "kernel" and parts["max_diff"] < 1e-6
    assert list(parts["keys"]) == list(range(51))  # causal: row 50 sees keys 0..50
    table = fb.backward_row_table(parts)
    assert [r["key j"] for r in table] == [0, 1, 2, 3, 4, 5]
    assert memory.elements_text(256 * 256) == "65,536 elements (256 KiB in float32)"
    rows = memory.bwd_memory_rows(bwd)
    assert [r["equal"] for r in rows] == [None, True, True, True, True]
    assert rows[1]["model_total"] == sum(r["model_total"] for r in rows[2:])
    assert rows[0]["model"] == {k: v for k, v in traffic.standard_backward(100, 16).items()}
    assert "fewer elements" in memory.bwd_headline(rows, 100) or "more elements" in memory.bwd_headline(rows, 100)
    fb.backward_row_figure(parts, 50)
    walk = steps.backward_steps(bwd, 1)
    fb.delta_figure(bwd, walk[0])
    fb.bwd_acc_figure(bwd, walk[2])


# ---------------------------------------------------------------- FA1 vs FA2, split-KV, export
ORDERS_CFG = dict(seq_len=100, head_dim=16, block_m=32, block_n=16, causal=True, seed=3)


@pytest.fixture(scope="module")
def both_orders():
    return capture_trace(TraceConfig(**ORDERS_CFG)), capture_trace(TraceConfig(**ORDERS_CFG, loop_order="fa1"))


def test_orders_walks_cover_the_same_tiles_and_count_like_the_kernels(both_orders):
    from viz.figures import orders as fo

    fa2, fa1 = both_orders
    w2, w1 = ([(s.q_block, s.kv_block) for s in fo.walk(t)] for t in (fa2, fa1))
    assert sorted(w2) == sorted(w1) and len(w2) == int(fa2.visited.sum())
    assert w2 == sorted(w2), "FA2: q-block by q-block"
    assert w1 == sorted(w1, key=lambda t: (t[1], t[0])), "FA1: kv-block outside, q-block inside"
    for trace in (fa2, fa1):  # what the walk moves, tile by tile, adds up to what the kernel counted
        n = len(fo.walk(trace))
        assert fo.traffic_so_far(trace, n - 1) == fo.counted(trace)
        so_far = [fo.traffic_so_far(trace, k)["loads"] for k in range(n)]
        assert so_far == sorted(so_far) and so_far[0] > 0
        states = fo.walk_states(trace, 3)
        assert (states == "done").sum() == 3 and (states == "current").sum() == 1
        assert ((states == "skipped") == (trace.visit_order < 0)).all()


def test_fa1_update_correct_form_and_the_reviews_line(both_orders):
    """O2 = (l1/l2) e^(m1 - m2) O1 + P~2 V2 reproduces the O the FA1 kernel wrote (float32 arithmetic
    on O(1) numbers: 1e-5); the review's diag(l1/l2)^-1 O1 + P~2 V2 does not wherever the max grew or
    the sum changed."""
    from viz.figures import orders as fo

    _, fa1 = both_orders
    checked = wrong = 0
    for step in fo.walk(fa1):
        for row in range(len(step.rows)):
            f = fo.fa1_forms(fa1, step, row)
            if f["first"]:
                continue
            checked += 1
            assert f["err_correct"] < 1e-5, (step.index, row, f)
            wrong += f["err_review"] > 1e-3
    assert checked > 100 and wrong > checked // 2
    assert r"\text{review: }" in fo.fa1_forms_tex(fo.fa1_forms(fa1, fo.walk(fa1)[5], 1))


def test_the_readme_states_the_review_formulas_measured_miss():
    """The README's figure for how far the FA2 review's FA1 line misses is the shipped scene's own."""
    from viz.figures import orders as fo

    fa1 = scenes.load_scene(next(s for s in scenes.read_manifest()[0] if s.name == "fa1-order"))
    miss = max(fo.fa1_forms(fa1, step, row)["err_review"] for step in fo.walk(fa1) for row in range(len(step.rows)))
    stated = re.search(r"misses the kernel's O by up to ([0-9.]+) on the", (ROOT / "README.md").read_text())
    assert stated and float(stated[1]) == pytest.approx(miss, abs=0.006), (stated, miss)


def test_split_kv_merge_from_the_kernels_partials():
    from viz.figures import split

    trace = capture_trace(TraceConfig(seq_len=100, head_dim=16, block_m=32, block_n=16, causal=True, kv_splits=3))
    for row in (0, 1, 40, 99):
        parts = split.merge_parts(trace, row)
        assert parts["err_formula"] < 1e-5 and parts["err_ref"] < 1e-5
        assert parts["weights"].sum() == pytest.approx(1.0)
        assert parts["m"] == pytest.approx(trace.ref_lse[row] - math.log(parts["l"]), abs=1e-5)
        if row == 0:  # causal row 0 sees key 0 only: splits 1 and 2 hold nothing
            assert list(parts["live"]) == [True, False, False] and parts["weights"][0] == 1.0
    fig = split.partials_figure(trace, 99)
    assert list(fig.data[1].y) == pytest.approx(list(split.merge_parts(trace, 99)["weights"]))
    assert r"\max_s m_s" in split.merge_equations(split.merge_parts(trace, 99))


def test_export_html_is_self_contained_and_has_every_step(causal):
    from viz import export

    html = export.animation_html(causal, 3, 1)
    import re

    assert "<script" in html and "<script src" not in html.replace('<script src="data:', ""), "plotly.js inline"
    frames = {int(k) for k in re.findall(r'"name":"(\d+)"\}', html)}  # each frame ends with its name
    assert frames == set(range(steps.step_count(causal, 3)))
    fig = export.step_figure(causal, 3, 1, 2)
    assert "Step 3" in fig.layout.title.text
    assert np.array_equal(np.array(fig.data[0].z), np.array(grid.tile_grid_figure(causal, _walk(causal, 3)[2]).data[0].z))
    # what presenter view shows: alpha per row, the accumulator's stages, the equations with the kernel's numbers, words
    step = _walk(causal, 3)[2]
    u = steps.row_update(causal, step, 1)
    alpha = next(t for t in fig.data if t.name == "alpha")
    assert np.array_equal(np.array(alpha.y), causal.alpha[3, step.kv_block, :len(step.rows)])
    acc = next(t for t in fig.data if t.name == "acc")
    assert np.allclose(np.array(acc.z)[3], fa.accumulator_parts(causal, step, 1)["after"])
    notes = {a.name: a.text for a in fig.layout.annotations if a.name}
    for v in (u.m_new, u.alpha, u.l_new):
        assert fa.html_num(v) in notes["equations"]
    from viz import words
    assert words.attention(causal, step, 1).replace("'", "&#x27;") in notes["words"]


@pytest.mark.skipif(not __import__("viz.export", fromlist=["chromium"]).chromium(), reason="needs Chromium")
def test_export_png_is_1920_by_1080(causal):
    import struct

    from viz import export

    png = export.step_png(causal, 3, 1, 2)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (1920, 1080)
    assert export.png_title(png).startswith("Step 3: Q3 meets K2")  # step 2 (0-based) of q-block 3: kv-block 2


def test_backward_example_parts():
    ex = fb.example_parts(fb.EXAMPLE_P, fb.EXAMPLE_DP, None)
    assert ex["jac"][2] == pytest.approx([-0.04, -0.2, 0.24])
    assert ex["ds_jacobian"] == pytest.approx(ex["ds_d"]) and ex["d"] == pytest.approx(2.3)
    j, jdp = fb.example_tex(ex)
    assert "- 0.04a - 0.2b + 0.24c" in jdp
    with pytest.raises(ValueError, match="sum to 1"):
        fb.example_parts([0.5, 0.5, 0.5], [1, 2, 3], None)


def test_passes_figure_is_one_aligned_grid():
    fig = fsm.passes_figure(64, 16, 5)
    labels = list(fig.layout.yaxis.ticktext)
    assert len(labels) == sum(len(fsm.PASSES[v]) for v in traffic.SOFTMAX_VARIANTS) == len(fig.data[0].z)
    assert labels[0].startswith("<b>naive</b>") and any(lbl.startswith("<b>split-row</b>") for lbl in labels)


def test_memory_rows_for_other_orders():
    for kw in (dict(loop_order="fa1"), dict(kv_splits=2)):
        trace = capture_trace(TraceConfig(seq_len=80, head_dim=16, block_m=16, block_n=32, **kw))
        rows = memory.memory_rows(trace, None, None)
        flash = rows[-1]
        assert flash["equal"] and flash["what"] == memory.flash_name(trace.config)
        assert "2·block_m/d = 2.0×" in memory.memory_note(trace.config, rows)


def test_export_stays_within_its_budget(causal, monkeypatch):
    """The animated HTML is measured on its first frame before it is built: past the budget it
    keeps every k-th step, and what it builds stays within the budget."""
    from viz import export

    whole = export.plan(causal, 3, 1)
    assert whole["stride"] == 1 and whole["frames"] == steps.step_count(causal, 3)
    frame = (whole["bytes"] - export.PLOTLY_JS_BYTES) / whole["frames"]
    monkeypatch.setattr(export, "BUDGET_BYTES", int(export.PLOTLY_JS_BYTES + 2.5 * frame))
    tight = export.plan(causal, 3, 1)
    assert tight["stride"] > 1 and tight["frames"] <= 2 and tight["bytes"] <= export.BUDGET_BYTES
    html = export.animation_html(causal, 3, 1, tight["stride"])
    assert len(html) <= export.BUDGET_BYTES * 1.1, (len(html), export.BUDGET_BYTES)
    monkeypatch.setattr(export, "BUDGET_BYTES", export.PLOTLY_JS_BYTES + 10)
    assert not export.plan(causal, 3, 1)["fits"], "one frame over the budget: no animation, the PNG instead"
