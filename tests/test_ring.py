"""Ring attention (kernels/ring*.py) on gloo ranks, the kernel in Triton's interpreter: P = 2, 3, 4
on sequences whose chunks are not multiples of the blocks, causal and not, both shardings, float32
and float16, against float64, PyTorch's own attention and the single-device kernel; the plan each
rank followed; the merge against split-KV's; the torchrun entry point; a rank that raises, dies or
hangs named within the timeout; world sizes that do not fit the sequence refused before a process
starts. One LocalRing per world size carries the runs (starting ranks costs more than running them)."""
import dataclasses
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kernels import backend, reference, ring, ring_local, ring_plan, ring_verify, scenes, trace_io, truth
from kernels.attention import flash_attention_fwd
from kernels.ring_plan import FULL, SKIPPED, RingConfig
from kernels.ring_trace import step_view

ROOT = Path(__file__).resolve().parents[1]
U32 = truth.U32
CASES = [  # world size, seq_len, causal, layout, dtype, head_dim, (block_m, block_n): chunks of 69, 35, 47, 23, 25, 25
    (2, 138, False, "contiguous", torch.float32, 16, (16, 32)),
    (2, 140, True, "zigzag", torch.float16, 32, (16, 16)),
    (3, 141, True, "contiguous", torch.float32, 16, (32, 16)),
    (3, 138, False, "zigzag", torch.float16, 16, (16, 16)),
    (4, 200, True, "zigzag", torch.float32, 16, (16, 16)),
    (4, 100, False, "contiguous", torch.float16, 32, (16, 16)),
]


@pytest.fixture(scope="module")
def rings():
    started = {}
    yield lambda p: started.setdefault(p, ring_local.LocalRing(p))
    for r in started.values():
        r.close()


def _inputs(n: int, d: int, dtype, seed: int):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, d, generator=g).to(dtype) for _ in range(3))


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"P{c[0]}-N{c[1]}-{'causal' if c[2] else 'full'}-{c[3]}-"
                                                      f"{str(c[4])[6:]}")
def test_ring_matches_float64_and_the_single_device_kernel(rings, case):
    p, n, causal, layout, dtype, d, (bm, bn) = case
    q, k, v = _inputs(n, d, dtype, seed=n + p)
    out, trace = ring_local.run_local(q, k, v, p, causal, layout=layout, block_m=bm, block_n=bn, ring=rings(p))
    assert out.dtype == dtype and out.shape == (n, d)
    ref = reference.attention_rows(q.double(), k.double(), v.double(), causal, d ** -0.5)
    qd, kd, vd = (x.to(backend.DEVICE)[None, None] for x in (q, k, v))
    single, single_lse = flash_attention_fwd(qd, kd, vd, causal=causal, block_m=bm, block_n=bn)
    single, single_lse = single[0, 0].double().cpu().numpy(), single_lse[0, 0].double().cpu().numpy()
    sdpa = F.scaled_dot_product_attention(qd, kd, vd, is_causal=causal)[0, 0].cpu()
    got = out.double().numpy()
    err, err_single, err_torch = (float(np.abs(x - ref["out"]).max()) for x in (got, single, sdpa.double().numpy()))
    # the ring's partial outputs are the single-device kernel's on chunks; merging them adds float32
    # rounding of each merge (a convex combination of P (Cr + 1) parts at most): judged against what
    # PyTorch's own attention and the single-device kernel get in this dtype on the same inputs
    merges = 8 * p * (trace.config.chunks_per_rank + 1) * U32 * max(1.0, float(np.abs(ref["out"]).max()))
    assert err <= 2 * max(err_torch, err_single) + merges, (
        f"ring {err:.3g} against float64; PyTorch {err_torch:.3g}, single-device kernel {err_single:.3g}")
    # elementwise: both kernels round p to the dtype before P V (each against its own running max, so
    # differently) and round out once; the merges add float32 rounding
    unit = truth.UNIT[str(dtype)[6:]]
    pv = np.abs(reference.attention(q.double(), k.double(), v.double(), causal, d ** -0.5)["p"]) @ np.abs(v.double().numpy())
    apart = np.abs(got - single) - (2 * unit * (pv + np.abs(single)) + merges + truth.SUBNORMAL[str(dtype)[6:]])
    assert (apart <= 0).all(), f"ring and single-device kernel differ by {np.abs(got - single).max():.3g}"
    assert np.abs(trace.lse - ref["lse"]).max() <= 1e-5 * max(1.0, float(np.abs(ref["lse"]).max()))
    assert np.abs(trace.lse - single_lse).max() <= 16 * p * U32 * max(1.0, float(np.abs(single_lse).max()))
    _check_plan(trace)
    back = trace_io.load(io.BytesIO(trace_io.to_bytes(trace)), "round trip")
    assert np.array_equal(back.part_m, trace.part_m) and np.array_equal(back.out, trace.out)


