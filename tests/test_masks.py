"""Attention as models run it, against float64 in the interpreter: sliding windows, packed documents,
GQA/MQA and decode, alone and together, on ragged sizes (no multiple of either block), forward and
gradients; the kernels' interval arithmetic against the masks' definitions; every bad mask argument
a ValueError naming it; and the plain kernel's compile-time options untouched by all of it."""
import numpy as np
import pytest
import torch

from kernels import attention, backend, flash_bwd, flash_fwd, masks
from kernels.launch import Config
from tests.helpers import FLOOR

W = (-1, -1)


def _docs(cu, n):
    if not cu:
        return None
    t = torch.tensor(cu, dtype=torch.int32, device=backend.DEVICE)
    pos = torch.arange(n, dtype=torch.int32, device=backend.DEVICE)
    return flash_fwd.Docs(t, torch.searchsorted(t[1:], pos, right=True).to(torch.int32))


def sees(n_q, n_k, causal, window, cu) -> torch.Tensor:
    """(n_q, n_k) bool: which keys each query sees, by the definitions (kernels/masks.py)."""
    return torch.from_numpy(masks.Masks(n_q, n_k, causal, window, tuple(cu)).allowed(0, n_q))


def _dense(q, k, v, allowed, scale, dtype):
    g, allowed = q.shape[1] // k.shape[1], allowed.to(q.device)
    k, v = k.repeat_interleave(g, 1).to(dtype), v.repeat_interleave(g, 1).to(dtype)
    s = (q.to(dtype) @ k.transpose(-1, -2) * scale).masked_fill(~allowed, float("-inf"))
    return torch.softmax(s.double() if dtype == torch.float64 else s.float(), -1).to(dtype) @ v


def check_out(out, lse, q, k, v, allowed, scale, what):
    """out against float64, bound by PyTorch's own error in q's dtype (softmax in float32); lse too."""
    assert not torch.isnan(out).any(), f"{what}: {int(torch.isnan(out).sum())} output elements NaN (never written?)"
    ref = _dense(q, k, v, allowed, scale, torch.float64)
    err = float((out.double() - ref).abs().max())
    torch_err = float((_dense(q, k, v, allowed, scale, q.dtype).double() - ref).abs().max())
    bound = 2 * torch_err + FLOOR[q.dtype] * max(1.0, float(ref.abs().max()))
    assert err <= bound, f"{what}: out differs from float64 by {err:.3g} (bound {bound:.3g}, PyTorch's {torch_err:.3g})"
    g = q.shape[1] // k.shape[1]
    s = (q.double() @ k.double().repeat_interleave(g, 1).transpose(-1, -2) * scale).masked_fill(~allowed.to(q.device),
                                                                                             float("-inf"))
    lse_err = float((lse.double() - torch.logsumexp(s, -1)).abs().max())
    assert lse_err <= 1e-4 * max(1.0, float(s[s.isfinite()].abs().max())), f"{what}: lse off by {lse_err:.3g}"


