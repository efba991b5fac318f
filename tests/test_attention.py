"""FlashAttention-2 forward against the float64 reference, in the interpreter (CPU)."""
import math

import numpy as np
import pytest
import torch

from kernels import attention, backend, reference
from tests.helpers import torch_attention_err

# Besides PyTorch's own error, allow a floor for rounding the output itself: half an ulp of the
# output dtype at |out| ~ 1 (fp16: 2**-11) plus fp32 accumulation noise.
FLOOR = {torch.float32: 2e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}


def check_against_reference(q, k, v, causal, block_m=None, block_n=None, sm_scale=None):
    b, h, n, d = q.shape
    scale = sm_scale if sm_scale is not None else 1 / math.sqrt(d)
    out = torch.full_like(q, float("nan"))  # poison: every element must be written
    if block_m is None:
        out = attention.flash_attention(q, k, v, causal=causal, sm_scale=sm_scale)
        lse = None
    else:
        out, lse = attention._launch(q, k, v, causal, scale, block_m, block_n, out=out)
    assert not torch.isnan(out).any(), f"{int(torch.isnan(out).sum())} output elements never written"
    for bi in range(b):
        for hi in range(h):
            ref = reference.attention(q[bi, hi], k[bi, hi], v[bi, hi], causal, scale)
            err = float(np.max(np.abs(out[bi, hi].double().cpu().numpy() - ref["out"])))
            bound = 2 * torch_attention_err(q[bi, hi], k[bi, hi], v[bi, hi], causal, scale, ref["out"]) + FLOOR[q.dtype]
            assert err <= bound, (
                f"out differs from float64 by {err:.3g} (bound {bound:.3g}) at batch {bi} head {hi}, "
                f"N={n} d={d} blocks={block_m}x{block_n} causal={causal} {q.dtype}"
            )
            if lse is not None:
                lse_err = float(np.max(np.abs(lse[bi, hi].cpu().numpy() - ref["lse"])))
                assert lse_err < 1e-4, f"lse differs from float64 by {lse_err:.3g}"


def rand_qkv(b, h, n, d, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=g).to(dtype).to(backend.DEVICE) for _ in range(3)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("block_m,block_n", [(16, 16), (32, 16), (16, 64)])
@pytest.mark.parametrize("head_dim", [16, 64])
@pytest.mark.parametrize("seq_len", [1, 17, 113, 200, 256])  # 256, not causal: no masked kv loop compiled
def test_forward_matches_float64(seq_len, head_dim, block_m, block_n, causal, dtype):
    q, k, v = rand_qkv(1, 2, seq_len, head_dim, dtype, seed=seq_len * 7 + head_dim)
    check_against_reference(q, k, v, causal, block_m, block_n)


@pytest.mark.parametrize("head_dim", [32, 128])
def test_other_head_dims_and_default_blocks(head_dim):
    q, k, v = rand_qkv(2, 1, 77, head_dim, torch.float32, seed=head_dim)
    check_against_reference(q, k, v, causal=True)


def test_strided_inputs_and_custom_scale():
    # (batch, seq, heads, dim) memory viewed as (batch, heads, seq, dim): non-contiguous strides
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 50, 3, 32, generator=g).transpose(1, 2) for _ in range(3))
    assert not q.is_contiguous()
    check_against_reference(q, k, v, causal=False, block_m=32, block_n=16, sm_scale=0.3)


def test_large_scores_stay_finite():
    q, k, v = rand_qkv(1, 1, 100, 16, torch.float16, seed=5)
    q, k = q * 10, k * 10  # scores ~ 100x: exp would overflow without the running max
    check_against_reference(q, k, v, causal=False, block_m=32, block_n=32)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(block_m=48, block_n=16), "block_m must be a power of two between 16 and 256, got 48"),
        (dict(block_m=16, block_n=8), "block_n must be a power of two between 16 and 256, got 8"),
        (dict(block_m=256, block_n=128), r"block_m \* block_n must be at most 16384"),
    ],
)
def test_bad_blocks_raise(kwargs, match):
    q, k, v = rand_qkv(1, 1, 32, 16, torch.float32, seed=0)
    with pytest.raises(ValueError, match=match):
        attention.flash_attention_fwd(q, k, v, **kwargs)


