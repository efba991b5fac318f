"""GPU-only checks (-m gpu): the compiled kernels at larger sizes, bfloat16, every config the tuners
can pick, the traces compiled, and the Benchmarks page's live run. Skipped without CUDA."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kernels import attention, backend, flash_fwd, tuning
from kernels.trace import TraceConfig, capture_trace
from kernels.trace_backward import capture_backward_trace
from tests import test_backward, test_loop_orders, test_trace
from tests.helpers import check_forward, check_grads, rand, walk_blocks
from tests.test_masks import check_out, sees

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[1]
SIZES = [(1000, 64, torch.float16), (2048, 128, torch.float16), (4099, 64, torch.bfloat16), (77, 32, torch.float16),
         (1, 16, torch.float16), (1000, 128, torch.bfloat16), (333, 64, torch.float32)]


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("n,d,dtype", SIZES, ids=str)
def test_tuned_forward(n, d, dtype, causal):
    q, k, v = rand(2, 3, n, d, dtype, seed=n, device="cuda")
    check_forward(attention.flash_attention(q, k, v, causal=causal), q, k, v, causal, d ** -0.5, f"N={n} d={d}")


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("n,d,dtype", SIZES, ids=str)
def test_autograd(n, d, dtype, causal):
    q, k, v, do = rand(2, 3, n, d, dtype, seed=n, count=4, device="cuda")
    qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
    attention.flash_attention(qg, kg, vg, causal=causal).backward(do)
    check_grads((qg.grad, kg.grad, vg.grad), q, k, v, do, causal, d ** -0.5, f"GPU N={n} d={d} {dtype}")


@pytest.mark.parametrize("config", tuning.FORWARD_CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("d", [64, 128])
def test_every_forward_config(config, causal, d):
    if not config.fits(d):
        pytest.skip("not kept for this head_dim")
    for n in (1000, 1024):  # 1024: no masked loop unless causal
        for use_tma in (True, False):
            q, k, v = rand(1, 4, n, d, torch.float16, seed=n, device="cuda")
            out, _ = flash_fwd.launch(q, k, v, causal, d ** -0.5, config, use_tma=use_tma)
            check_forward(out, q, k, v, causal, d ** -0.5, f"{config.name} N={n} tma={use_tma}")


BWD = [(kernel, c) for kernel, cs in tuning.BACKWARD_CONFIGS.items() for c in cs]


@pytest.mark.parametrize("kernel,config", BWD, ids=[f"{k}-{c.name}" for k, c in BWD])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("d", [64, 128])
def test_every_backward_config(kernel, config, causal, d):
    if not config.fits(d):
        pytest.skip("not kept for this head_dim")
    from kernels import flash_bwd

    other = tuning.BACKWARD_CONFIGS["dq" if kernel == "dkdv" else "dkdv"][2]  # the other kernel at 64 x 64
    dkdv, dq = (config, other) if kernel == "dkdv" else (other, config)
    for n in (1000, 1024):
        q, k, v, do = rand(1, 4, n, d, torch.float16, seed=n, count=4, device="cuda")
        out, lse = attention.flash_attention_fwd(q, k, v, causal=causal, block_m=64, block_n=64)
        if kernel == "fused":
            delta = flash_bwd.preprocess(out, do)
            acc = torch.zeros(q.shape, dtype=torch.float32, device="cuda")
            dk, dv = flash_bwd.launch_dkdv(q, k, v, do, lse, delta, causal, d ** -0.5, config, dq_acc=acc)
            got = (acc.to(q.dtype), dk, dv)
        else:
            got = flash_bwd.launch(q, k, v, out, lse, do, causal, d ** -0.5, dkdv, dq)[:3]
        check_grads(got, q, k, v, do, causal, d ** -0.5, f"{kernel} {config.name} N={n}")


def test_torch_compile_and_cuda_graph_take_the_op():
    """A small model with the torch.library op compiles with torch.compile and replays from a CUDA graph."""
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(64, 3 * 64, device="cuda", dtype=torch.float16)

        def forward(self, x):  # (batch, seq, 64) -> one head of 64
            q, k, v = self.proj(x).unsqueeze(1).chunk(3, dim=-1)
            return attention.flash_attention(q.contiguous(), k.contiguous(), v.contiguous(), causal=True).sum()

    model = Block()
    x = torch.randn(2, 256, 64, device="cuda", dtype=torch.float16)
    eager = model(x)
    compiled = torch.compile(model, fullgraph=True)
    got = compiled(x)
    got.backward()
    assert torch.allclose(got.float(), eager.float(), rtol=1e-2, atol=1e-1), (float(got), float(eager))
    q, k, v = (torch.randn(2, 4, 512, 64, device="cuda", dtype=torch.float16) for _ in range(3))
    attention.flash_attention(q, k, v)  # tune and compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = attention.flash_attention(q, k, v)
    q.copy_(torch.randn_like(q))
    graph.replay()
    check_forward(out, q, k, v, False, 0.125, "replayed from a CUDA graph")


def test_pointer_path_on_gpu():
    # strides the copy engine cannot take (a non-dense last dimension) fall back to pointer loads
    q, k, v = (t.transpose(-1, -2).contiguous().transpose(-1, -2) for t in rand(1, 2, 300, 64, torch.float16, 1, device="cuda"))
    assert q.stride(-1) != 1 and not flash_fwd.tma_supported(q, k, v)
    check_forward(attention.flash_attention(q, k, v, causal=True), q, k, v, True, 0.125, "pointer path")


@pytest.mark.parametrize("kw", [
    dict(seq_len=1000, head_dim=64, block_m=64, block_n=64, causal=True, dtype="float16", scenario="increasing"),
    dict(seq_len=777, head_dim=128, block_m=128, block_n=64, causal=False, dtype="bfloat16"),
    dict(seq_len=2048, head_dim=64, block_m=32, block_n=128, causal=True, dtype="float32", scenario="large"),
    dict(seq_len=4096, head_dim=64, block_m=128, block_n=128, causal=True, dtype="float16"),
], ids=lambda k: f"N{k['seq_len']}-{k['block_m']}x{k['block_n']}-{k['dtype']}")
def test_forward_trace(kw):
    tr = capture_trace(TraceConfig(**kw))
    assert "compiled" in tr.device
    test_trace.test_visited_tiles(tr)
    test_trace.test_running_state_invariants(tr)
    test_trace.test_tiles_match_float64(tr)
    test_trace.test_counters_equal_model(tr)


def test_forward_trace_extreme_blocks_and_one_slot():
    for bm, bn, d in [(256, 64, 128), (16, 256, 64), (128, 128, 128), (16, 16, 16)]:
        tr = capture_trace(TraceConfig(seq_len=300, head_dim=d, block_m=bm, block_n=bn, dtype="float32"))
        assert tr.max_abs_err < 2e-6, f"{bm}x{bn} d={d}: error {tr.max_abs_err}"
    # one q-block asked for: n_slots == 1 must not be specialized into a constant
    tr = capture_trace(TraceConfig(seq_len=4096, head_dim=64, block_m=64, block_n=64, dtype="float16"), q_blocks=[5])
    assert list(tr.tile_q_blocks) == [5] and np.isfinite(tr.s[0]).all()
    test_trace.test_tiles_match_float64(tr)


@pytest.mark.parametrize("kw", [
    dict(seq_len=1000, head_dim=64, block_m=64, block_n=64, causal=True, dtype="float16", scenario="increasing"),
    dict(seq_len=777, head_dim=128, block_m=128, block_n=64, causal=False, dtype="bfloat16"),
    dict(seq_len=515, head_dim=64, block_m=32, block_n=128, causal=True, dtype="float32", scenario="large"),
], ids=lambda k: f"N{k['seq_len']}-{k['block_m']}x{k['block_n']}-{k['dtype']}")
def test_backward_trace(kw):
    tr = capture_backward_trace(TraceConfig(**kw))
    assert "compiled" in tr.device
    test_backward.check_trace(tr)
    test_backward.test_trace_counters_equal_model(tr)


def test_backward_trace_with_one_slot_and_large_n():
    tr = capture_backward_trace(TraceConfig(seq_len=4096, head_dim=64, block_m=64, block_n=64, dtype="float16",
                                            causal=True), kv_blocks=[5])
    assert list(tr.tile_kv_blocks) == [5] and np.isfinite(tr.p[0, walk_blocks(tr, 5)]).all()
    test_backward.test_trace_counters_equal_model(tr)
    for name, err in tr.max_abs_errs().items():  # float16 gradients: a few ulps of the largest one
        bound = 4e-3 * max(1.0, float(np.abs(getattr(tr, "ref_" + name)).max()))
        assert err < bound, f"{name}: error {err:.3g} against float64, bound {bound:.3g}"


@pytest.mark.parametrize("kw", [
    dict(seq_len=1000, head_dim=64, block_m=64, block_n=64, causal=True, dtype="float16", loop_order="fa1"),
    dict(seq_len=777, head_dim=128, block_m=128, block_n=64, causal=False, dtype="bfloat16", loop_order="fa1"),
    dict(seq_len=1000, head_dim=64, block_m=64, block_n=64, causal=True, dtype="float16", kv_splits=5),
    dict(seq_len=2048, head_dim=128, block_m=128, block_n=64, causal=False, dtype="bfloat16", kv_splits=8,
         scenario="large"),
], ids=lambda k: f"N{k['seq_len']}-{k['dtype']}-{k.get('loop_order', 'fa2')}-S{k.get('kv_splits', 1)}")
def test_loop_orders_and_split_kv(kw):
    cfg = TraceConfig(**kw)
    if cfg.loop_order == "fa1":
        test_loop_orders.test_fa1_order_steps_match_float64(cfg)
    else:
        test_loop_orders.test_split_kv_partials_and_merge_match_float64(cfg)


def test_backend_describes_gpu():
    assert not backend.INTERPRET and "compiled" in backend.describe()
    assert torch.cuda.get_device_name() in backend.describe()


def test_live_benchmark_of_the_page(tmp_path):
    """What the page's Run button starts: `python -m bench --small` in a child process."""
    path = tmp_path / "small.json"
    out = subprocess.run([sys.executable, "-m", "bench", "--small", "--json", str(path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    progress = [float(line.split()[1]) for line in out.stderr.splitlines() if line.startswith("progress ")]
    assert progress[0] == 0.0 and progress[-1] == 1.0 and progress == sorted(progress)
    result = json.loads(path.read_text())
    ours = [r for r in result["attention"] if r["impl"] == "ours"]
    assert len(ours) == 4 and all(r["max_err_vs_sdpa_efficient"] < 1e-2 and r["tflops"] > 0 for r in ours)
    assert {r["impl"] for r in result["softmax"]} >= {"copy", "torch", "single_pass", "online"}
    print(f"\nbench --small took {result['seconds']:.1f} s")


def test_backward_benchmark_runs():
    from bench.backward import bench_backward

    rows = bench_backward([256, 1000], [64], batch=1, heads=2)
    ours = [r for r in rows if r["impl"] == "ours"]
    assert len(ours) == 4 and all(r["tflops"] and r["tflops"] > 0 for r in ours), ours
    assert all(r["max_grad_err_vs_sdpa_efficient"] < 0.1 for r in ours), ours
    # replayed from a CUDA graph: measured (a time; how it compares with the eager call is the
    # benchmark's to report, not a test's to assert: on a shared GPU either can be the slower)
    assert all(r["graph_ms"] > 0 for r in rows if r.get("tflops")), rows


def test_softmax_backward_row_kernel():
    """The worked example's kernel, compiled: dS = P o (dP - D) against the float64 Jacobian form."""
    from kernels import reference, softmax_bwd

    rng = np.random.default_rng(0)
    for n in (1, 3, 100, 1000):
        p = rng.random(n)
        p /= p.sum()
        dp = rng.standard_normal(n)
        ds, d = softmax_bwd.softmax_backward(p, dp)
        want = reference.softmax_backward_row(p.astype(np.float32).astype(np.float64),
                                             dp.astype(np.float32).astype(np.float64))
        assert abs(d - want["d"]) < 1e-5 * max(1, abs(want["d"]))
        assert np.max(np.abs(ds - want["ds_jacobian"])) < 1e-5


def test_launch_plans_launch_what_triton_would(monkeypatch):
    """Issue 22's direct launches: each one asks triton's own lookup too (CHECK_PLANS) and must find
    the kernel the plan holds. Calls repeat so the second of each goes direct; fresh data each time
    (a stale argument would give the earlier call's result), a view 2 bytes off 16-byte alignment
    (another specialization), GQA with a window, and gradients."""
    from kernels import launch

    monkeypatch.setattr(launch, "CHECK_PLANS", True)
    before = dict(launch.plan_stats)
    flat = torch.randn(3 * 2 * 4 * 333 * 64 + 1, device="cuda", dtype=torch.float16)
    shifted = [flat[1 + i * 2 * 4 * 333 * 64:1 + (i + 1) * 2 * 4 * 333 * 64].view(2, 4, 333, 64) for i in range(3)]
    assert shifted[0].data_ptr() % 16 != 0
    for seed in (1, 2):
        q, k, v = rand(2, 4, 333, 64, torch.float16, seed=seed, device="cuda")
        check_forward(attention.flash_attention(q, k, v, causal=True), q, k, v, True, 0.125, f"plans seed {seed}")
        check_forward(attention.flash_attention(*shifted, causal=True), *shifted, True, 0.125, "plans misaligned")
        kg, vg = rand(2, 2, 333, 64, torch.float16, seed=seed + 10, count=2, device="cuda")
        out, lse = attention.flash_attention_fwd(q, kg, vg, window_size=(50, 0))
        check_out(out, lse, q, kg, vg, sees(333, 333, False, (50, 0), ()).cuda(), 0.125, f"plans GQA window {seed}")
        q, k, v, do = rand(2, 3, 300, 128, torch.float16, seed=seed, count=4, device="cuda")
        qg, kg2, vg2 = (t.clone().requires_grad_() for t in (q, k, v))
        attention.flash_attention(qg, kg2, vg2, causal=True).backward(do)
        check_grads((qg.grad, kg2.grad, vg2.grad), q, k, v, do, True, 128 ** -0.5, f"plans grads seed {seed}")
    direct = launch.plan_stats["direct"] - before["direct"]
    assert direct >= 8 and launch.plan_stats["checked"] - before["checked"] == direct, (before, launch.plan_stats)



@pytest.mark.parametrize("n,d,dtype", [(333, 64, torch.float16), (1000, 128, torch.bfloat16)], ids=str)
def test_graphs_replay_the_eager_kernels_and_keep_each_call_s_own(n, d, dtype):
    """Issue 22's CUDA graphs (kernels/graphs.py): from a shape's second call its forward and
    backward replay. Two calls of one shape interleaved as a network's layers are (forward a,
    forward b, backward b, backward a) each get their own output and gradients; inputs that are
    transposed views; a second backward (retain_graph) adds the same gradients again."""
    from kernels import graphs

    graphs.release()
    before = dict(graphs.stats)
    scale = d ** -0.5

    def inputs(seed):
        q, k, v, do = (t.transpose(1, 2).contiguous().transpose(1, 2)  # (b, n, h, d) memory, like a model's
                       for t in rand(2, 3, n, d, dtype, seed=seed, count=4, device="cuda"))
        return q, k, v, do, [t.clone().requires_grad_() for t in (q, k, v)]

    *_, first = inputs(0)
    attention.flash_attention(*first, causal=True).sum().backward()  # first sight: eager, tunes
    qa, ka, va, do_a, a = inputs(1)
    qb, kb, vb, do_b, b = inputs(2)
    out_a = attention.flash_attention(*a, causal=True)
    out_b = attention.flash_attention(*b, causal=True)
    out_b.backward(do_b)
    out_a.backward(do_a)
    got = {key: graphs.stats[key] - before[key] for key in graphs.stats}
    assert got["captured"] == 2 and got["forward"] == 2 and got["backward"] == 2, got
    check_forward(out_a.detach(), qa, ka, va, True, scale, f"graphed call a N={n}")
    check_forward(out_b.detach(), qb, kb, vb, True, scale, f"graphed call b N={n}")
    check_grads([t.grad for t in a], qa, ka, va, do_a, True, scale, f"graphed call a N={n}")
    check_grads([t.grad for t in b], qb, kb, vb, do_b, True, scale, f"graphed call b N={n}")
    qc, kc, vc, do_c, c = inputs(3)
    out_c = attention.flash_attention(*c, causal=True)
    out_c.backward(do_c, retain_graph=True)
    out_c.backward(do_c)
    assert graphs.stats["backward_eager"] - before["backward_eager"] == 1
    check_grads([t.grad / 2 for t in c], qc, kc, vc, do_c, True, scale, f"graphed call c twice N={n}")
    assert graphs.stats["captured"] - before["captured"] == 2  # c took a slot a or b gave back
    graphs.release()