def _inputs(b, h, hkv, n_q, n_k, d, dtype, seed):
    """Fresh N(0, 1) q, k, v on this backend's device (the interpreter's CPU, or the GPU)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n_q, d, generator=g).to(dtype)
    k, v = (torch.randn(b, hkv, n_k, d, generator=g).to(dtype) for _ in range(2))
    return q.to(backend.DEVICE), k.to(backend.DEVICE), v.to(backend.DEVICE)


# (name, heads, kv_heads, n_q, n_k, causal, window, cu_seqlens, block_m, block_n, kv_splits)
CASES = [
    ("window", 2, 2, 113, 113, False, (20, 7), (), 32, 16, 1),
    ("window+causal", 2, 2, 113, 113, True, (20, -1), (), 16, 32, 1),
    ("window left 0", 1, 1, 77, 77, True, (0, -1), (), 32, 16, 1),
    ("window right only", 1, 1, 90, 90, False, (-1, 9), (), 32, 32, 1),
    ("documents", 1, 1, 113, 113, False, W, (0, 30, 31, 90, 113), 32, 16, 1),
    ("documents+causal", 2, 2, 150, 150, True, W, (0, 17, 70, 150), 32, 32, 1),
    ("documents+window", 1, 1, 113, 113, True, (12, -1), (0, 50, 113), 16, 32, 1),
    ("GQA", 4, 2, 70, 70, False, W, (), 32, 16, 1),
    ("GQA+causal", 4, 2, 70, 70, True, W, (), 32, 16, 1),
    ("GQA+window", 6, 2, 61, 61, True, (9, -1), (), 16, 32, 1),
    ("MQA+documents", 4, 1, 100, 100, True, W, (0, 33, 100), 32, 16, 1),
    ("decode 1 query", 2, 2, 1, 200, True, W, (), 16, 32, 1),
    ("decode", 2, 2, 37, 200, True, W, (), 32, 16, 1),
    ("decode, no mask", 1, 1, 5, 130, False, W, (), 16, 32, 1),
    ("decode+GQA", 8, 2, 3, 150, True, W, (), 16, 32, 1),
    ("decode+window", 2, 1, 9, 200, True, (40, -1), (), 16, 32, 1),
    ("split-KV decode+GQA", 8, 2, 1, 300, True, W, (), 16, 32, 4),
    ("split-KV window+causal", 1, 1, 130, 130, True, (30, -1), (), 32, 16, 3),
    ("split-KV documents", 1, 1, 100, 100, False, W, (0, 40, 100), 32, 16, 3),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_forward_matches_float64(case, dtype):
    name, h, hkv, n_q, n_k, causal, window, cu, bm, bn, splits = case
    q, k, v = _inputs(2, h, hkv, n_q, n_k, 16, dtype, seed=n_q * 31 + n_k)
    out = torch.full_like(q, float("nan"))  # poison: every element must be written
    out, lse = flash_fwd.launch(q, k, v, causal, 0.25, Config(bm, bn), out=out, kv_splits=splits, window=window,
                                docs=_docs(cu, n_k))
    check_out(out, lse, q, k, v, sees(n_q, n_k, causal, window, cu), 0.25, f"{name} {dtype}")


def grads64(q, k, v, do, allowed, scale):
    q, k, v = (t.detach().double().requires_grad_() for t in (q, k, v))
    _dense(q, k, v, allowed, scale, torch.float64).backward(do.double())
    return q.grad, k.grad, v.grad


GRAD_CASES = [c for c in CASES if c[0] in ("window+causal", "documents+causal", "GQA+window", "decode+GQA",
                                            "MQA+documents", "window right only", "decode+window")]


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: c[0])
def test_gradients_match_float64(case):
    """The backward kernels at ragged blocks (float32: the interpreter's dots are exact), and once
    with FlashAttention-2's fused schedule (dQ added atomically)."""
    name, h, hkv, n_q, n_k, causal, window, cu, bm, bn, _ = case
    q, k, v = _inputs(1, h, hkv, n_q, n_k, 16, torch.float32, seed=n_k)
    do = torch.randn(q.shape, generator=torch.Generator().manual_seed(1)).to(q.device)
    docs = _docs(cu, n_k)
    out, lse = flash_fwd.launch(q, k, v, causal, 0.25, Config(64, 64), window=window, docs=docs)
    dq, dk, dv, _, _ = flash_bwd.launch(q, k, v, out, lse, do, causal, 0.25, Config(bm, bn), Config(bn, bm),
                                        window=window, docs=docs)
    delta = flash_bwd.preprocess(out, do)
    dq_acc = torch.zeros(q.shape, device=q.device)
    flash_bwd.launch_dkdv(q, k, v, do, lse, delta, causal, 0.25, Config(bm, bn), dq_acc=dq_acc, window=window, docs=docs)
    ref = grads64(q, k, v, do, sees(n_q, n_k, causal, window, cu), 0.25)
    for what, got, want in (("dq", dq, ref[0]), ("dk", dk, ref[1]), ("dv", dv, ref[2]), ("fused dq", dq_acc, ref[0])):
        assert got.shape == want.shape, f"{name}: {what} is {tuple(got.shape)}"
        err = float((got.double() - want).abs().max())
        assert err <= 2e-5 * max(1.0, float(want.abs().max())), f"{name}: {what} differs from float64 by {err:.3g}"


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: c[0])
def test_the_backward_walks_only_the_tiles_its_masks_reach(case):
    """What the three backward kernels counted (elements loaded and stored, masked lanes excluded)
    equals the traffic model of the masks: a dK/dV program meets only q-blocks holding a row that
    sees one of its keys, a dQ program only the forward's kv-blocks; K_j, V_j once per group."""
    from kernels import traffic

    name, h, hkv, n_q, n_k, causal, window, cu, bm, bn, _ = case
    q, k, v = _inputs(1, h, hkv, n_q, n_k, 16, torch.float32, seed=4)
    k, v = k[:, :1].contiguous(), v[:, :1].contiguous()  # one K/V head and its group
    docs = _docs(cu, n_k)
    out, lse = flash_fwd.launch(q, k, v, causal, 0.25, Config(64, 64), window=window, docs=docs)
    *_, counters = flash_bwd.launch(q, k, v, out, lse, torch.randn_like(q), causal, 0.25, Config(bm, bn),
                                    Config(bm, bn), count=True, window=window, docs=docs)
    model = traffic.flash_backward(n_k, 16, bm, bn, causal, masks.Masks(n_q, n_k, causal, window, cu, h))
    got = dict(zip(flash_bwd.COUNTER_KEYS, counters.tolist(), strict=True))
    assert got == {key: model[key] for key in flash_bwd.COUNTER_KEYS}, (name, got, model)
    dense = traffic.flash_backward(n_k, 16, bm, bn, False, masks.Masks(n_q, n_k, group=h))
    if window != W or cu:  # a window or documents leave whole tiles out
        assert got["dkdv_q_loads"] < dense["dkdv_q_loads"] and got["dq_k_loads"] < dense["dq_k_loads"], name


