"""The trace the kernel writes: invariants on every row, per-tile values, counters, .npz files."""
import math

import numpy as np
import pytest

from kernels import backend, reference, traffic
from kernels.trace import TraceConfig, capture_trace, scores_softmax_counts
from tests.helpers import NP_FLOOR, low, n_rows, walk_blocks

CONFIGS = [
    TraceConfig(seq_len=113, head_dim=16, block_m=32, block_n=16, causal=False, scenario="randn"),
    TraceConfig(seq_len=113, head_dim=16, block_m=16, block_n=32, causal=True, scenario="randn"),
    TraceConfig(seq_len=200, head_dim=64, block_m=64, block_n=32, causal=True, dtype="float16", scenario="large"),
    TraceConfig(seq_len=100, head_dim=32, block_m=32, block_n=16, causal=False, scenario="increasing"),
    TraceConfig(seq_len=90, head_dim=16, block_m=16, block_n=16, causal=True, scenario="decreasing"),
    TraceConfig(seq_len=1, head_dim=16, block_m=16, block_n=16, causal=True),
]


@pytest.fixture(scope="module", params=CONFIGS,
                ids=lambda c: f"N{c.seq_len}-{c.block_m}x{c.block_n}-{'causal' if c.causal else 'full'}-{c.dtype}-{c.scenario}")
def trace(request):
    return capture_trace(request.param)


def ref_scores(tr):
    return reference.scores(tr.q, tr.k, tr.sm_scale, tr.config.causal)  # (N, N) float64


def test_visited_tiles(trace):
    c = trace.config
    for i in range(c.n_q_blocks):
        last_row = min((i + 1) * c.block_m, c.seq_len) - 1
        for j in range(c.n_kv_blocks):
            should = not c.causal or j * c.block_n <= last_row
            assert trace.visited[i, j] == should, f"tile ({i}, {j}) visited={trace.visited[i, j]}, expected {should}"
        order = trace.visit_order[i][trace.visited[i]]
        assert list(order) == list(range(len(order))), f"q-block {i} visited in order {order}"
        assert np.isnan(trace.m[i][~trace.visited[i]]).all(), "state written for a skipped tile"


def test_running_state_invariants(trace):
    c = trace.config
    s = ref_scores(trace)
    m_ref, l_ref = reference.running_state(s, c.block_n)  # (N, Tk)
    # state in float32: the kernel's own rounding; scores of fp16 inputs are exact products in fp32
    for i in range(c.n_q_blocks):
        js = walk_blocks(trace, i)
        rows = n_rows(trace, i)
        m = trace.m[i][js][:, :rows].astype(np.float64)  # (steps, rows)
        l = trace.l[i][js][:, :rows].astype(np.float64)
        alpha = trace.alpha[i][js][:, :rows].astype(np.float64)
        assert np.all(np.diff(m, axis=0) >= 0), f"m decreased in q-block {i}"
        m_prev = np.vstack([np.full((1, rows), -np.inf), m[:-1]])
        # m is float32: an ulp of m (2**-23 |m|) moves exp(m_prev - m_new) by that much, relatively
        rtol = max(1e-5, 4 * 2**-23 * float(np.max(np.abs(m))))
        np.testing.assert_allclose(alpha, np.exp(m_prev - m), rtol=rtol, atol=1e-7,
                                   err_msg=f"alpha != exp(m_prev - m_new) in q-block {i}")
        assert np.all(alpha <= 1.0), f"alpha > 1 in q-block {i}"
        r0 = i * c.block_m
        scale = max(1.0, float(np.max(np.abs(m_ref[r0:r0 + rows, js[-1]]))))
        # each term exp(s - m) carries the float32 rounding of s (an ulp of |s|, relatively)
        l_rtol = max(2e-5, 8 * 2**-23 * scale)
        np.testing.assert_allclose(m[-1], m_ref[r0:r0 + rows, js[-1]], rtol=0, atol=2e-6 * scale,
                                   err_msg=f"final m differs from the float64 row max in q-block {i}")
        np.testing.assert_allclose(l[-1], l_ref[r0:r0 + rows, js[-1]], rtol=l_rtol,
                                   err_msg=f"final l differs from float64 sum exp(s - max) in q-block {i}")
        # and at every visited step, the state equals the float64 state over the kv-blocks seen so far
        np.testing.assert_allclose(m, m_ref[r0:r0 + rows][:, js].T, rtol=0, atol=2e-6 * scale)
        np.testing.assert_allclose(l, l_ref[r0:r0 + rows][:, js].T, rtol=l_rtol)
    assert np.isnan(trace.m[:, :, :][-1, :, n_rows(trace, c.n_q_blocks - 1):]).all(), "rows past seq_len written"