def _check_plan(trace) -> None:
    """What the trace says each rank did is the ring's plan: the held shards, the skipped pairs, the
    work per rank, the bytes on the wire."""
    c = trace.config
    p = c.world_size
    assert [[int(trace.held[r, t]) for t in range(p)] for r in range(p)] == [[(r - t) % p for t in range(p)]
                                                                             for r in range(p)]
    computed = (trace.kinds != SKIPPED).sum(axis=(2, 3))  # (P, P) pairs per rank and step
    if not c.causal:
        assert (trace.kinds == FULL).all()
    elif c.layout == "contiguous":  # rank r computes its own shard and the r before it; the rest is future
        assert computed.sum(axis=1).tolist() == [r + 1 for r in range(p)]
        assert (trace.k_loads[0, 1:] == 0).all() and (trace.k_loads[-1] > 0).all()
    else:  # zig-zag: the same keys for every rank at every step after the first
        assert (trace.k_loads[:, 1:] == trace.k_loads[0, 1]).all() and len(set(trace.k_loads.sum(axis=1))) == 1
    itemsize = 4 if c.dtype == "float32" else 2  # float16 and bfloat16 both 2 bytes
    assert (trace.sent_bytes[:, :-1] == 2 * c.rows_per_rank * c.head_dim * itemsize + 8).all()
    assert (trace.sent_bytes[:, -1] == 0).all()


def test_generated_inputs_and_a_ragged_chunk(rings):
    """run_config: the inputs the config's scenario makes (the loader checks they are), a chunk of 23
    rows in 16-row blocks, and the followed rows narrowed to a few."""
    cfg = RingConfig(seq_len=138, head_dim=16, world_size=3, causal=True, layout="zigzag", scenario="increasing",
                     seed=4)
    out, trace = ring_local.run_config(cfg, rows=[0, 22, 23, 137], ring=rings(3))
    assert trace.rows.tolist() == [0, 22, 23, 137] and trace.part_o.shape == (4, 3, 2, 16)
    assert trace.max_abs_err <= ring_verify.bound(cfg) * max(1.0, float(np.abs(trace.ref_out).max()))
    assert trace.transport.startswith("gloo · 3 processes on one machine")
    assert trace.transport.endswith("CPU tensors" if backend.INTERPRET else "each shard staged through host memory")


# ---------------------------------------------------------------- the merge is split-KV's
def test_the_merge_is_split_kv_s():
    """The ring's merge (ring.merge) against reference.merge_states row by row, and against the split-KV merge kernel
    (kernels/flash_merge.py) on the same partials, dead parts included."""
    from kernels import flash_merge

    g = torch.Generator().manual_seed(0)
    s, rows, d = 3, 40, 16
    m_s = torch.randn(s, rows, generator=g) * 3
    l_s = torch.rand(s, rows, generator=g) * 5 + 0.1
    m_s[1, :10], l_s[1, :10] = float("-inf"), 0.0  # a part that saw none of these rows' keys
    o_s = torch.randn(s, rows, d, generator=g)
    big_m, big_l, o = ring.merge(m_s, l_s, o_s)
    for r in range(rows):
        want = reference.merge_states(m_s[:, r].numpy(), l_s[:, r].numpy())
        assert abs(big_m[r].item() - want["M"]) <= 4 * U32 * max(1.0, abs(want["M"]))
        assert abs(big_l[r].item() - want["L"]) <= 8 * s * U32 * want["L"]
        o64 = (want["terms"] / want["L"]) @ o_s[:, r].double().numpy()
        assert np.abs(o[r].double().numpy() - o64).max() <= 8 * (s + 2) * U32 * o_s[:, r].abs().max().item()
    dev = backend.DEVICE
    out, lse = torch.empty(1, 1, rows, d, device=dev), torch.empty(1, 1, rows, device=dev)
    flash_merge.merge(o_s[None].contiguous().to(dev), torch.stack([m_s, l_s]).contiguous().to(dev), out, lse, s)
    assert torch.allclose(out[0, 0].cpu(), o, atol=1e-6, rtol=1e-5)
    assert torch.allclose(lse[0, 0].cpu(), big_m + torch.log(big_l), atol=1e-5)


