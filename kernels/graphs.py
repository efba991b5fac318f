"""Issue 22, small calls: an eager forward + backward replayed from CUDA graphs kept per call shape.

At small sizes one eager call costs the host more than the kernels cost the GPU (a forward +
backward at N 1024 is a dozen launches, each checked and bound in Python), so the GPU waits on
the host. From the second call at a shape on, `forward` runs the same tuned kernels from a CUDA
graph captured for that shape instead: the inputs are copied into the graph's own buffers (one
multi-tensor copy), the forward graph is replayed, and the output and log-sum-exp are copied out
into fresh tensors; the backward copies the output gradient in, replays the backward graph and
copies dQ, dK and dV out. The kernels, their configs and the numbers are the eager call's: a
graph is a recording of exactly those launches.

A `_Slot` (one captured forward and backward with its buffers) is held by one call from its
forward until its backward ran, or until autograd drops the call (a forward whose backward never
comes); `MAX_SLOTS` calls of one shape can wait for their backward at once, the next runs eagerly.
A backward whose slot was released (a second backward with retain_graph=True) runs eagerly from
the saved tensors, which are always the call's own.

Not used (the eager kernels run): off the GPU and in the interpreter, while a stream is being
captured (a caller's own CUDA graph records the eager launches), under torch.compile (the
operators), for packed documents (cu_seqlens is data), while a profiler's launch hook is set,
above `MAX_ELEMENTS` (there the GPU's time dwarfs the host's and a graph would only hold memory),
when a new slot would take the slots past FA_VIZ_GRAPHS_MB (2048 by default; other shapes' free
slots are dropped first), and with FA_VIZ_GRAPHS=0 or ENABLED = False; a shape whose capture failed runs eagerly
from then on, with a warning saying why. `release()` frees every graph and its buffers.

Not for: choosing kernels or configs (attention.py, tuning.py), launching them (launch.py).
"""
import os
import threading
import warnings
import weakref
from collections import OrderedDict

import torch

from kernels import backend, launch
from kernels.limits import GRAPH_MAX_ELEMENTS

ENABLED = os.environ.get("FA_VIZ_GRAPHS", "1") != "0"
MAX_ELEMENTS = GRAPH_MAX_ELEMENTS  # batch * heads * n_q * n_kv (kernels/limits.py says why)
MAX_SLOTS = 2  # calls of one shape waiting for their backward at once
MAX_SHAPES = 8  # shapes kept; the least recently used one whose slots are free is dropped
MEMORY_MB = int(os.environ.get("FA_VIZ_GRAPHS_MB", "2048"))  # the slots' buffers at most, all shapes together
stats = {"captured": 0, "forward": 0, "backward": 0, "backward_eager": 0, "busy": 0, "no_room": 0, "failed": 0}
_FAILED = ()  # a shape whose capture failed: its calls run eagerly
_lock = threading.Lock()

_shapes: OrderedDict = OrderedDict()  # key -> list of _Slot, or None after the first (eager) call


def slot_bytes(q, k) -> int:
    """What one slot holds: q, do, out, dq (q's size), k, v, dk, dv (k's), lse and the backward's
    float32 buffers (delta, and dQ's accumulator when the fused schedule runs: twice q in fp16)."""
    q_bytes, k_bytes = q.numel() * q.element_size(), k.numel() * k.element_size()
    return 4 * q_bytes + 4 * k_bytes + q_bytes * 4 // q.element_size() + 2 * q[..., 0].numel() * 4


def held_bytes() -> int:
    return sum(s.bytes for slots in _shapes.values() if slots for s in slots)


def release() -> None:
    """Drops every kept graph (their memory returns to PyTorch's allocator once no call holds it)."""
    _shapes.clear()