def test_autograd_and_the_operator_take_every_option():
    """flash_attention through torch.autograd (the torch.ops.fa_viz operators), every option at once,
    float16 at the interpreter's 64 x 64 blocks: gradients against float64, bound by PyTorch's own."""
    q, k, v = (t.requires_grad_() for t in _inputs(1, 4, 2, 150, 150, 32, torch.float16, seed=9))
    cu = torch.tensor([0, 60, 61, 150], dtype=torch.int32, device=q.device)
    out = attention.flash_attention(q, k, v, causal=True, window_size=(40, -1), cu_seqlens=cu)
    do = torch.randn(out.shape, generator=torch.Generator().manual_seed(2)).half().to(q.device)
    out.backward(do)
    allowed = sees(150, 150, True, (40, -1), tuple(cu.tolist()))
    ref = grads64(q, k, v, do, allowed, 32 ** -0.5)
    theirs = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    _dense(*theirs, allowed, 32 ** -0.5, torch.float16).backward(do)
    for what, got, want, t in zip(("dq", "dk", "dv"), (q.grad, k.grad, v.grad), ref, theirs, strict=True):
        err, torch_err = float((got.double() - want).abs().max()), float((t.grad.double() - want).abs().max())
        assert err <= 2 * torch_err + FLOOR[torch.float16] * max(1.0, float(want.abs().max())), (what, err, torch_err)
    assert torch.ops.fa_viz.flash_attention_fwd(q.detach(), k.detach(), v.detach(), True, 0.25, 40, -1, cu)[0].shape == q.shape