def test_bad_inputs_raise():
    q, k, v = rand_qkv(1, 1, 32, 48, torch.float32, seed=0)
    with pytest.raises(ValueError, match=r"head_dim must be one of \(16, 32, 64, 128\), got 48"):
        attention.flash_attention(q, k, v)
    q, k, v = rand_qkv(1, 1, 32, 16, torch.float32, seed=0)
    with pytest.raises(ValueError, match="one shape"):
        attention.flash_attention(q, k[:, :, :16], v)
    with pytest.raises(ValueError, match=r"\(batch, heads, seq_len, head_dim\)"):
        attention.flash_attention(q[0], k[0], v[0])
    with pytest.raises(ValueError, match="one dtype"):
        attention.flash_attention(q, k.half(), v)


@pytest.mark.parametrize("use_tma", [True, False])
@pytest.mark.parametrize("causal", [False, True])
def test_both_load_paths(use_tma, causal):
    # tensor descriptors (the GPU fast path from seq_len 4096, and the trace) and plain pointer loads
    q, k, v = rand_qkv(1, 2, 113, 32, torch.float16, seed=11)
    b, h, n, d = q.shape
    out = torch.full_like(q, float("nan"))
    out, _ = attention._launch(q, k, v, causal, None, 32, 16, out=out, use_tma=use_tma)
    for hi in range(h):
        ref = reference.attention(q[0, hi], k[0, hi], v[0, hi], causal, 1 / math.sqrt(d))["out"]
        err = float(np.max(np.abs(out[0, hi].double().cpu().numpy() - ref)))
        assert err < 2e-3, f"use_tma={use_tma}: error {err:.3g} against float64"


@pytest.mark.parametrize("split,late_v", [(2, False), (2, True), (1, True)])
@pytest.mark.parametrize("use_tma", [True, False])
@pytest.mark.parametrize("causal", [False, True])
def test_split_q_block_matches_reference(use_tma, causal, split, late_v):
    """SPLIT 2 (a GPU config): the q-block as two halves with their own m, l and acc sharing each
    K/V tile. 150 rows with 64-row blocks: the last block's second half is all padding, and with
    causal the first half runs through kv-blocks that lie wholly above its diagonal. LATE_V (the
    head_dim-64 split config) loads V_j after the softmax instead of with K_j."""
    q, k, v = rand_qkv(1, 2, 150, 32, torch.float32, seed=5)
    b, h, n, d = q.shape
    out = torch.full_like(q, float("nan"))
    out, lse = attention._launch(q, k, v, causal, None, 64, 16, out=out, use_tma=use_tma, split=split,
                                 late_v=late_v)
    assert not torch.isnan(out).any()
    for hi in range(h):
        ref = reference.attention(q[0, hi], k[0, hi], v[0, hi], causal, 1 / math.sqrt(d))
        assert float(np.max(np.abs(out[0, hi].double().numpy() - ref["out"]))) < 2e-6  # float32: exact dot here
        assert float(np.max(np.abs(lse[0, hi].double().numpy() - ref["lse"]))) < 2e-6


def test_split_is_checked():
    q, k, v = rand_qkv(1, 1, 40, 32, torch.float32, seed=0)
    with pytest.raises(ValueError, match="split must be 1, or 2 with block_m >= 32"):
        attention._launch(q, k, v, False, None, 64, 16, split=3)
    with pytest.raises(ValueError, match="split must be 1, or 2 with block_m >= 32"):
        attention._launch(q, k, v, False, None, 16, 16, split=2)
    with pytest.raises(ValueError, match="split must be 1, or 2"):
        attention._launch(q, k, v, False, None, 64, 16, split=True)
    with pytest.raises(ValueError, match=r"block_m \* block_n must be at most 16384"):
        attention._launch(q, k, v, False, None, 256, 128, split=2)  # both halves' tiles count
    trace = attention.TraceBuffers(40, 32, 64, 16, [0], "cpu")
    with pytest.raises(ValueError, match="traced launch"):
        attention._launch(q, k, v, False, None, 64, 16, trace=trace, split=2)


