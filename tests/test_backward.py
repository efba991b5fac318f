"""FlashAttention-2 backward: gradients against float64 autograd, the dK/dV kernel's trace against a
float64 recomputation, the kernels' own load/store counts against kernels/traffic.py, clear errors.
CPU (interpreter); tests/test_gpu.py runs the compiled kernels."""
import math

import numpy as np
import pytest
import torch

from kernels import attention, flash_bwd, reference, traffic
from kernels.inputs import make_do
from kernels.launch import Config
from kernels.trace import TraceConfig, spaced_blocks
from kernels.trace_backward import BackwardTrace, capture_backward_trace, tile_bytes
from tests.helpers import NP_FLOOR, check_grads, grads_float64, low, n_cols, n_rows, rand, walk_blocks


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("head_dim", [16, 64])
@pytest.mark.parametrize("seq_len", [1, 2, 3, 5, 17, 113, 200])
def test_autograd_matches_float64(seq_len, head_dim, causal, dtype):
    # default blocks (64 x 64 in the interpreter) divide none of these lengths; at 1 to 5 rows
    # dS = P (dP - D) is ~0 while its rounding is of the size of dP: the bound follows that
    q, k, v, do = rand(1, 2, seq_len, head_dim, dtype, seed=seq_len * 3 + head_dim, count=4)
    qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
    out = attention.flash_attention(qg, kg, vg, causal=causal)
    out.backward(do)
    check_grads((qg.grad, kg.grad, vg.grad), q, k, v, do, causal, 1 / math.sqrt(head_dim),
                f"autograd N={seq_len} d={head_dim} causal={causal} {dtype}")


@pytest.mark.parametrize("block_m,block_n", [(32, 16), (16, 64), (128, 32)])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_block_sizes(block_m, block_n, causal):
    q, k, v, do = rand(2, 1, 113, 32, torch.float16, seed=block_m + block_n, count=4)
    out, lse = attention.flash_attention_fwd(q, k, v, causal=causal, block_m=block_m, block_n=block_n)
    got = attention.flash_attention_bwd(q, k, v, out, lse, do, causal=causal, block_m=block_m, block_n=block_n)
    check_grads(got, q, k, v, do, causal, 1 / math.sqrt(32), f"blocks {block_m}x{block_n} causal={causal}")


def test_strided_inputs_custom_scale_and_expanded_grad():
    # (batch, seq, heads, dim) memory viewed as (batch, heads, seq, dim); out.sum() hands the
    # backward a dO with zero strides
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(2, 50, 3, 32, generator=g).transpose(1, 2).requires_grad_() for _ in range(3))
    assert not q.is_contiguous()
    attention.flash_attention(q, k, v, causal=True, sm_scale=0.3).sum().backward()
    do = torch.ones(2, 3, 50, 32)
    check_grads((q.grad, k.grad, v.grad), q.detach(), k.detach(), v.detach(), do, True, 0.3, "strided")


def test_large_scores_stay_finite():
    q, k, v, do = rand(1, 1, 100, 16, torch.float16, seed=5, count=4)
    q, k = q * 10, k * 10  # scores ~ 100x: exp(s - lse) must use the stored lse, never overflow
    got = attention.flash_attention_bwd(q, k, v, *attention.flash_attention_fwd(q, k, v, True), do, causal=True)
    check_grads(got, q, k, v, do, True, 1 / 4, "large scores")


def test_no_grad_and_partial_requires_grad():
    q, k, v, do = rand(1, 1, 40, 16, torch.float32, seed=6, count=4)
    with torch.no_grad():
        out = attention.flash_attention(q, k, v)
    assert not out.requires_grad
    vg = v.clone().requires_grad_()
    attention.flash_attention(q, k, vg).backward(do)
    _, _, dv = grads_float64(q, k, v, do, False, 0.25)
    assert float((vg.grad.double() - dv).abs().max()) < 1e-5


