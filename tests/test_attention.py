"""The FlashAttention-2 forward against float64, in the interpreter: ragged sizes, every head dim,
both masks, the load paths and the GPU-only variants (SPLIT, LATE_V) compiled by the same source;
the tuner's choice of candidates and its interleaved timing; the API's argument checks."""
import json

import numpy as np
import pytest
import torch

from kernels import attention, flash_fwd, reference, tuning
from kernels.launch import Config
from tests.helpers import check_forward, rand


def launch(q, k, v, causal, block_m, block_n, use_tma=None, **variant):
    out = torch.full_like(q, float("nan"))  # poison: every element must be written
    return flash_fwd.launch(q, k, v, causal, q.shape[-1] ** -0.5, Config(block_m, block_n, **variant), out=out,
                            use_tma=use_tma)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("block_m,block_n", [(16, 16), (32, 16), (16, 64)])
@pytest.mark.parametrize("head_dim", [16, 64])
@pytest.mark.parametrize("seq_len", [1, 17, 113, 200, 256])  # 256, not causal: no masked kv loop compiled
def test_forward_matches_float64(seq_len, head_dim, block_m, block_n, causal, dtype):
    q, k, v = rand(1, 2, seq_len, head_dim, dtype, seed=seq_len * 7 + head_dim)
    out, lse = launch(q, k, v, causal, block_m, block_n)
    what = f"N={seq_len} d={head_dim} blocks={block_m}x{block_n} causal={causal} {dtype}"
    check_forward(out, q, k, v, causal, head_dim ** -0.5, what)
    for h in range(2):
        ref = reference.attention(q[0, h], k[0, h], v[0, h], causal, head_dim ** -0.5)
        lse_err = float(np.max(np.abs(lse[0, h].numpy() - ref["lse"])))
        assert lse_err < 1e-4 * max(1.0, float(np.abs(ref["lse"]).max())), f"{what}: lse off by {lse_err:.3g}"


@pytest.mark.parametrize("head_dim", [32, 128])
def test_other_head_dims_and_default_blocks(head_dim):
    q, k, v = rand(2, 1, 77, head_dim, torch.float32, seed=head_dim)
    check_forward(attention.flash_attention(q, k, v, causal=True), q, k, v, True, head_dim ** -0.5, "default blocks")


def test_strided_inputs_and_custom_scale():
    # (batch, seq, heads, dim) memory viewed as (batch, heads, seq, dim): non-contiguous strides;
    # k with other strides than q and v: the host makes all three contiguous
    g = torch.Generator().manual_seed(3)
    q, v = (torch.randn(2, 50, 3, 32, generator=g).transpose(1, 2) for _ in range(2))
    k = torch.randn(2, 3, 50, 32, generator=g)
    assert not q.is_contiguous() and k.stride() != q.stride()
    out, _ = attention.flash_attention_fwd(q, k, v, sm_scale=0.3, block_m=32, block_n=16)
    check_forward(out, q, k, v, False, 0.3, "strided")


def test_large_scores_stay_finite():
    q, k, v = rand(1, 1, 100, 16, torch.float16, seed=5)
    q, k = q * 10, k * 10  # scores ~ 100x: exp would overflow without the running max
    check_forward(launch(q, k, v, False, 32, 32)[0], q, k, v, False, 0.25, "large scores")


@pytest.mark.parametrize("use_tma", [True, False])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_both_load_paths(use_tma, causal):
    # tensor descriptors (the GPU fast path from seq_len 4096, and the trace) and plain pointer loads
    q, k, v = rand(1, 2, 113, 32, torch.float16, seed=11)
    check_forward(launch(q, k, v, causal, 32, 16, use_tma=use_tma)[0], q, k, v, causal, 32 ** -0.5, f"tma={use_tma}")


@pytest.mark.parametrize("split,late_v", [(2, False), (2, True), (1, True)])
@pytest.mark.parametrize("use_tma", [True, False])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_split_q_block_matches_reference(use_tma, causal, split, late_v):
    """SPLIT 2 (a GPU config): the q-block as two halves with their own m, l and acc sharing each
    K/V tile. 150 rows with 64-row blocks: the last block's second half is all padding, and with
    causal the first half runs through kv-blocks that lie wholly above its diagonal. LATE_V loads
    V_j after the softmax instead of with K_j. float32 in the interpreter: the dots are exact."""
    q, k, v = rand(1, 2, 150, 32, torch.float32, seed=5)
    out, lse = launch(q, k, v, causal, 64, 16, use_tma=use_tma, split=split, late_v=late_v)
    assert not torch.isnan(out).any()
    for h in range(2):
        ref = reference.attention(q[0, h], k[0, h], v[0, h], causal, 32 ** -0.5)
        assert float(np.max(np.abs(out[0, h].double().numpy() - ref["out"]))) < 2e-6
        assert float(np.max(np.abs(lse[0, h].double().numpy() - ref["lse"]))) < 2e-6