def test_tiles_match_float64(trace):
    c = trace.config
    s_ref = ref_scores(trace)
    v = trace.v.astype(np.float64)
    for slot, i in enumerate(trace.tile_q_blocks):
        rows = n_rows(trace, i)
        r0 = i * c.block_m
        for j in walk_blocks(trace, i):
            c0 = j * c.block_n
            cols = min(c.block_n, c.seq_len - c0)
            s = trace.s[slot, j, :rows, :cols].astype(np.float64)
            ref = s_ref[r0:r0 + rows, c0:c0 + cols]
            assert np.array_equal(np.isinf(s), np.isinf(ref)), f"masked scores differ in tile ({i}, {j})"
            fin = np.isfinite(ref)
            np.testing.assert_allclose(s[fin], ref[fin], rtol=1e-5, atol=1e-5 * max(1, np.abs(ref[fin]).max()),
                                       err_msg=f"s tile ({i}, {j})")
            assert np.isnan(trace.s[slot, j, rows:]).all() and np.isnan(trace.s[slot, j, :, cols:]).all()
            m_new = trace.m[i, j, :rows].astype(np.float64)
            # float32 s and m carry an ulp of their magnitude into the exponent
            p_rtol = max(1e-5, 8 * 2**-23 * float(np.abs(ref[fin]).max()))
            np.testing.assert_allclose(trace.p[slot, j, :rows, :cols], np.exp(s - m_new[:, None]), rtol=p_rtol, atol=1e-7,
                                       err_msg=f"p != exp(s - m_new) in tile ({i}, {j})")
            p = low(trace.p[slot, j, :rows, :cols], c.dtype)  # the kernel rounds p to the input dtype before p @ V
            alpha = trace.alpha[i, j, :rows].astype(np.float64)
            expect = trace.acc_before[slot, j, :rows] * alpha[:, None] + p @ v[c0:c0 + cols]
            np.testing.assert_allclose(trace.acc_after[slot, j, :rows], expect, rtol=1e-4, atol=1e-4,
                                       err_msg=f"acc_after != alpha * acc_before + p @ V in tile ({i}, {j})")
        last = walk_blocks(trace, i)[-1]
        out = trace.acc_after[slot, last, :rows] / trace.l[i, last, :rows, None]
        floor = NP_FLOOR[c.dtype]  # output rounding: 2**-11 / 2**-8 relative in fp16 / bf16
        np.testing.assert_allclose(trace.out[r0:r0 + rows], out, rtol=max(2 * floor, 1e-5), atol=max(floor, 1e-6))
    # an exponent argument s - m carries the rounding of |s| (float32: 2**-23 |s|), and out
    # inherits it: large scores on a GPU's exp2 reach 1e-4 in float32
    big = float(np.nanmax(np.abs(np.where(np.isfinite(trace.s), trace.s, np.nan)))) if trace.s.size else 1.0
    tol = (2 * NP_FLOOR[c.dtype] if c.dtype != "float32" else 2e-6) + 8 * 2**-23 * big
    assert trace.max_abs_err < tol, f"kernel out differs from float64 by {trace.max_abs_err:.3g}"


def test_counters_equal_model(trace):
    model = trace.model_counters()
    for key, counted in trace.counters.items():
        assert counted == model[key], f"{key}: kernel counted {counted}, model says {model[key]}"


def test_scenarios_show_their_point():
    inc = capture_trace(TraceConfig(seq_len=100, head_dim=32, block_m=32, block_n=16, scenario="increasing"))
    for i in range(inc.config.n_q_blocks):
        a = inc.alpha[i, 1:, : n_rows(inc, i)]
        assert np.all(a < 1), f"increasing: some row of q-block {i} did not rescale at every step"
    dec = capture_trace(TraceConfig(seq_len=100, head_dim=32, block_m=32, block_n=16, scenario="decreasing"))
    assert np.all(dec.alpha[:, 1:][~np.isnan(dec.alpha[:, 1:])] == 1.0), "decreasing: a rescale after the first block"
    large = capture_trace(TraceConfig(seq_len=64, head_dim=16, block_m=16, block_n=16, scenario="large"))
    assert np.nanmax(np.abs(large.s)) > 88, "large: scores do not reach exp()'s float32 overflow"
    assert np.isfinite(large.out).all()


@pytest.mark.parametrize("n,bm,bn,causal", [(7, 16, 16, False), (1000, 128, 64, True), (300, 32, 128, True),
                                            (129, 64, 16, False)])
