"""FlashAttention-1's loop order and split-KV, against float64: the FA1-order kernel's m, l and its
normalized O at every step, its visit order and its counters (the O, m, l round trips included);
the split-KV programs' partial (m, l, O) and their merge. Ragged sizes, both masks."""
import numpy as np
import pytest

from kernels import reference, traffic
from kernels.trace import TraceConfig, capture_trace, expected_visits
from tests.helpers import NP_FLOOR, n_cols, n_rows, walk_blocks

FA1 = [
    TraceConfig(seq_len=113, head_dim=16, block_m=32, block_n=16, causal=False, loop_order="fa1"),
    TraceConfig(seq_len=200, head_dim=32, block_m=16, block_n=32, causal=True, loop_order="fa1", scenario="increasing"),
    TraceConfig(seq_len=90, head_dim=16, block_m=64, block_n=16, causal=True, loop_order="fa1", dtype="float16"),
    TraceConfig(seq_len=1, head_dim=16, block_m=16, block_n=16, causal=True, loop_order="fa1"),
]
SPLITS = [
    TraceConfig(seq_len=200, head_dim=32, block_m=32, block_n=16, causal=True, kv_splits=3),
    TraceConfig(seq_len=113, head_dim=16, block_m=16, block_n=16, causal=False, kv_splits=8, scenario="large"),
    TraceConfig(seq_len=100, head_dim=16, block_m=64, block_n=16, causal=True, kv_splits=7, dtype="float16"),
    TraceConfig(seq_len=33, head_dim=16, block_m=16, block_n=16, causal=False, kv_splits=2),
]


def _ids(c):
    return f"N{c.seq_len}-{c.block_m}x{c.block_n}-{'causal' if c.causal else 'full'}-{c.dtype}-{c.loop_order}-S{c.kv_splits}"


def _prefix_state(tr, cols_hi: int, r0: int, rows: int, cols_lo: int = 0):
    """float64 max, sum and normalized output of rows r0.. over keys [cols_lo, cols_hi)."""
    s = reference.scores(tr.q, tr.k, tr.sm_scale, tr.config.causal)[r0:r0 + rows, cols_lo:cols_hi]
    m = s.max(axis=1)
    with np.errstate(invalid="ignore"):
        e = np.where(np.isfinite(m)[:, None], np.exp(s - np.where(np.isfinite(m), m, 0)[:, None]), 0.0)
    l = e.sum(axis=1)
    o = np.where(l[:, None] > 0, e @ tr.v[cols_lo:cols_hi].astype(np.float64) / np.where(l > 0, l, 1)[:, None], 0.0)
    return m, l, o


@pytest.mark.parametrize("cfg", FA1, ids=_ids)
def test_fa1_order_steps_match_float64(cfg):
    tr = capture_trace(cfg)
    c = tr.config
    assert np.array_equal(tr.visit_order, expected_visits(c))
    # one program, kv-blocks outside: the tiles in the order computed walk down a column, then the next
    i, j = np.nonzero(tr.visited)
    walk = np.argsort(tr.visit_order[i, j])
    assert list(zip(j[walk], i[walk], strict=True)) == sorted(zip(j, i, strict=True))
    model = tr.model_counters()
    assert tr.counters == {k: model[k] for k in tr.counters}, f"counted {tr.counters}, model {model}"
    floor = NP_FLOOR[c.dtype]
    for slot, i in enumerate(tr.tile_q_blocks):
        r0, rows = i * c.block_m, n_rows(tr, i)
        for j in walk_blocks(tr, i):
            hi = j * c.block_n + n_cols(tr, j)
            m, l, o = _prefix_state(tr, hi, r0, rows)
            scale = max(1.0, float(np.abs(m).max()))
            np.testing.assert_allclose(tr.m[i, j, :rows], m, rtol=0, atol=4e-6 * scale, err_msg=f"m ({i}, {j})")
            np.testing.assert_allclose(tr.l[i, j, :rows], l, rtol=1e-5 * scale, err_msg=f"l ({i}, {j})")
            # O is normalized after every tile and goes through memory in the input dtype
            np.testing.assert_allclose(tr.acc_after[slot, j, :rows], o, rtol=0, atol=4 * floor * len(walk_blocks(tr, i)),
                                       err_msg=f"normalized O after tile ({i}, {j})")
    assert tr.max_abs_err < 4 * floor * c.n_kv_blocks + 1e-6, f"out differs from float64 by {tr.max_abs_err:.3g}"