def test_tuner_candidates(monkeypatch):
    """float32 runs at ieee precision off the tensor cores: one config (the smallest tile), so the
    first float32 call compiles once; fp16 keeps every config whose tiles fit the head dim; warp
    specialization needs tensor descriptors."""
    monkeypatch.setattr(tuning.backend, "INTERPRET", False)
    fwd = tuning.FORWARD_CONFIGS
    for d, split in ((64, "BM128 BN128 w4 s2 split2 late-V"), (128, "BM256 BN64 w8 s3 split2")):
        fast = tuning.candidates(fwd, d, "tf32", use_tma=True)
        assert len(fwd) == 10 and len(fast) == 9 and [c.name for c in fast if c.split == 2] == [split]
        no_tma = tuning.candidates(fwd, d, "tf32", use_tma=False)
        assert len(no_tma) == 8 and not any(c.warp_spec for c in no_tma)
        assert [(c.block_m, c.block_n) for c in tuning.candidates(fwd, d, "ieee")] == [(64, 64)]
        # every backward config fits head_dim 64 and 128 except the fused 64 x 128 tile (head_dim <= 64)
        want = {"dkdv": 8, "dq": 6, "fused": 4 if d == 64 else 3}
        for kernel, configs in tuning.BACKWARD_CONFIGS.items():
            assert len(tuning.candidates(configs, d, "tf32")) == want[kernel], kernel
            (one,) = tuning.candidates(configs, d, "ieee")
            assert one.block_m * one.block_n == min(c.block_m * c.block_n for c in configs), kernel  # the smallest tile
            assert one.block_m * one.block_n == (2048 if kernel == "dq" else 1024), kernel
    monkeypatch.setattr(tuning.backend, "INTERPRET", True)
    assert tuning.candidates(fwd, 64, "tf32") == [tuning.INTERPRETER_CONFIG]


def test_tuner_interleaves_so_a_heating_gpu_picks_the_fastest():
    """A GPU that slows down as it runs (each timing 1% slower than the one before) must not hand
    the win to whichever config is timed first: the tuner times a, b, c, a, b, c, ... and compares
    medians. Timed one after the other, 'first' (true 1.00 ms) would beat 'fast' (0.97 ms)."""
    configs = {name: tuning.Config(bm, 64) for name, bm in (("first", 16), ("fast", 32), ("slow", 64))}
    true_ms = {configs["first"]: 1.00, configs["fast"]: 0.97, configs["slow"]: 1.20}
    order, compiled, current, asked = [], [], {}, []

    def run(c):
        current["c"] = c
        compiled.append(c)

    def bench(fn):
        fn()
        order.append(current["c"])
        return true_ms[current["c"]] * 1.01 ** len(order)

    def todo():
        asked.append(1)
        return list(configs.values())

    tuner = tuning.Tuner()
    best = tuner.pick(("key",), todo, run, bench=bench)
    assert best == configs["fast"] and tuner.last is best
    assert compiled[:3] == list(configs.values())  # each compiled (run once) before any timing
    assert order[:6] == list(configs.values()) * 2 and len(order) == 3 * tuning.TUNE_ROUNDS
    assert tuner.pick(("key",), todo, run, bench=bench) is best  # cached: nothing listed or timed again
    assert len(order) == 3 * tuning.TUNE_ROUNDS and len(asked) == 1


def test_tuner_drops_configs_that_do_not_compile():
    from triton.runtime.errors import OutOfResources

    good, bad = tuning.Config(64, 64), tuning.Config(256, 64)

    def run(c):
        if c == bad:
            raise OutOfResources(300000, 232448, "shared memory")

    assert tuning.Tuner().pick(("k",), lambda: [bad, good], run, bench=lambda fn: 1.0) == good
    with pytest.raises(OutOfResources):
        tuning.Tuner().pick(("k2",), lambda: [bad, bad], run, bench=lambda fn: 1.0)


def test_tuning_decisions_persist_by_shape_bucket(tmp_path):
    """A second process (a new Tuner on the same file) takes the first one's decision without timing;
    lengths in one bucket share a key; a decision naming no candidate of today is timed again."""
    path = tmp_path / "tuning.json"
    a, b = tuning.Config(64, 64), tuning.Config(128, 64, 8, 3)
    timed = []

    def bench(fn):
        fn()
        return 1.0 if timed[-1] == b else 2.0

    def run(c):
        timed.append(c)

    key = ("fwd", tuning.bucket(1000), tuning.bucket(4000))
    assert key == ("fwd", 1024, 4096) and tuning.bucket(1024) == 1024 and tuning.bucket(1) == tuning.bucket(63) == 64
    first = tuning.Tuner(path=lambda: path)
    assert first.pick(key, lambda: [a, b], run, bench=bench) == b and first.timed == 1
    assert json.loads(path.read_text()) == {tuning.disk_key(key): b.name}
    timed.clear()
    second = tuning.Tuner(path=lambda: path)
    assert second.pick(("fwd", tuning.bucket(1024), tuning.bucket(3000)), lambda: [a, b], run, bench=bench) == b
    assert second.timed == 0 and timed == []  # nothing compiled or timed: the file's decision
    path.write_text(json.dumps({tuning.disk_key(key): "BM999 BN1 w1 s1"}))  # not a candidate: timed again
    third = tuning.Tuner(path=lambda: path)
    assert third.pick(key, lambda: [a, b], run, bench=bench) == b and third.timed == 1


