"""GPU-only checks of the masks (-m gpu): the tuned paths (every forward config the tuner may pick for
a mask, decode's split counts, descriptors and pointer loads), gradients in float16 and bfloat16,
every backward config with a window and GQA, torch.compile of the operator with every option, and
the masked traces compiled, each against float64. Skipped without CUDA."""
import io

import numpy as np
import pytest
import torch

from kernels import attention, flash_bwd, flash_fwd, masks, trace_io, tuning
from kernels.launch import Config
from tests.helpers import FLOOR
from tests.test_mask_traces import CONFIGS
from tests.test_masks import _dense, check_out, grads64, sees

pytestmark = pytest.mark.gpu
W = (-1, -1)


def _qkv(b, h, hkv, n_q, n_k, d, dtype, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q = torch.randn(b, h, n_q, d, device="cuda", generator=g).to(dtype)
    k, v = (torch.randn(b, hkv, n_k, d, device="cuda", generator=g).to(dtype) for _ in range(2))
    return q, k, v


def _cu(n, docs):
    return masks.document_bounds(n, docs, 0) if docs > 1 else ()


# (name, heads, kv_heads, n_q, n_k, d, causal, window, documents)
TUNED = [
    ("window", 4, 4, 4099, 4099, 128, True, (1024, -1), 1),
    ("window both sides", 2, 2, 2000, 2000, 64, False, (300, 100), 1),
    ("documents", 4, 4, 4096, 4096, 64, True, W, 7),
    ("documents+window", 2, 2, 3001, 3001, 128, True, (500, -1), 5),
    ("GQA", 8, 2, 4096, 4096, 128, True, W, 1),
    ("MQA+window", 8, 1, 2048, 2048, 64, True, (256, -1), 1),
    ("decode", 32, 8, 1, 16384, 128, True, W, 1),
    ("decode 4 queries", 32, 8, 4, 8191, 128, True, W, 1),
    ("decode+window", 8, 8, 1, 9000, 64, True, (2048, -1), 1),
]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", TUNED, ids=lambda c: c[0])
def test_tuned_forward_with_masks(case, dtype):
    name, h, hkv, n_q, n_k, d, causal, window, docs = case
    q, k, v = _qkv(2, h, hkv, n_q, n_k, d, dtype, seed=n_k)
    cu = _cu(n_k, docs)
    cu_t = torch.tensor(cu, dtype=torch.int32, device="cuda") if cu else None
    out, lse = attention.flash_attention_fwd(q, k, v, causal=causal, window_size=window, cu_seqlens=cu_t)
    check_out(out, lse, q, k, v, sees(n_q, n_k, causal, window, cu).cuda(), d ** -0.5,
              f"{name} {dtype} ({attention.tuned_config_name()})")


@pytest.mark.parametrize("d", [64, 128])
def test_every_forward_config_with_masks(d):
    """Each config the tuner may pick for a row-interval mask (descriptors and pointer loads), and the
    decode configs at split counts."""
    for c in tuning.forward_candidates(d, "tf32", True, True, (1,)):
        for use_tma in (True, False):
            q, k, v = _qkv(1, 4, 2, 1500, 1500, d, torch.float16, seed=d)
            out, lse = flash_fwd.launch(q, k, v, True, d ** -0.5, c, use_tma=use_tma, window=(300, -1))
            check_out(out, lse, q, k, v, sees(1500, 1500, True, (300, -1), ()).cuda(), d ** -0.5, f"{c.name} {use_tma}")
    for c in tuning.forward_candidates(d, "tf32", False, True, (2, 8, 32)):
        q, k, v = _qkv(2, 8, 1, 3, 5000, d, torch.float16, seed=3)
        out, lse = flash_fwd.launch(q, k, v, True, d ** -0.5, c)
        check_out(out, lse, q, k, v, sees(3, 5000, True, W, ()).cuda(), d ** -0.5, f"decode {c.name}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", [c for c in TUNED if c[0] in ("window", "documents+window", "MQA+window",
                                                                "decode 4 queries")], ids=lambda c: c[0])
def test_autograd_with_masks(case, dtype):
    name, h, hkv, n_q, n_k, d, causal, window, docs = case
    q, k, v = _qkv(1, h, hkv, n_q, n_k, d, dtype, seed=7)
    do = torch.randn(q.shape, device="cuda").to(dtype)
    cu = _cu(n_k, docs)
    cu_t = torch.tensor(cu, dtype=torch.int32, device="cuda") if cu else None
    qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
    attention.flash_attention(qg, kg, vg, causal=causal, window_size=window, cu_seqlens=cu_t).backward(do)
    allowed = sees(n_q, n_k, causal, window, cu).cuda()
    ref = grads64(q, k, v, do, allowed, d ** -0.5)
    theirs = [t.clone().float().requires_grad_() for t in (q, k, v)]
    _dense(*theirs, allowed, d ** -0.5, torch.float32).backward(do.float())
    for what, got, want, t in zip(("dq", "dk", "dv"), (qg.grad, kg.grad, vg.grad), ref, theirs, strict=True):
        err = float((got.double() - want).abs().max())
        bound = 4 * float((t.grad.to(dtype).double() - want).abs().max()) + FLOOR[dtype] * max(1.0, float(want.abs().max()))
        assert err <= bound, f"{name} {dtype}: {what} differs from float64 by {err:.3g} (bound {bound:.3g})"


BWD = [(kernel, c) for kernel, cs in tuning.BACKWARD_CONFIGS.items() for c in cs]


@pytest.mark.parametrize("kernel,config", BWD, ids=[f"{k}-{c.name}" for k, c in BWD])
@pytest.mark.parametrize("d", [64, 128])
def test_every_backward_config_with_a_window_and_gqa(kernel, config, d):
    if not config.fits(d):
        pytest.skip("not kept for this head_dim")
    q, k, v = _qkv(1, 4, 1, 1000, 1000, d, torch.float16, seed=1)
    do = torch.randn(q.shape, device="cuda").half()
    out, lse = flash_fwd.launch(q, k, v, True, d ** -0.5, Config(64, 64), window=(200, -1))
    delta = flash_bwd.preprocess(out, do)
    ref = grads64(q, k, v, do, sees(1000, 1000, True, (200, -1), ()).cuda(), d ** -0.5)
    if kernel == "dq":
        got = {"dq": flash_bwd.launch_dq(q, k, v, do, lse, delta, True, d ** -0.5, config, window=(200, -1))}
    else:
        acc = torch.zeros(q.shape, device="cuda") if kernel == "fused" else None
        dk, dv = flash_bwd.launch_dkdv(q, k, v, do, lse, delta, True, d ** -0.5, config, dq_acc=acc, window=(200, -1))
        got = {"dk": dk, "dv": dv} | ({"dq": acc} if acc is not None else {})
    for name, g in got.items():
        want = ref[("dq", "dk", "dv").index(name)]
        err = float((g.double() - want).abs().max())
        assert err <= 2e-2 * max(1.0, float(want.abs().max())), f"{kernel} {config.name} d={d}: {name} off by {err:.3g}"


def test_torch_compile_takes_every_option():
    q, k, v = (t.requires_grad_() for t in _qkv(2, 8, 2, 1024, 1024, 64, torch.float16, seed=5))
    cu = torch.tensor([0, 300, 301, 1024], dtype=torch.int32, device="cuda")

    def f(q, k, v):
        return attention.flash_attention(q, k, v, causal=True, window_size=(128, -1), cu_seqlens=cu)

    out = torch.compile(f, fullgraph=True)(q, k, v)
    eager = f(q.detach(), k.detach(), v.detach())
    assert float((out - eager).abs().max()) == 0.0
    out.sum().backward()
    assert q.grad is not None and k.grad.shape == k.shape


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"N{c.seq_len}-g{c.group}-q{c.q_len}-w{c.window_left}")
def test_masked_traces_compiled(cfg):
    from kernels.trace import capture_trace

    trace = capture_trace(cfg)
    back = trace_io.load(io.BytesIO(trace_io.to_bytes(trace)), "gpu.npz")  # every check of the loader
    assert np.array_equal(back.tile_kind, cfg.tile_kinds()) and "compiled" in trace.device