def test_the_interval_arithmetic_is_the_definition():
    """Masks.key_bounds (the kernels' min/max arithmetic) against Masks.allowed (documents by id,
    windows by distance), and the loop bounds: a skipped tile holds no key any row sees, a whole
    tile only keys every row sees."""
    rng = np.random.default_rng(3)
    for _ in range(60):
        n_k = int(rng.integers(1, 120))
        n_q = n_k if rng.random() < 0.5 else int(rng.integers(1, n_k + 1))
        cu = masks.document_bounds(n_k, int(rng.integers(1, 5)), int(rng.integers(100))) if n_q == n_k else ()
        cu = cu if len(set(cu)) == len(cu) else ()
        m = masks.Masks(n_q, n_k, bool(rng.random() < 0.5), tuple(int(x) for x in rng.choice([-1, 0, 3, 17], 2)), cu,
                        int(rng.choice([1, 2, 3])))
        allowed = m.allowed(0, m.n_rows)
        lo, hi = m.key_bounds(np.arange(m.n_rows))
        keys = np.arange(n_k)[None, :]
        assert np.array_equal(allowed, (keys >= lo[:, None]) & (keys < hi[:, None])), m
        bm, bn = (int(x) for x in rng.choice([16, 32], 2))
        kinds = m.tile_kinds(bm, bn, kv_splits=int(rng.integers(1, 4)) if n_k > 3 * bn else 1)
        for i in range(kinds.shape[0]):
            for j in range(kinds.shape[1]):
                tile = allowed[i * bm:(i + 1) * bm, j * bn:(j + 1) * bn]
                if kinds[i, j] == masks.SKIPPED:
                    assert not tile.any(), (m, i, j)
                if kinds[i, j] == masks.WHOLE:
                    assert tile.all() and tile.shape[1] == bn, (m, i, j)


def test_the_plain_kernel_compiles_as_before(monkeypatch):
    """No option given: every mask flag of the forward's meta is off and no mask argument is a kernel
    parameter (None), so the plain specialization is the code it was (experiments/results/sm90/)."""
    seen = {}

    class Spy:
        def __getitem__(self, grid):
            return lambda *args, **kw: seen.update(meta=args[11], mk=args[12])

    monkeypatch.setattr(flash_fwd, "_attn_fwd", Spy())
    q, k, v = _inputs(1, 2, 2, 64, 64, 16, torch.float32, seed=0)
    flash_fwd.launch(q, k, v, True, 0.25, Config(32, 32))
    assert not any(bool(getattr(seen["meta"], f)) for f in ("OWN_KV", "INTERVALS", "WINDOW_LEFT", "WINDOW_RIGHT",
                                                             "DOCS", "PACKED"))
    assert all(x is None for x in seen["mk"])


Q = _inputs(1, 4, 4, 32, 32, 16, torch.float32, seed=0)


def _t(*shape):
    return torch.randn(*shape, device=backend.DEVICE)


def _cu(*values):
    return torch.tensor(values, dtype=torch.int32, device=backend.DEVICE)


@pytest.mark.parametrize("kwargs,match", [
    (dict(window_size=(-2, 0)), r"window_size\[left\] must be -1 \(no limit\) or at least 0, got -2"),
    (dict(window_size=(0, 1.5)), r"window_size\[right\] must be an integer \(-1: no limit\), got 1.5 \(float\)"),
    (dict(window_size=(True, 0)), r"window_size\[left\] must be an integer"),
    (dict(window_size=8), r"window_size must be a pair \(left, right\)"),
    (dict(window_size=(1, 2, 3)), r"window_size must be a pair"),
    (dict(window_size="ab"), r"window_size must be a pair"),
    (dict(cu_seqlens=[0, 32]), r"cu_seqlens must be a 1-D torch.int32 tensor .*got \[0, 32\] \(list\)"),
    (dict(cu_seqlens=torch.tensor([0, 32])), r"cu_seqlens must be a 1-D torch.int32 tensor .*torch.int64"),
    (dict(cu_seqlens=torch.tensor([[0, 32]], dtype=torch.int32)), r"cu_seqlens must be a 1-D"),
    (dict(cu_seqlens=_cu(1, 32)), r"cu_seqlens must start at 0 and end at seq_len 32"),
    (dict(cu_seqlens=_cu(0, 31)), r"cu_seqlens must start at 0 and end at seq_len 32"),
    (dict(cu_seqlens=_cu(0, 9, 9, 32)), r"cu_seqlens must be strictly increasing"),
    (dict(cu_seqlens=_cu(0, 20, 9, 32)), r"cu_seqlens must be strictly increasing"),
    (dict(cu_seqlens=_cu(0)), r"cu_seqlens must hold at least two boundaries"),
    (dict(k=_t(1, 3, 32, 16), v=_t(1, 3, 32, 16)), r"k and v must have a number of heads that "
                                                                      r"divides q's 4 \(GQA/MQA\), got 3"),
    (dict(k=_t(1, 2, 32, 16), v=_t(1, 2, 30, 16)), r"k and v must have one shape"),
    (dict(k=_t(2, 2, 32, 16), v=_t(2, 2, 32, 16)), r"one batch size and head_dim"),
    (dict(k=_t(1, 4, 16, 16), v=_t(1, 4, 16, 16), causal=True),
     r"q has 32 queries and k 16 keys: with causal or a window .* at most as many"),
    (dict(k=_t(1, 4, 40, 16), v=_t(1, 4, 40, 16), cu_seqlens=_cu(0, 32)),
     r"cu_seqlens packs documents .* q and k must have one seq_len, got 32 and 40"),
])
def test_bad_mask_arguments_raise(kwargs, match):
    q, k, v = Q
    kw = dict(kwargs)
    k, v = kw.pop("k", k), kw.pop("v", v)
    for fn in (attention.flash_attention, attention.flash_attention_fwd):
        with pytest.raises(ValueError, match=match):
            fn(q, k, v, **kw)


