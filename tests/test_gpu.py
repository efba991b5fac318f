"""GPU-only checks (-m gpu): the compiled kernels at larger sizes, bfloat16, every autotune config."""
import math

import numpy as np
import pytest
import torch

from kernels import attention, backend
from kernels.trace import TraceConfig, capture_trace
from tests import test_trace

pytestmark = pytest.mark.gpu
FLOOR = {torch.float32: 2e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}


def ref64(q, k, v, causal, scale):
    s = (q.double() @ k.double().transpose(-1, -2)) * scale
    if causal:
        n = s.shape[-1]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool, device=s.device).triu(1), float("-inf"))
    return torch.softmax(s, dim=-1) @ v.double()


def check(out, q, k, v, causal, what):
    scale = 1 / math.sqrt(q.shape[-1])
    ref = ref64(q, k, v, causal, scale)
    assert not torch.isnan(out).any(), f"{what}: NaN in output"
    err = float((out.double() - ref).abs().max())
    # PyTorch's own attention in this dtype on this GPU (SDPA, MATH backend) is the yardstick
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        theirs = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch_err = float((theirs.double() - ref).abs().max())
    bound = 2 * torch_err + FLOOR[q.dtype]
    assert err <= bound, f"{what}: max error {err:.3g} against float64, bound {bound:.3g}"


def rand(b, h, n, d, dtype):
    return [torch.randn(b, h, n, d, device="cuda", dtype=dtype) for _ in range(3)]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n,d,dtype", [
    (1000, 64, torch.float16), (2048, 128, torch.float16), (4099, 64, torch.float16), (77, 32, torch.float16),
    (1, 16, torch.float16), (1000, 128, torch.bfloat16), (333, 64, torch.float32),
])
def test_autotuned_forward(n, d, dtype, causal):
    q, k, v = rand(2, 3, n, d, dtype)
    check(attention.flash_attention(q, k, v, causal=causal), q, k, v, causal, f"autotuned N={n} d={d}")


@pytest.mark.parametrize("config", attention.TUNED_CONFIGS, ids=str)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d", [64, 128])
def test_every_autotune_config(config, causal, d):
    if config not in attention._keep(attention.TUNED_CONFIGS, {"HEAD_DIM": d, "USE_TMA": True, "DOT_PRECISION": "tf32"}):
        pytest.skip("pruned for this head_dim")
    for n in (1000, 1024):
        q, k, v = rand(1, 4, n, d, torch.float16)
        out, _ = attention.launch_config(q, k, v, causal, d ** -0.5, config, use_tma=True)
        check(out, q, k, v, causal, f"config {config} N={n}")  # 1024: no masked loop unless causal


@pytest.mark.parametrize("causal", [False, True])
def test_split_configs_on_pointer_loads(causal):
    # below seq_len 4096 the tuner launches with pointer loads, the split configs included
    split = [c for c in attention.TUNED_CONFIGS if c.kwargs["SPLIT"] == 2]
    assert split
    for config in split:
        d = config.kwargs["HEAD_DIMS"][-1]
        for n in (1000, 2048):
            q, k, v = rand(1, 4, n, d, torch.float16)
            out, _ = attention.launch_config(q, k, v, causal, d ** -0.5, config, use_tma=False)
            check(out, q, k, v, causal, f"config {config} pointer loads N={n}")


def test_pointer_path_on_gpu():
    # strides the copy engine cannot take (a non-dense last dimension) fall back to pointer loads
    q, k, v = (t.transpose(-1, -2).contiguous().transpose(-1, -2) for t in rand(1, 2, 300, 64, torch.float16))
    assert q.stride(-1) != 1 and not attention.tma_supported(q, k, v)
    check(attention.flash_attention(q, k, v, causal=True), q, k, v, True, "pointer path")


@pytest.mark.parametrize("kw", [
    dict(seq_len=1000, head_dim=64, block_m=64, block_n=64, causal=True, dtype="float16", scenario="increasing"),
    dict(seq_len=777, head_dim=128, block_m=128, block_n=64, causal=False, dtype="bfloat16"),
    dict(seq_len=2048, head_dim=64, block_m=32, block_n=128, causal=True, dtype="float32", scenario="large"),
    dict(seq_len=4096, head_dim=64, block_m=128, block_n=128, causal=True, dtype="float16"),
], ids=lambda k: f"N{k['seq_len']}-{k['block_m']}x{k['block_n']}-{k['dtype']}")
def test_trace_on_gpu(kw):
    tr = capture_trace(TraceConfig(**kw))
    assert "compiled" in tr.device
    test_trace.test_visited_tiles(tr)
    test_trace.test_running_state_invariants(tr)
    test_trace.test_tiles_match_float64(tr)
    test_trace.test_counters_equal_model(tr)


def test_trace_extreme_blocks_compile():
    for bm, bn, d in [(256, 64, 128), (16, 256, 64), (128, 128, 128), (16, 16, 16)]:
        tr = capture_trace(TraceConfig(seq_len=300, head_dim=d, block_m=bm, block_n=bn, dtype="float32"))
        assert tr.max_abs_err < 2e-6, f"{bm}x{bn} d={d}: error {tr.max_abs_err}"


def test_backend_describes_gpu():
    assert not backend.INTERPRET and "compiled" in backend.describe()
    assert torch.cuda.get_device_name() in backend.describe()


def test_trace_with_one_tile_slot():
    # one q-block asked for: n_slots == 1 must not be specialized into a constant
    tr = capture_trace(TraceConfig(seq_len=4096, head_dim=64, block_m=64, block_n=64, dtype="float16"), q_blocks=[5])
    assert list(tr.tile_q_blocks) == [5] and np.isfinite(tr.s[0]).all()
    test_trace.test_tiles_match_float64(tr)


def test_small_run_of_the_benchmarks_page(capsys):
    """What the page's Run button calls (viz.state.live_benchmark holds the lock around it)."""
    from kernels import bench

    seen = []
    result = bench.small_run(lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    ours = [r for r in result["attention"] if r["impl"] == "ours"]
    assert len(ours) == 4 and all(r["max_err_vs_sdpa_efficient"] < 1e-2 and r["tflops"] > 0 for r in ours)
    assert {r["impl"] for r in result["softmax"]} >= {"copy", "torch", "single_pass", "online"}
    assert bench.table(result)
    with capsys.disabled():
        print(f"\nsmall_run took {result['seconds']:.1f} s")