def _warm_up(fn) -> None:
    """fn run once on a side stream, as a capture wants (CUDA graphs' documented warm-up)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)


def _capture(fn):
    """(graph, fn's outputs): fn recorded into a CUDA graph; its outputs live in the graph's memory."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        outputs = fn()
    return graph, outputs


class _Slot:
    """One shape's forward and backward graphs with their static inputs and outputs."""

    def __init__(self, q, k, v, run_forward, run_backward, names):
        """names() after the captures: what the tuners picked, restored on each replay."""
        self.bytes = slot_bytes(q, k)
        self.q, self.k, self.v = (t.detach().clone(memory_format=torch.contiguous_format) for t in (q, k, v))
        self.do = torch.zeros_like(self.q)
        self.holder = None  # a weak reference to the _Lease of the call that holds it
        _warm_up(lambda: run_backward(self.q, self.k, self.v, *run_forward(self.q, self.k, self.v), self.do))
        self.fwd, (self.out, self.lse) = _capture(lambda: run_forward(self.q, self.k, self.v))
        self.bwd, (self.dq, self.dk, self.dv) = _capture(
            lambda: run_backward(self.q, self.k, self.v, self.out, self.lse, self.do))
        self.names = names()
        stats["captured"] += 1

    @property
    def free(self) -> bool:
        return self.holder is None or self.holder() is None


class _Lease:
    """A call's hold on a slot: given back by its backward, or when autograd drops the call."""
    __slots__ = ("slot", "__weakref__")

    def __init__(self, slot):
        self.slot = slot
        slot.holder = weakref.ref(self)  # weak: when autograd drops the call, the lease goes

    def release(self) -> None:
        if self.slot is not None and not self.slot.free and self.slot.holder() is self:
            self.slot.holder = None
        self.slot = None

    def backward(self, dout, restore):
        """(dq, dk, dv) from the backward graph, or None when the slot is no longer held."""
        slot = self.slot
        if slot is None or slot.free or slot.holder() is not self:
            return None
        slot.do.copy_(dout)
        slot.bwd.replay()
        restore(slot.names, 1)
        grads = [torch.empty_like(t) for t in (slot.dq, slot.dk, slot.dv)]
        torch._foreach_copy_(grads, [slot.dq, slot.dk, slot.dv])
        self.release()
        stats["backward"] += 1
        return grads


def usable(q, k, docs) -> bool:
    """Whether this call may run from graphs (see the module's docstring for when it may not)."""
    if not ENABLED or backend.INTERPRET or docs is not None or q.device.type != "cuda":
        return False
    batch, heads, n_q, _ = q.shape
    if batch * heads * n_q * k.shape[2] > MAX_ELEMENTS or torch.cuda.is_current_stream_capturing():
        return False
    return not launch._hooked()


def forward(q, k, v, key, run_forward, run_backward, names, restore):
    """(out, lse, lease) from the shape's forward graph, or None: run eagerly. The first call at a
    shape runs eagerly (it tunes and compiles); the second captures a slot. run_forward(q, k, v) ->
    (out, lse) and run_backward(q, k, v, out, lse, do) -> (dq, dk, dv) are the eager functions;
    names() is what the tuners last picked, restore(names, part) sets it back after a replay of
    the forward (part 0) or the backward (1), so tuned_config_name() names the kernels that ran."""
    with _lock:  # a slot is taken under the lock (the backward runs on autograd's own thread)
        lease, fresh = _take(q, k, v, key, run_forward, run_backward, names)
    if lease is None:
        return None
    slot = lease.slot
    if not fresh:
        torch._foreach_copy_([slot.q, slot.k, slot.v], [q, k, v])
    slot.fwd.replay()
    restore(slot.names, 0)
    out, lse = torch.empty_like(slot.out), torch.empty_like(slot.lse)
    torch._foreach_copy_([out, lse], [slot.out, slot.lse])
    stats["forward"] += 1
    return out, lse, lease


def _take(q, k, v, key, run_forward, run_backward, names):
    """(a lease on a free slot of the shape, whether it was captured just now from q, k, v), or
    (None, False): the first sight of a shape, every slot busy, no room, or a capture that failed."""
    slots = _shapes.get(key, False)
    if slots is False:  # first sight
        _shapes[key] = None
        _trim()
        return None, False
    _shapes.move_to_end(key)
    if slots is _FAILED:
        return None, False
    if slots is None:
        slots = _shapes[key] = []
    slot = next((s for s in slots if s.free), None)
    if slot is not None:
        return _Lease(slot), False
    if len(slots) >= MAX_SLOTS:
        stats["busy"] += 1
        return None, False
    if not _room_for(slot_bytes(q, k), key):
        stats["no_room"] += 1
        return None, False
    try:
        slot = _Slot(q, k, v, run_forward, run_backward, names)
    except Exception as e:  # any failure to capture leaves the shape to the eager kernels
        _shapes[key] = _FAILED
        stats["failed"] += 1
        warnings.warn(f"CUDA graphs are off for attention of shape {tuple(q.shape)}: capturing its kernels "
                      f"failed ({type(e).__name__}: {e}); its calls run eagerly", stacklevel=4)
        return None, False
    slots.append(slot)
    return _Lease(slot), True


def _drop_one(keep=None) -> bool:
    """Drops the least recently used shape (not `keep`) whose slots are all free."""
    for key, slots in _shapes.items():
        if key != keep and (not slots or all(s.free for s in slots)):  # () and None: no slots
            del _shapes[key]
            return True
    return False


def _trim() -> None:
    while len(_shapes) > MAX_SHAPES and _drop_one():
        pass


def _room_for(size: int, key) -> bool:
    """Whether a new slot of `size` bytes fits MEMORY_MB, dropping other shapes' free slots to make room."""
    while held_bytes() + size > MEMORY_MB << 20:
        if not _drop_one(keep=key):
            return False
    return True