@pytest.mark.parametrize("head_dim", [64, 128])
def test_autotune_prunes_float32_to_one_config(head_dim):
    """float32 runs at ieee precision off the tensor cores: one config (the smallest tile), so the
    first float32 call compiles once; tf32/fp16 keeps every GPU config whose tiles fit."""
    gpu_fwd = attention._configs(interpret=False)
    args = {"HEAD_DIM": head_dim, "USE_TMA": True}
    ieee = attention._keep(gpu_fwd, {**args, "DOT_PRECISION": "ieee"})
    assert [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"]) for c in ieee] == [(64, 64)]
    fast = attention._keep(gpu_fwd, {**args, "DOT_PRECISION": "tf32"})
    assert len(gpu_fwd) == 10 and len(fast) == 9  # each split config is kept for one head_dim only
    split = [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.kwargs.get("LATE_V", False))
             for c in fast if c.kwargs["SPLIT"] == 2]
    assert split == ([(256, 64, False)] if head_dim == 128 else [(128, 128, True)])
    assert not any(c.kwargs.get("LATE_V") for c in fast if c.kwargs["SPLIT"] == 1)
    no_tma = attention._keep(gpu_fwd, {**args, "USE_TMA": False, "DOT_PRECISION": "tf32"})
    assert len(no_tma) == 8 and not any(c.kwargs["WARP_SPEC"] for c in no_tma)
    for kernel in ("dkdv", "dq"):
        gpu_bwd = attention._bwd_configs(kernel, interpret=False)
        kept = attention._keep_bwd(gpu_bwd, {"HEAD_DIM": head_dim, "DOT_PRECISION": "ieee"})
        assert len(kept) == 1 and kept[0].kwargs["BLOCK_M"] * kept[0].kwargs["BLOCK_N"] == 2048
        assert len(attention._keep_bwd(gpu_bwd, {"HEAD_DIM": head_dim, "DOT_PRECISION": "tf32"})) == 4


def test_tuner_interleaves_so_a_heating_gpu_picks_the_fastest():
    """A GPU that slows down as it runs (each timing 1% slower than the one before) must not hand
    the win to whichever config is timed first: the tuner times a, b, c, a, b, c, ... and compares
    medians. Timed one after the other, 'first' (true 1.00 ms) would beat 'fast' (0.97 ms)."""
    configs = {name: attention.triton.Config({"name": name}) for name in ("first", "fast", "slow")}
    true_ms = {"first": 1.00, "fast": 0.97, "slow": 1.20}
    order, compiled = [], []
    current = {}

    def run(c):
        current["name"] = c.kwargs["name"]
        compiled.append(c.kwargs["name"])

    def bench(fn):
        fn()
        order.append(current["name"])
        return true_ms[current["name"]] * 1.01 ** len(order)

    tuner = attention._ForwardTuner()
    asked = []

    def cands():
        asked.append(1)
        return list(configs.values())

    best = tuner.pick(("key",), cands, run, bench=bench)
    assert best.kwargs["name"] == "fast" and tuner.last is best
    assert compiled[:3] == ["first", "fast", "slow"]  # each compiled (run once) before any timing
    assert order[:6] == ["first", "fast", "slow"] * 2 and len(order) == 3 * attention.TUNE_ROUNDS
    # cached: a second call with the same key neither lists candidates nor times anything
    assert tuner.pick(("key",), cands, run, bench=bench) is best
    assert len(order) == 3 * attention.TUNE_ROUNDS and len(asked) == 1


def test_tuner_drops_configs_that_do_not_compile():
    from triton.runtime.errors import OutOfResources

    good, bad = attention.triton.Config({"n": "good"}), attention.triton.Config({"n": "bad"})

    def run(c):
        if c.kwargs["n"] == "bad":
            raise OutOfResources(300000, 232448, "shared memory")

    assert attention._ForwardTuner().pick(("k",), lambda: [bad, good], run, bench=lambda fn: 1.0) is good
    with pytest.raises(OutOfResources):
        attention._ForwardTuner().pick(("k2",), lambda: [bad, bad], run, bench=lambda fn: 1.0)