@pytest.mark.parametrize("cfg", SPLITS, ids=_ids)
def test_split_kv_partials_and_merge_match_float64(cfg):
    tr = capture_trace(cfg)
    c = tr.config
    assert np.array_equal(tr.visit_order, expected_visits(c))
    model = tr.model_counters()
    assert tr.counters == {k: model[k] for k in tr.counters}, f"counted {tr.counters}, model {model}"
    assert tr.split_m.shape == (c.kv_splits, c.seq_len) and tr.split_out.shape == (c.kv_splits, c.seq_len, c.head_dim)
    floor = NP_FLOOR[c.dtype]
    for s in range(c.kv_splits):
        lo, hi = c.split_range(s)
        m, l, o = _prefix_state(tr, min(hi * c.block_n, c.seq_len), 0, c.seq_len, lo * c.block_n)
        big = max(1.0, float(np.abs(m[np.isfinite(m)]).max()))
        assert np.array_equal(np.isinf(tr.split_m[s]), np.isinf(m)), f"split {s}: rows that saw no key differ"
        fin = np.isfinite(m)
        np.testing.assert_allclose(tr.split_m[s][fin], m[fin], rtol=0, atol=4e-6 * big, err_msg=f"split {s} m")
        np.testing.assert_allclose(tr.split_l[s], l, rtol=8 * 2**-23 * big + 1e-5, atol=1e-7, err_msg=f"split {s} l")
        # an exponent s - m carries the float32 rounding of |s| (2**-23 |s|) into every weight
        np.testing.assert_allclose(tr.split_out[s], o, rtol=0, atol=2 * floor + 1e-6 + 8 * 2**-23 * big,
                                   err_msg=f"split {s} O")
    # the merge, with the documents' formula, on the kernel's own partials
    M = tr.split_m.astype(np.float64).max(axis=0)
    w = tr.split_l * np.exp(tr.split_m - M)
    L = w.sum(axis=0)
    merged = (w[:, :, None] * tr.split_out).sum(axis=0) / L[:, None]
    np.testing.assert_allclose(M + np.log(L), tr.ref_lse, rtol=0, atol=1e-5 * max(1.0, np.abs(tr.ref_lse).max()))
    np.testing.assert_allclose(tr.out, merged, rtol=0, atol=2 * floor + 1e-6, err_msg="kernel merge != formula")
    big = max(1.0, float(np.abs(M).max()))
    assert tr.max_abs_err < 2 * floor + 1e-6 + 8 * 2**-23 * big, tr.max_abs_err
    unsplit = capture_trace(TraceConfig(**{**dict(c.fields()), "kv_splits": 1}))
    diff = np.abs(tr.out - unsplit.out).max()
    assert diff < 2 * floor + 1e-6 + 8 * 2**-23 * big, f"split and unsplit kernels differ by {diff:.3g}"