def test_the_tuner_splits_the_keys_when_the_q_blocks_leave_the_gpu_idle(monkeypatch):
    """flash-decoding's choice: programs (q-blocks x batch x K/V heads) that fill the SMs are not
    split; fewer are, into counts around two waves (at most the kv-blocks), each timed with the
    decode configs; a row-interval mask never gets SPLIT 2 (its rows run whole q-blocks)."""
    from kernels import tuning

    monkeypatch.setattr(tuning.backend, "INTERPRET", False)
    assert tuning.kv_split_counts(132, 256, 132) == (1,) and tuning.kv_split_counts(8, 1, 132) == (1,)
    counts = tuning.kv_split_counts(16, 256, 132)
    assert counts == (8, 17, 32) and tuning.kv_split_counts(16, 12, 132) == (8, 12)
    decode = tuning.forward_candidates(128, "tf32", True, True, counts, rows=8)
    assert {c.kv_splits for c in decode} == {1, *counts} and all(c.block_m <= 64 for c in decode)
    long = tuning.forward_candidates(64, "tf32", True, True, counts, rows=4096)
    assert not any(c.split == 2 for c in long) and {c.kv_splits for c in long} == {1, *counts}
    assert any(c.split == 2 for c in tuning.forward_candidates(64, "tf32", True, False, (1,)))


def test_a_checked_cu_seqlens_is_not_copied_to_the_host_again_until_it_changes(monkeypatch):
    """The boundaries are checked on the host (a device-to-host copy, a sync on a GPU) once per
    tensor and version: the same tensor again skips the copy; an in-place write is checked again
    and a bad write refused; a new tensor with the same values is checked on its own."""
    q = _t(1, 2, 32, 16)
    cu = _cu(0, 9, 32)
    copies = []
    real = attention.masks.check_cu_seqlens
    monkeypatch.setattr(attention.masks, "check_cu_seqlens", lambda v, n: copies.append(list(v)) or real(v, n))
    first = attention.check_cu_seqlens(cu, q, q)
    assert attention.check_cu_seqlens(cu, q, q).doc is first.doc and copies == [[0, 9, 32]]
    assert first.doc.tolist() == [0] * 9 + [1] * 23
    cu[1] = 20  # in place: the version counter moves
    again = attention.check_cu_seqlens(cu, q, q)
    assert copies[-1] == [0, 20, 32] and again.doc.tolist() == [0] * 20 + [1] * 12
    cu[1] = 40
    with pytest.raises(ValueError, match="strictly increasing"):
        attention.check_cu_seqlens(cu, q, q)
    other = _cu(0, 9, 32)
    attention.check_cu_seqlens(other, q, q)
    assert copies[-1] == [0, 9, 32] and len(copies) == 4
    q_short = _t(1, 2, 9, 16)  # another seq_len with the same tensor: checked against it (and refused)
    with pytest.raises(ValueError, match="end at seq_len 9"):
        attention.check_cu_seqlens(other, q_short, q_short)
    third = _cu(0, 5, 32)
    attention.check_cu_seqlens(third, q, q)
    key = id(third)
    assert key in attention._checked_docs
    del third
    assert key not in attention._checked_docs  # the entry goes with its tensor (it holds no reference to it)