@pytest.mark.parametrize("kind", ["not json", "a list", "a number for a name", "too large"])
def test_a_bad_tuning_cache_is_named_and_ignored(tmp_path, kind):
    text = {"not json": "{not json", "a list": "[1, 2]", "a number for a name": '{"k": 3}',
            "too large": "x" * (tuning.MAX_CACHE_BYTES + 1)}[kind]
    path = tmp_path / "tuning.json"
    path.write_text(text)
    with pytest.warns(UserWarning, match="tuning cache .* ignored"):
        assert tuning.read_decisions(path) == {}
    a, b = tuning.Config(64, 64), tuning.Config(128, 64, 8, 3)
    with pytest.warns(UserWarning, match="ignored"):
        got = tuning.Tuner(path=lambda: path).pick(("k",), lambda: [a, b], lambda c: None,
                                                   bench=lambda fn: 1.0)
    assert got == a and json.loads(path.read_text()) == {tuning.disk_key(("k",)): a.name}  # rewritten whole


def test_the_tuning_cache_location(monkeypatch, tmp_path):
    monkeypatch.setattr(tuning.backend, "INTERPRET", False)
    monkeypatch.setenv(tuning.CACHE_ENV, str(tmp_path / "t.json"))
    assert tuning.cache_path() == tmp_path / "t.json"
    monkeypatch.setenv(tuning.CACHE_ENV, "")
    assert tuning.cache_path() is None
    monkeypatch.delenv(tuning.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    where = tuning.cache_path()
    assert where.parent == tmp_path / "fa-viz" and where.name.startswith("tuning-") and "triton" in where.name
    monkeypatch.setattr(tuning.backend, "INTERPRET", True)
    assert tuning.cache_path() is None  # the interpreter times nothing


# ---------------------------------------------------------------- the API's checks
Q = rand(1, 1, 32, 16, torch.float32, seed=0)


@pytest.mark.parametrize("call,match", [
    (lambda q, k, v: attention.flash_attention(q.numpy(), k, v),
     r"q must be a torch.Tensor \(batch, heads, seq_len, head_dim\), got ndarray"),
    (lambda q, k, v: attention.flash_attention(q[0], k[0], v[0]), r"q must be \(batch, heads, seq_len, head_dim\)"),
    (lambda q, k, v: attention.flash_attention(q, k[:, :, :16], v), "one shape"),
    (lambda q, k, v: attention.flash_attention(q, k.half(), v), "one dtype"),
    (lambda q, k, v: attention.flash_attention(q.double(), k.double(), v.double()),
     "q.dtype must be one of float32, float16"),
    (lambda q, k, v: attention.flash_attention(q[..., :8], k[..., :8], v[..., :8]),
     "head_dim must be one of 16, 32, 64, 128, got 8"),
    (lambda q, k, v: attention.flash_attention(q, k, v, causal="False"), r"causal must be True or False, got 'False' \(str\)"),
    (lambda q, k, v: attention.flash_attention(q, k, v, causal=1), r"causal must be True or False, got 1 \(int\)"),
    (lambda q, k, v: attention.flash_attention(q, k, v, sm_scale=True), r"sm_scale must be a number, got True \(bool\)"),
    (lambda q, k, v: attention.flash_attention(q, k, v, sm_scale=-1.0), "sm_scale must be a finite number > 0"),
    (lambda q, k, v: attention.flash_attention(q, k, v, sm_scale=float("nan")), "sm_scale must be a finite number > 0"),
    (lambda q, k, v: attention.flash_attention_fwd(q, k, v, block_m=48, block_n=16),
     r"block_m must be one of 16, 32, 64, 128, 256 \(a power of two between 16 and 256\), got 48"),
    (lambda q, k, v: attention.flash_attention_fwd(q, k, v, block_m="64", block_n=16),
     r"block_m must be one of .*, got '64' \(str\)"),
    (lambda q, k, v: attention.flash_attention_fwd(q, k, v, block_m=16, block_n=8), "block_n must be one of"),
    (lambda q, k, v: attention.flash_attention_fwd(q, k, v, block_m=256, block_n=128),
     r"block_m \* block_n must be at most 16384"),
    (lambda q, k, v: attention.flash_attention_fwd(q, k, v, block_m=32), "give both block_m and block_n, or neither"),
])
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call(*Q)