# ---------------------------------------------------------------- refusals, before any process starts
def test_world_sizes_that_do_not_fit_are_refused():
    q, k, v = _inputs(100, 16, torch.float32, 0)
    with pytest.raises(ValueError, match=r"world_size=3 does not fit seq_len=100: the zigzag layout cuts the sequence "
                                         r"into 6 equal chunks .* multiple of 6 \(nearest: 96 or 102\); world sizes "
                                         r"that fit seq_len 100 with this layout: 2, 5$"):
        ring_local.run_local(q, k, v, 3, causal=True)
    with pytest.raises(ValueError, match="contiguous layout .* world sizes that fit seq_len 100 with this layout: 2, 4, 5"):
        ring_local.run_local(q, k, v, 3, causal=False)
    for bad in (1, 9):
        with pytest.raises(ValueError, match=f"world_size must be between 2 and 8, got {bad}"):
            ring_local.run_local(q, k, v, bad)
    with pytest.raises(ValueError, match=r"world_size=8 does not fit seq_len=4: .* world sizes that fit seq_len 4"
                                         r" with this layout: 2, 4$"):
        ring_local.run_local(*_inputs(4, 16, torch.float32, 0), 8, causal=True, layout="contiguous")
    with pytest.raises(ValueError, match="layout must be one of 'contiguous', 'zigzag', got 'ring' \\(str\\)"):
        ring_local.run_local(q, k, v, 2, layout="ring")
    with pytest.raises(ValueError, match=r"q must be a torch.Tensor \(seq_len, head_dim\)"):
        ring_local.run_local(q[None], k, v, 2)
    with pytest.raises(ValueError, match="timeout must be a finite number > 0, got -1.0"):
        ring_local.run_local(q, k, v, 2, timeout=-1.0)
    with pytest.raises(ValueError, match="fault must be ring.Fault"):
        ring_local.run_local(q, k, v, 2, fault=ring.Fault(5, 0, "raise"))
    with pytest.raises(ValueError, match="world_size must be between 2 and 8, got 12"):
        ring_local.LocalRing(12)


# ---------------------------------------------------------------- a rank that fails is named
def _fails(fault, timeout: float = 60.0):
    """(the exception, seconds from handing the run to the ranks to the refusal)."""
    cfg = RingConfig(seq_len=64, head_dim=16, world_size=2, causal=True, layout="zigzag")
    local = ring_local.LocalRing(2)
    t0 = time.monotonic()
    with pytest.raises(ring_local.RankFailure) as e:
        ring_local.run_config(cfg, timeout=timeout, fault=fault, ring=local)
    took = time.monotonic() - t0
    assert local.broken and not any(p.is_alive() for p in local.procs), "the ranks are ended"
    return e.value, took


def test_a_rank_that_raises_is_named():
    e, took = _fails(ring.Fault(1, 1, "raise"))
    assert e.ranks == (1,) and "rank 1 failed in ring step 2: RuntimeError: fault injected" in str(e), e
    assert took < 20, f"{took:.1f} s to name it"


def test_a_rank_that_dies_is_named():
    e, took = _fails(ring.Fault(0, 1, "exit"))
    assert e.ranks == (0,) and "rank 0 died (exit code 3) without a message" in str(e), e
    assert took < 20


def test_a_rank_that_hangs_is_named_within_the_timeout():
    e, took = _fails(ring.Fault(1, 1, "hang"), timeout=3.0)
    assert isinstance(e, ring_local.RankTimeout) and e.ranks == (1,), e
    assert "did not finish within 3 s: rank 1 was computing ring step 2 of 2 and went no further" in str(e), e
    assert 3.0 <= took < 3.0 + ring_local.GRACE + 5, f"named after {took:.1f} s (timeout 3 s)"


# ---------------------------------------------------------------- on GPUs (-m gpu)
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_ranks_sharing_one_gpu_over_gloo(dtype):
    """Four ranks on the GPU(s) of this machine, the compiled kernel; gloo stages each shard through
    host memory when they share a GPU, NCCL when each has its own."""
    import torch.cuda

    cfg = RingConfig(seq_len=4096, head_dim=64, world_size=4, causal=True, layout="zigzag", block_m=64, block_n=64,
                     dtype=dtype)
    _, trace = ring_local.run_config(cfg, timeout=300)
    want = "nccl" if torch.cuda.device_count() >= 4 else "gloo"
    assert trace.transport.startswith(want) and "compiled" in trace.device, (trace.transport, trace.device)
    assert trace.max_abs_err <= ring_verify.bound(cfg) * max(1.0, float(np.abs(trace.ref_out).max()))
    _check_plan(trace)