# ---------------------------------------------------------------- float64 references
def test_reference_jacobian_equals_d_form():
    q, k, v, do = (t[0, 0] for t in rand(1, 1, 37, 16, torch.float32, seed=7, count=4))
    ref = reference.attention_backward(q, k, v, do, True, 0.25)
    out = reference.attention(q, k, v, True, 0.25)["out"]
    np.testing.assert_allclose(ref["d"], (do.double().numpy() * out).sum(-1), rtol=1e-12, atol=1e-12,
                               err_msg="rowsum(P o dP) != rowsum(dO o O)")
    for row in (0, 5, 36):
        r = reference.softmax_backward_row(ref["p"][row], ref["dp"][row], chunk=8)
        jac = reference.jacobian(ref["p"][row])
        assert jac.shape == (37, 37)
        np.testing.assert_allclose(jac @ ref["dp"][row], r["ds_jacobian"], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(r["ds_jacobian"], r["ds"], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(r["ds"], ref["ds"][row], rtol=1e-12, atol=1e-14)
    rows = reference.attention_backward_rows(q, k, v, do, True, 0.25, chunk=8)
    for name in ("dq", "dk", "dv", "d"):
        np.testing.assert_allclose(rows[name], ref[name], rtol=1e-10, atol=1e-12, err_msg=name)
    autograd = grads_float64(q, k, v, do, True, 0.25)
    for name, g in zip(("dq", "dk", "dv"), autograd, strict=True):
        np.testing.assert_allclose(ref[name], g.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_traffic_models_brute_force():
    n, d = 200, 64
    std = traffic.standard_backward(n, d)
    assert std["loads"] == 5 * n * n + 5 * n * d and std["stores"] == 2 * n * n + 3 * n * d
    fa = traffic.flash_backward(n, d, 64, 32, causal=False)
    tq, tk = math.ceil(n / 64), math.ceil(n / 32)
    assert fa["dkdv_q_loads"] == tk * n * d and fa["dq_k_loads"] == tq * n * d
    assert fa["loads"] == 2 * n * d + (2 * n * d + tk * n * (2 * d + 2)) + (2 * n * d + 2 * n + tq * 2 * n * d)
    assert fa["stores"] == n + 2 * n * d + n * d
    # causal: kv-block j is met by the q-blocks whose last row reaches it
    causal = traffic.flash_backward(n, d, 64, 32, causal=True)
    rows = sum(min(n, (i + 1) * 64) - i * 64 for j in range(tk) for i in range(tq) if j * 32 <= min(n, (i + 1) * 64) - 1)
    assert causal["dkdv_q_loads"] == rows * d


# ---------------------------------------------------------------- counters == model
@pytest.mark.parametrize("n,bm,bn,causal", [(1, 16, 16, True), (7, 64, 64, False), (113, 32, 16, False),
                                            (200, 16, 64, True), (129, 64, 16, True), (300, 32, 128, True)])
def test_counters_equal_model(n, bm, bn, causal):
    q, k, v, do = rand(2, 3, n, 16, torch.float32, seed=n, count=4)
    out, lse = attention.flash_attention_fwd(q, k, v, causal, block_m=bm, block_n=bn)
    blocks = Config(bm, bn)
    *_, counters = flash_bwd.launch(q, k, v, out, lse, do, causal, 0.25, blocks, blocks, count=True)
    model = traffic.flash_backward(n, 16, bm, bn, causal)
    got = dict(zip(traffic.BACKWARD_COUNTERS, counters.tolist(), strict=True))
    want = {key: 6 * model[key] for key in traffic.BACKWARD_COUNTERS}  # batch 2 x heads 3
    assert got == want, {key: (got[key], want[key]) for key in got if got[key] != want[key]}


# ---------------------------------------------------------------- the dK/dV kernel's trace
TRACES = [
    TraceConfig(seq_len=113, head_dim=16, block_m=32, block_n=16, causal=False),
    TraceConfig(seq_len=100, head_dim=32, block_m=16, block_n=32, causal=True, dtype="float16", scenario="large"),
    TraceConfig(seq_len=90, head_dim=16, block_m=64, block_n=16, causal=True, scenario="increasing"),
    TraceConfig(seq_len=1, head_dim=16, block_m=16, block_n=16, causal=True),
]


@pytest.fixture(scope="module", params=TRACES,
                ids=lambda c: f"N{c.seq_len}-{c.block_m}x{c.block_n}-{'causal' if c.causal else 'full'}-{c.dtype}")
def btrace(request):
    return capture_backward_trace(request.param)


def check_trace(tr: BackwardTrace):
    c = tr.config
    q, k, v, do, out = (getattr(tr, name).astype(np.float64) for name in ("q", "k", "v", "do", "out"))
    ref = reference.attention_backward(q, k, v, do, c.causal, tr.sm_scale)  # (N, N) each
    # D from the preprocess kernel: rowsum(dO o O) of the kernel's own output
    np.testing.assert_allclose(tr.delta, (do * out).sum(-1), rtol=1e-5, atol=1e-5 * max(1, np.abs(do).max()),
                               err_msg="D != rowsum(dO o O)")
    floor = NP_FLOOR[c.dtype]
    # tiles visited: tile (i, j) exactly when some query of q-block i may see some key of kv-block j
    for j in range(c.n_kv_blocks):
        order = tr.visit_order[j]
        for i in range(c.n_q_blocks):
            last_row = min((i + 1) * c.block_m, c.seq_len) - 1
            assert (order[i] >= 0) == (not c.causal or j * c.block_n <= last_row), f"tile (q {i}, kv {j})"
        assert list(order[order >= 0]) == list(range(int((order >= 0).sum()))), f"kv-block {j} order {order}"
    # P, dP, dS tiles against float64 recomputed from the kernels' own q, k, v, dO, out and lse
    lse = tr.lse.astype(np.float64)
    s = reference.scores(q, k, tr.sm_scale, c.causal)
    p64 = np.exp(s - lse[:, None])  # what the kernel recomputes: the stored lse, no running max
    dp64 = do @ v.T
    ds64 = p64 * (dp64 - tr.delta.astype(np.float64)[:, None])
    big = max(1.0, float(np.abs(s[np.isfinite(s)]).max()))
    for slot, j in enumerate(tr.tile_kv_blocks):
        c0, cols = j * c.block_n, n_cols(tr, j)
        dk = np.zeros((cols, c.head_dim))
        dv = np.zeros((cols, c.head_dim))
        for _step, i in enumerate(walk_blocks(tr, j)):
            r0, rows = i * c.block_m, n_rows(tr, i)
            where = f"tile (q-block {i}, kv-block {j})"
            p = tr.p[slot, i, :rows, :cols].astype(np.float64)
            # float32 scores carry an ulp of |s| into the exponent
            np.testing.assert_allclose(p, p64[r0:r0 + rows, c0:c0 + cols], rtol=8 * 2**-23 * big + 1e-6, atol=1e-7,
                                       err_msg=f"P {where}")
            np.testing.assert_allclose(tr.dp[slot, i, :rows, :cols], dp64[r0:r0 + rows, c0:c0 + cols],
                                       rtol=1e-5, atol=1e-5, err_msg=f"dP {where}")
            np.testing.assert_allclose(tr.ds[slot, i, :rows, :cols], ds64[r0:r0 + rows, c0:c0 + cols],
                                       rtol=1e-4, atol=1e-5 * big, err_msg=f"dS {where}")
            assert np.isnan(tr.p[slot, i, rows:]).all() and np.isnan(tr.p[slot, i, :, cols:]).all(), "past seq_len"
            # the accumulators: dV_j += P^T dO_i, dK_j += scale * dS^T Q_i (P, dS rounded to the dtype)
            dv = dv + low(p, c.dtype).T @ do[r0:r0 + rows]
            dk = dk + tr.sm_scale * low(tr.ds[slot, i, :rows, :cols], c.dtype).T @ q[r0:r0 + rows]
            np.testing.assert_allclose(tr.dv_acc[slot, i, :cols], dv, rtol=1e-4, atol=1e-4, err_msg=f"dV acc {where}")
            np.testing.assert_allclose(tr.dk_acc[slot, i, :cols], dk, rtol=1e-4, atol=1e-4 * big,
                                       err_msg=f"dK acc {where}")
        last = walk_blocks(tr, j)[-1]
        np.testing.assert_allclose(tr.dv[c0:c0 + cols], tr.dv_acc[slot, last, :cols], rtol=2 * floor, atol=floor)
        np.testing.assert_allclose(tr.dk[c0:c0 + cols], tr.dk_acc[slot, last, :cols], rtol=2 * floor,
                                   atol=floor * big)
    # gradients against float64 (the inputs as the kernels saw them)
    for name in ("dq", "dk", "dv"):
        err = float(np.max(np.abs(getattr(tr, name) - ref[name])))
        scale = max(1.0, float(np.abs(ref[name]).max()))
        bound = (4e-3 if c.dtype == "float16" else 3e-2 if c.dtype == "bfloat16" else 1e-5) * big * scale
        assert err < bound, f"{name} differs from float64 by {err:.3g} (bound {bound:.3g})"
        np.testing.assert_allclose(getattr(tr, "ref_" + name), ref[name], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tr.ref_delta, ref["d"], rtol=1e-9, atol=1e-12)


def test_trace_tiles_match_float64(btrace):
    check_trace(btrace)


def test_trace_counters_equal_model(btrace):
    model = btrace.model_counters()
    for key, counted in btrace.counters.items():
        assert counted == model[key], f"{key}: kernel counted {counted}, model says {model[key]}"


def test_trace_rows_and_jacobian(btrace):
    c = btrace.config
    s = btrace.lse  # P = exp(s - lse): a float32 lse of magnitude |s| carries its ulp into P
    rtol = 8 * 2**-23 * max(1.0, float(np.abs(s).max())) + 1e-6
    for row in sorted({0, c.seq_len // 2, c.seq_len - 1}):
        p, dp, ds = (btrace.row_values(row, name) for name in ("p", "dp", "ds"))
        assert p.shape == (c.seq_len,)
        assert abs(p.sum() - 1) < rtol * c.seq_len, f"row {row}: P sums to {p.sum()}"
        dp = np.where(p == 0, 0.0, dp)  # masked keys (P = 0): J's row and column are 0 there
        both = reference.softmax_backward_row(p, dp)
        tol = 1e-4 * max(1.0, np.abs(dp).max())
        assert np.max(np.abs(both["ds_jacobian"] - ds)) < tol, f"row {row}: Jacobian form != kernel dS"
        assert abs(both["d"] - btrace.delta[row]) < tol, f"row {row}: P . dP != the kernel's D"


def test_trace_keeps_chosen_kv_blocks():
    cfg = TraceConfig(seq_len=100, head_dim=16, block_m=32, block_n=16, causal=True)
    tr = capture_backward_trace(cfg, kv_blocks=[4], do_seed=9)
    assert list(tr.tile_kv_blocks) == [4] and tr.do_seed == 9
    assert np.array_equal(tr.do, make_do(cfg, 9))
    assert tr.row_values(0, "p") is None and not tr.has_all_tiles()
    check_trace(tr)
    assert spaced_blocks(cfg.n_kv_blocks, tile_bytes(cfg)) == tuple(range(cfg.n_kv_blocks))


# ---------------------------------------------------------------- clear errors
def test_bad_inputs_raise():
    q, k, v, do = rand(1, 1, 32, 16, torch.float32, seed=0, count=4)
    out, lse = attention.flash_attention_fwd(q, k, v)
    with pytest.raises(ValueError, match=r"lse must be contiguous float32 of shape \(1, 1, 32\)"):
        attention.flash_attention_bwd(q, k, v, out, lse[..., :16], do)
    with pytest.raises(ValueError, match="do must match q"):
        attention.flash_attention_bwd(q, k, v, out, lse, do.half())
    with pytest.raises(ValueError, match="out must match q"):
        attention.flash_attention_bwd(q, k, v, out[:, :, :16], lse, do)
    with pytest.raises(ValueError, match="give both block_m and block_n"):
        attention.flash_attention_bwd(q, k, v, out, lse, do, block_m=32)
    with pytest.raises(ValueError, match=r"block_n must be one of .*, got 24"):
        attention.flash_attention_bwd(q, k, v, out, lse, do, block_m=32, block_n=24)
    with pytest.raises(ValueError, match="sm_scale must be a finite number > 0"):
        attention.flash_attention_bwd(q, k, v, out, lse, do, sm_scale=-1.0)
    with pytest.raises(ValueError, match="one dtype"):
        attention.flash_attention(q.requires_grad_(), k.half(), v)
    cfg = TraceConfig(seq_len=40, head_dim=16, block_m=16, block_n=16)
    with pytest.raises(ValueError, match=r"kv_blocks\[...\] must be between 0 and 2, got 3"):
        capture_backward_trace(cfg, kv_blocks=[3])
    with pytest.raises(ValueError, match=r"kv_blocks\[...\] must be an integer, got 1.5 \(float\)"):
        capture_backward_trace(cfg, kv_blocks=[1.5])
    with pytest.raises(ValueError, match="do_seed must be between 0 and"):
        capture_backward_trace(cfg, do_seed=-1)


@pytest.mark.parametrize("through_operators", [False, True], ids=["eager-function", "operators"])
def test_both_autograd_routes_give_flash_attention_bwd_s_gradients(through_operators, monkeypatch):
    """An eager call runs attention.py's forward and backward through a torch.autograd.Function;
    with EAGER_THROUGH_OPERATORS (and under torch.compile) through the torch.ops.fa_viz operators.
    Both give exactly flash_attention_fwd's output and flash_attention_bwd's gradients, on a
    ragged causal GQA case with a window and a non-contiguous output gradient (flash_attention_bwd
    itself is held to float64 with every mask in tests/test_masks.py)."""
    monkeypatch.setattr(attention, "EAGER_THROUGH_OPERATORS", through_operators)
    q, do = rand(1, 4, 50, 16, torch.float32, seed=1, count=2)
    k, v = rand(1, 2, 50, 16, torch.float32, seed=2, count=2)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = attention.flash_attention(*leaves, causal=True, window_size=(20, -1))
    route = type(out.grad_fn).__name__ + str(out.grad_fn.name())
    assert ("fa_viz" in route) == through_operators and ("_Eager" in route) != through_operators, route
    ref_out, lse = attention.flash_attention_fwd(q, k, v, causal=True, window_size=(20, -1))
    assert torch.equal(out.detach(), ref_out)
    do_t = do.transpose(2, 3).contiguous().transpose(2, 3)  # the same values, other strides
    out.backward(do_t)
    want = attention.flash_attention_bwd(q, k, v, ref_out, lse, do, causal=True, window_size=(20, -1))
    for name, leaf, g in zip("qkv", leaves, want, strict=True):
        assert leaf.grad.shape == g.shape and torch.equal(leaf.grad, g), \
            f"d{name} through autograd differs from flash_attention_bwd"
    with pytest.raises(ValueError, match="causal must be True or False"):
        attention.flash_attention(q, k, v, causal="yes")


@pytest.mark.parametrize("n,bm,bn,causal", [(113, 32, 16, True), (200, 16, 64, False)])
def test_fused_dq_schedule_matches_float64(n, bm, bn, causal):
    """FlashAttention-2's schedule: the dK/dV kernel adds dQ atomically (a GPU tuner candidate)."""
    q, k, v, do = rand(1, 2, n, 32, torch.float32, seed=n, count=4)
    out, lse = attention.flash_attention_fwd(q, k, v, causal=causal)
    delta = flash_bwd.preprocess(out, do)
    dq = torch.zeros(q.shape, dtype=torch.float32)
    dk, dv = flash_bwd.launch_dkdv(q, k, v, do, lse, delta, causal, 32 ** -0.5, Config(bm, bn), dq_acc=dq)
    check_grads((dq, dk, dv), q, k, v, do, causal, 32 ** -0.5, f"fused dQ N={n} {bm}x{bn}")


def test_backward_refuses_a_forward_of_other_inputs():
    """out and lse that belong to other q, k, v would give wrong gradients: a ValueError, not numbers."""
    q, k, v, do = rand(1, 2, 40, 16, torch.float32, seed=5, count=4)
    out, lse = attention.flash_attention_fwd(q, k, v, causal=True)
    attention.flash_attention_bwd(q, k, v, out, lse, do, causal=True)  # its own: fine
    other_out, other_lse = attention.flash_attention_fwd(q + 1, k, v, causal=True)
    with pytest.raises(ValueError, match="out and lse must be the forward's of these q, k, v"):
        attention.flash_attention_bwd(q, k, v, other_out, lse, do, causal=True)
    with pytest.raises(ValueError, match="out and lse must be the forward's"):
        attention.flash_attention_bwd(q, k, v, out, other_lse, do, causal=True)
    with pytest.raises(ValueError, match="out and lse must be the forward's"):
        attention.flash_attention_bwd(q, k, v, out, lse, do, causal=False)  # a causal forward's, used as full


def test_capture_backward_refuses_what_its_loader_would():
    for kw in (dict(loop_order="fa1"), dict(kv_splits=2)):
        with pytest.raises(ValueError, match="the backward is FlashAttention-2's"):
            capture_backward_trace(TraceConfig(seq_len=64, head_dim=16, block_m=16, block_n=16, **kw))


def test_meta_tensors_and_numpy_integers():
    q = torch.empty(1, 1, 8, 16, device="meta")
    with pytest.raises(ValueError, match="meta tensors have none"):
        attention.flash_attention(q, q, q)
    cfg = TraceConfig(seq_len=np.int64(40), head_dim=np.int32(16), block_m=np.int64(16), block_n=np.int64(16))
    assert type(cfg.seq_len) is int and type(cfg.head_dim) is int
    assert capture_backward_trace(cfg).dq.shape == (40, 16)


@pytest.mark.parametrize("n", [3, 5, 37])
def test_a_softmax_row_through_the_attention_backward(n):
    """softmax_bwd.through_flash_backward: a row P, dP through flash_bwd's kernels (keys ln P_j, values
    dP_j) gives the dS of the Jacobian form, read off the dK/dV kernel's dK; float32 with scores up
    to |ln P| ~ 5: within 1e-5 of float64."""
    from kernels import reference, softmax_bwd

    rng = np.random.default_rng(n)
    p = rng.random(n) + 0.01
    p /= p.sum()
    dp = rng.standard_normal(n) * 3
    got = softmax_bwd.through_flash_backward(p, dp)
    want = reference.softmax_backward_row(p, dp)
    assert np.max(np.abs(got["ds"] - want["ds_jacobian"])) < 1e-5
    assert got["d"] == pytest.approx(want["d"], abs=1e-5)
    with pytest.raises(ValueError, match="p all above 0"):
        softmax_bwd.through_flash_backward([0.5, 0.5, 0.0], [1, 2, 3])