@pytest.mark.parametrize("kwargs,match", [
    (dict(loop_order="fa3"), "loop_order must be one of 'fa2', 'fa1', got 'fa3'"),
    (dict(kv_splits=0), "kv_splits must be between 1 and 8, got 0"),
    (dict(kv_splits=9), "kv_splits must be between 1 and 8, got 9"),
    (dict(kv_splits=2.0), r"kv_splits must be an integer, got 2.0 \(float\)"),
    (dict(seq_len=40, block_n=32, kv_splits=3), r"kv_splits must be at most the number of kv-blocks \(2"),
    (dict(loop_order="fa1", kv_splits=2), "with loop_order 'fa1' it must be 1"),
])
def test_config_checks(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TraceConfig(**{"seq_len": 64, "head_dim": 16, "block_m": 16, "block_n": 16, **kwargs})


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n, bm, bn", [(100, 32, 16), (77, 16, 32), (1, 16, 16), (64, 64, 16)])
def test_flash_walk_adds_up_to_the_models(n, bm, bn, causal):
    """What each order moves tile by tile, in the order its kernel walks, sums to its whole model."""
    d = 16
    for order, model in (("fa2", traffic.flash_fa2), ("fa1", traffic.flash_fa1)):
        visits = expected_visits(TraceConfig(seq_len=n, head_dim=d, block_m=bm, block_n=bn, causal=causal,
                                             loop_order=order))
        i, j = np.nonzero(visits >= 0)
        if order == "fa2":  # each program's own steps; shown q-block by q-block
            tiles = sorted(zip(i.tolist(), j.tolist(), strict=True))
        else:
            order_of = np.argsort(visits[i, j])  # the one program's step of each tile
            tiles = [(int(i[k]), int(j[k])) for k in order_of]
        parts = traffic.flash_walk(order, tiles, n, d, bm, bn)
        want = model(n, d, bm, bn, causal)
        assert sum(p["loads"] for p in parts) == want["loads"] and sum(p["stores"] for p in parts) == want["stores"]
    with pytest.raises(ValueError, match="loop_order"):
        traffic.flash_walk("fa3", [], 1, d, 16, 16)
    with pytest.raises(ValueError, match="splits must be 1"):
        traffic.flash_walk("fa1", [], 1, d, 16, 16, splits=2)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n, bm, bn, splits", [(100, 32, 16, 2), (77, 16, 16, 3), (130, 64, 16, 4), (40, 16, 16, 3)])
def test_split_kv_walk_adds_up_to_the_model(n, bm, bn, splits, causal):
    """Every q-block's split-by-split walk (its empty splits and its merge included) sums to
    flash_split_kv, the split-KV kernel's counters; the float32 statistics are the m, l, lse part."""
    d = 16
    cfg = TraceConfig(seq_len=n, head_dim=d, block_m=bm, block_n=bn, causal=causal, kv_splits=splits)
    visits = expected_visits(cfg)
    parts = []
    for i in range(cfg.n_q_blocks):
        tiles = []
        for sp in range(splits):
            lo, hi = cfg.split_range(sp)
            tiles += [(i, j, sp) for j in range(lo, hi) if visits[i, j] >= 0]
        parts += traffic.flash_walk("fa2", tiles, n, d, bm, bn, splits=splits)
    want = traffic.flash_split_kv(n, d, bm, bn, causal, splits)
    assert sum(p["loads"] for p in parts) == want["loads"] and sum(p["stores"] for p in parts) == want["stores"]
    stats = want["partial_ml_stores"] + want["merge_ml_loads"] + want["lse_stores"]
    assert sum(p["stats"] for p in parts) == stats
    assert sum(traffic.walk_bytes(parts, 2)) == (want["loads"] + want["stores"] - stats) * 2 + 4 * stats


def test_standard_rows_add_up_to_standard_attention_but_for_k_and_v():
    """Split into q-blocks, standard attention reads K and V once per block of rows; S and P alike."""
    n, d, bm = 100, 16, 32
    blocks = [min(bm, n - i) for i in range(0, n, bm)]
    parts = [traffic.standard_rows(r, n, d) for r in blocks]
    whole = traffic.standard_attention(n, d)
    assert sum(p["stores"] for p in parts) == whole["stores"]
    assert sum(p["loads"] for p in parts) == whole["loads"] + (len(blocks) - 1) * 2 * n * d
    assert sum(p["s_p_elements"] for p in parts) == whole["s_p_elements"]


def test_merge_states_is_the_whole_rows_max_and_sum():
    """The documents' merge of two (or more) halves gives the whole row's max and sum e^(x - max);
    an empty part (m = -inf, l = 0) weighs nothing; all parts empty is refused."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(1000) * 4
    for cuts in ((500,), (1, 999), (100, 350, 351, 900)):
        parts = np.split(x, cuts)
        m_s = [p.max() for p in parts]
        l_s = [np.exp(p - p.max()).sum() for p in parts]
        got = reference.merge_states(m_s + [-np.inf], l_s + [0.0])
        assert got["M"] == x.max() and got["L"] == pytest.approx(np.exp(x - x.max()).sum(), rel=1e-12)
        assert list(got["live"]) == [True] * len(parts) + [False] and got["terms"][-1] == 0
    with pytest.raises(ValueError, match="at least one part"):
        reference.merge_states([-np.inf], [0.0])