def test_counters_on_ragged_shapes(n, bm, bn, causal):
    tr = capture_trace(TraceConfig(seq_len=n, head_dim=16, block_m=bm, block_n=bn, causal=causal), q_blocks=[0])
    model = traffic.flash_fa2(n, 16, bm, bn, causal)
    assert tr.counters == {k: model[k] for k in tr.counters}, f"counted {tr.counters}, model {model}"


def test_traffic_models_brute_force():
    n, d, bm, bn = 200, 64, 64, 32
    fa2 = traffic.flash_fa2(n, d, bm, bn, causal=False)
    assert fa2["k_loads"] == math.ceil(n / bm) * n * d
    assert traffic.flash_fa1(n, d, bm, bn, causal=False)["q_loads"] == math.ceil(n / bn) * n * d
    std = traffic.standard_attention(n, d)
    assert std["loads"] == 2 * n * n + 3 * n * d and std["stores"] == 2 * n * n + n * d
    # causal FA2: K rows loaded by q-block i are the kv-blocks up to its last row
    causal = traffic.flash_fa2(n, d, bm, bn, causal=True)
    rows = sum(min(bn * math.ceil(min((i + 1) * bm, n) / bn), n) for i in range(math.ceil(n / bm)))
    assert causal["k_loads"] == rows * d


def test_scores_softmax_counts_equal_model():
    tr = capture_trace(TraceConfig(seq_len=37, head_dim=16, block_m=16, block_n=16, causal=True))
    counted = scores_softmax_counts(tr)
    for variant, c in counted.items():
        assert c == traffic.softmax(variant, 37, 37), f"{variant}: counted {c}"


@pytest.mark.parametrize("kwargs,match", [
    (dict(block_m=48), r"block_m must be one of 16, 32, 64, 128, 256 \(a power of two between 16 and 256\), got 48"),
    (dict(block_n=512), "block_n must be one of .*, got 512"),
    (dict(block_m="64"), r"block_m must be an integer, got '64' \(str\)"),
    (dict(head_dim=48), "head_dim must be one of 16, 32, 64, 128, got 48"),
    (dict(head_dim=64.0), r"head_dim must be an integer, got 64.0 \(float\)"),
    (dict(seq_len=0), "seq_len must be between 1 and"),
    (dict(seq_len=10**6), "seq_len must be between 1 and"),
    (dict(seq_len=2.5), r"seq_len must be an integer, got 2.5 \(float\)"),
    (dict(seq_len=True), r"seq_len must be an integer, got True \(bool\)"),
    (dict(causal="False"), r"causal must be True or False, got 'False' \(str\)"),
    (dict(causal=0), r"causal must be True or False, got 0 \(int\)"),
    (dict(seed=True), r"seed must be an integer, got True \(bool\)"),
    (dict(seed=-1), "seed must be between 0 and 2147483647, got -1"),
    (dict(dtype="int8"), "dtype must be one of 'float32', 'float16'"),
    (dict(scenario="zeros"), r"scenario must be one of 'randn', 'large', 'increasing', 'decreasing', 'typed', got 'zeros'"),
    (dict(seq_len=2048, block_m=16, block_n=16), "tiles would take the CPU interpreter about"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TraceConfig(**kwargs)


def test_numpy_integers_are_integers():
    cfg = TraceConfig(seq_len=np.int64(40), block_m=np.int32(16), block_n=16, head_dim=16, causal=np.bool_(True))
    assert cfg.n_q_blocks == 3


def test_capture_checks_its_arguments():
    cfg = TraceConfig(seq_len=40, head_dim=16, block_m=16, block_n=16)
    with pytest.raises(ValueError, match=r"q_blocks\[...\] must be an integer, got 1.5 \(float\)"):
        capture_trace(cfg, q_blocks=[1.5])
    with pytest.raises(ValueError, match=r"q_blocks\[...\] must be between 0 and 2, got 3"):
        capture_trace(cfg, q_blocks=[3])
    with pytest.raises(ValueError, match="q_blocks must name at least one block"):
        capture_trace(cfg, q_blocks=[])
    with pytest.raises(ValueError, match="cfg must be a TraceConfig, got dict"):
        capture_trace({"seq_len": 40})


def test_bfloat16_refused_in_interpreter():
    if not backend.INTERPRET:
        pytest.skip("bfloat16 runs on the GPU")
    with pytest.raises(ValueError, match=r"dtype must be one of 'float32', 'float16' on this backend"):
        TraceConfig(dtype="bfloat16")
