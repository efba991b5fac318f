"""kernels/graphs.py on CPU: which slot a call holds, when it is given back, and that every
gradient is its own call's, with CUDA graphs stood in for by a recording that replays the same
functions into the same static outputs (what a graph replay does), around the interpreter's
kernels. The GPU test (tests/test_gpu.py) replays real graphs."""
import gc

import pytest
import torch

from kernels import attention, graphs


class _Recording:
    """A CUDA graph's behaviour: outputs allocated once, rewritten in place on every replay."""

    def __init__(self, fn):
        self.fn = fn
        self.outputs = fn()

    def replay(self):
        for dst, src in zip(self.outputs, self.fn(), strict=True):
            dst.copy_(src)


@pytest.fixture
def recorded(monkeypatch):
    def capture(fn):
        graph = _Recording(fn)
        return graph, graph.outputs

    monkeypatch.setattr(graphs, "_capture", capture)
    monkeypatch.setattr(graphs, "_warm_up", lambda fn: fn())
    monkeypatch.setattr(graphs, "usable", lambda q, k, docs: docs is None)
    monkeypatch.setattr(graphs, "stats", dict.fromkeys(graphs.stats, 0))
    graphs.release()
    yield graphs.stats
    graphs.release()


def _inputs(seed, n=40, d=16, heads=2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, heads, n, d, generator=g, dtype=torch.float32).requires_grad_() for _ in range(3)]


def _want(q, k, v, do, causal):
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    s = q64 @ k64.transpose(-1, -2) / q64.shape[-1] ** 0.5
    if causal:
        n = s.shape[-1]
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    out = torch.softmax(s, dim=-1) @ v64
    out.backward(do.double())
    return out.detach(), q64.grad, k64.grad, v64.grad


def _check(out, q, k, v, want):
    for got, w in zip((out, q.grad, k.grad, v.grad), want, strict=True):
        assert (got.double() - w).abs().max() < 2e-5  # float32 in the interpreter, exact tl.dot


def test_second_call_replays_and_interleaved_calls_keep_their_own_gradients(recorded):
    """Two 'layers' of one shape: forward 1, forward 2, backward 2, backward 1 (a network's order)."""
    causal = True
    first = _inputs(0)
    out = attention.flash_attention(*first, causal=causal)  # first sight: eager
    out.backward(torch.ones_like(out))
    assert recorded["forward"] == 0 and recorded["captured"] == 0
    a, b = _inputs(1), _inputs(2)
    do_a, do_b = torch.randn_like(a[0]), torch.randn_like(b[0])
    out_a = attention.flash_attention(*a, causal=causal)
    out_b = attention.flash_attention(*b, causal=causal)
    assert recorded["captured"] == 2 and recorded["forward"] == 2  # one slot each: a holds one
    out_b.backward(do_b)
    out_a.backward(do_a)
    assert recorded["backward"] == 2 and recorded["backward_eager"] == 0
    _check(out_a, *a, _want(*a, do_a, causal))
    _check(out_b, *b, _want(*b, do_b, causal))
    c = _inputs(3)
    do_c = torch.randn_like(c[0])
    out_c = attention.flash_attention(*c, causal=causal)  # a free slot again: no new capture
    out_c.backward(do_c)
    assert recorded["captured"] == 2 and recorded["forward"] == 3
    _check(out_c, *c, _want(*c, do_c, causal))


def test_busy_slots_run_eagerly_and_a_dropped_call_gives_its_slot_back(recorded, monkeypatch):
    monkeypatch.setattr(graphs, "MAX_SLOTS", 1)
    causal = False
    attention.flash_attention(*_inputs(0), causal=causal)
    a, b = _inputs(1), _inputs(2)
    out_a = attention.flash_attention(*a, causal=causal)
    out_b = attention.flash_attention(*b, causal=causal)  # a holds the only slot: b runs eagerly
    assert recorded["forward"] == 1 and recorded["busy"] == 1
    do = torch.randn_like(a[0])
    out_b.backward(do)
    _check(out_b, *b, _want(*b, do, causal))
    del out_a  # a's backward never comes: its autograd graph goes, and the slot with it
    gc.collect()
    c = _inputs(3)
    out_c = attention.flash_attention(*c, causal=causal)
    assert recorded["forward"] == 2 and recorded["captured"] == 1
    out_c.backward(do)
    _check(out_c, *c, _want(*c, do, causal))