@pytest.mark.gpu
def test_nccl_one_rank_per_gpu():
    import torch.cuda

    n = min(torch.cuda.device_count(), 8)
    if n < 2:
        pytest.skip("NCCL ring needs two GPUs or more (one rank per GPU)")
    cfg = RingConfig(seq_len=2 * n * 512, head_dim=128, world_size=n, causal=True, layout="zigzag", block_m=64,
                     block_n=64, dtype="float16")  # chunks of 512 rows
    _, trace = ring_local.run_config(cfg, timeout=300)
    assert trace.transport.startswith(f"nccl · {n} processes") and "one GPU per rank" in trace.transport
    assert trace.max_abs_err <= ring_verify.bound(cfg) * max(1.0, float(np.abs(trace.ref_out).max()))
    _check_plan(trace)


# ---------------------------------------------------------------- torchrun, the shipped scenes
def test_the_torchrun_entry_point(tmp_path):
    """`torchrun --standalone --nproc_per_node=2 -m kernels.ring`: real ranks over gloo, rank 0 writes the trace."""
    path = tmp_path / "trace.npz"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                           "kernels.ring", "--seq-len", "92", "--head-dim", "16", "--causal", "--block-m", "16",
                           "--block-n", "16", "--dtype", "float32", "--timeout", "120", "--out", str(path)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trace = trace_io.load(path)
    assert trace.config.layout == "zigzag" and trace.config.world_size == 2 and "on one host" in trace.transport
    assert "max |out - float64|" in proc.stdout and trace.max_abs_err < 1e-5


RING_SCENES = [s for s in scenes.read_manifest()[0] if s.page == "ring"]


@pytest.mark.parametrize("scene", RING_SCENES, ids=lambda s: s.name)
def test_every_ring_scene_holds_at_every_step_and_row(scene):
    trace = scenes.load_scene(scene)
    assert scene.recorded and trace.device in scene.recorded and trace.transport in scene.recorded
    assert scene.step <= trace.config.world_size and scene.row in trace.rows
    bad = [x for row in trace.rows for t in range(trace.config.world_size)
           for x in ring_verify.step_checks(trace, step_view(trace, t, int(row))) if not x.ok]
    assert not bad, f"{len(bad)} equations do not hold, e.g. {bad[0]}"


def test_the_checks_fail_on_a_changed_number():
    trace = scenes.load_scene(RING_SCENES[0])
    row, t = int(trace.rows[len(trace.rows) // 2]), 1
    rank, local = trace.config.owner(row)
    for name, idx in (("merged_l", (rank, t, local)), ("merged_m", (rank, t, local)), ("merged_o", None)):
        arr = getattr(trace, name).copy()
        if idx is None:
            arr[trace.row_slot(row), t, 0] += 1e-3
        else:
            arr[idx] *= 1.001
        changed = dataclasses.replace(trace, **{name: arr})
        assert [x for x in ring_verify.step_checks(changed, step_view(changed, t, row)) if not x.ok], \
            f"a changed {name} went unnoticed"


def test_the_plan_of_a_recorded_config():
    """The zig-zag plan: rank r holds chunks r and 2P - 1 - r; each of its steps after the first is two
    full pairs and two skipped; contiguous leaves rank 0 one step."""
    z = RingConfig(seq_len=256, world_size=4, layout="zigzag", causal=True)
    assert [z.rank_chunks(r) for r in range(4)] == [(0, 7), (1, 6), (2, 5), (3, 4)]
    assert z.kinds(1, 0).tolist() == [[2, 0], [1, 2]] and all(
        sorted(z.kinds(r, t).ravel().tolist()) == [0, 0, 1, 1] for r in range(4) for t in range(1, 4))
    c = RingConfig(seq_len=256, world_size=4, layout="contiguous", causal=True)
    assert [[int(c.kinds(0, t)[0, 0]) for t in range(4)]] == [[2, 0, 0, 0]]
    assert c.owner(70) == (1, 6) and z.owner(200) == (1, 40)  # chunk 6 (rank 1's second), its row 8
    assert ring_plan.allowed_world_sizes(96, "zigzag") == [2, 3, 4, 6, 8]