def test_a_second_backward_runs_eagerly_from_the_call_s_own_tensors(recorded):
    causal = True
    attention.flash_attention(*_inputs(0), causal=causal)
    a = _inputs(1)
    out = attention.flash_attention(*a, causal=causal)
    other = _inputs(2)  # another call takes the slot a gave back, overwriting its buffers
    do = torch.randn_like(a[0])
    out.backward(do, retain_graph=True)
    out_other = attention.flash_attention(*other, causal=causal)
    out.backward(do)  # the gradients add up: twice a's own
    assert recorded["backward"] == 1 and recorded["backward_eager"] == 1
    want = _want(*a, do, causal)
    for got, w in zip((a[0].grad, a[1].grad, a[2].grad), want[1:], strict=True):
        assert (got.double() - 2 * w).abs().max() < 4e-5
    out_other.backward(do)
    _check(out_other, *other, _want(*other, do, causal))


def test_shapes_are_kept_up_to_the_limit(recorded, monkeypatch):
    monkeypatch.setattr(graphs, "MAX_SHAPES", 2)
    for n in (33, 34, 35, 33):
        for seed in (0, 1):
            out = attention.flash_attention(*_inputs(seed, n=n), causal=False)
            out.sum().backward()
    assert len(graphs._shapes) == 2 and recorded["captured"] == 4  # 33 dropped for 35, then seen afresh
    assert [key[0][2] for key in graphs._shapes] == [35, 33]


def test_graphs_are_not_used_off_the_gpu_for_documents_or_when_off(monkeypatch):
    q, k, _ = _inputs(0)
    assert not graphs.usable(q, k, None)  # CPU and the interpreter
    monkeypatch.setattr(graphs, "ENABLED", False)
    assert not graphs.usable(q, k, None)


def test_slots_stay_within_the_memory_budget(recorded, monkeypatch):
    q, k, _ = _inputs(0, n=40)
    size = graphs.slot_bytes(q, k)
    assert size == 4 * 5120 + 4 * 5120 + 5120 + 2 * 2 * 40 * 4  # float32: q and k 1 x 2 x 40 x 16 x 4 bytes
    monkeypatch.setattr(graphs, "MEMORY_MB", 0)
    attention.flash_attention(*_inputs(0), causal=False).sum().backward()
    attention.flash_attention(*_inputs(1), causal=False).sum().backward()  # no room: eager
    assert recorded["captured"] == 0 and recorded["no_room"] == 1
    monkeypatch.setattr(graphs, "MEMORY_MB", 1)
    attention.flash_attention(*_inputs(1), causal=False).sum().backward()
    assert recorded["captured"] == 1 and graphs.held_bytes() == size
    # a shape whose slot needs nearly all of it: the first shape's free slot is dropped for it
    monkeypatch.setattr(graphs, "slot_bytes", lambda q, k: (1 << 20) - 1000)
    attention.flash_attention(*_inputs(2, n=41), causal=False).sum().backward()
    held = attention.flash_attention(*_inputs(3, n=41), causal=False)  # its backward not yet run
    assert recorded["captured"] == 2 and [key[0][2] for key, slots in graphs._shapes.items() if slots] == [41]
    attention.flash_attention(*_inputs(4, n=42), causal=False).sum().backward()
    a = _inputs(5, n=42)
    out = attention.flash_attention(*a, causal=False)  # 41's slot is held: no room, eager
    assert recorded["captured"] == 2 and recorded["no_room"] == 2
    do = torch.randn_like(out)
    out.backward(do)
    _check(out, *a, _want(*a, do, False))
    held.sum().backward()


def test_a_capture_that_fails_leaves_the_shape_to_the_eager_kernels(recorded, monkeypatch):
    tries = []

    def refuse(fn):
        tries.append(1)
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(graphs, "_capture", refuse)
    attention.flash_attention(*_inputs(0), causal=True).sum().backward()
    a = _inputs(1)
    with pytest.warns(UserWarning, match=r"CUDA graphs are off for attention of shape \(1, 2, 40, 16\).*RuntimeError"):
        out = attention.flash_attention(*a, causal=True)
    do = torch.randn_like(out)
    out.backward(do)
    _check(out, *a, _want(*a, do, True))
    b = _inputs(2)
    out = attention.flash_attention(*b, causal=True)  # not tried again
    out.backward(do)
    _check(out, *b, _want(*b, do, True))
    assert recorded["failed"] == 1 and len(tries) == 1 and recorded["forward"] == 0
