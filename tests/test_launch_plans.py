"""Launch plans (kernels/launch.py, issue 22): a compiled kernel launched straight from the plan kept
for its arguments' specialization. On CPU the launcher is a stand-in with triton's shape (params,
arg_names, fn[grid] returning a compiled kernel with run, function and packed_metadata), so the
logic is held here: which launches go through triton, which go direct, with which arguments. On a
GPU, tests/test_gpu.py runs the real kernels with every direct launch checked against triton's own
lookup (FA_VIZ_CHECK_PLANS=1)."""
import inspect
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np
import pytest
import torch

from kernels import backend, launch
from kernels.launch import Strides, meta


class _Meta(NamedTuple):
    A: object
    B: object


def test_meta_is_one_object_per_combination():
    launch.start_over()
    one = meta(_Meta, A=64, B=True)
    assert meta(_Meta, A=64, B=True) is one
    assert meta(_Meta, A=np.int64(64), B=np.bool_(True)) is one  # NumPy values are the Python ones
    other = meta(_Meta, A=128, B=True)
    assert other is not one and other.A.value == 128 and one.A.value == 64
    assert type(meta(_Meta, A=np.bool_(False), B=1).A.value) is bool
    unhashable = meta(_Meta, A=[1], B=2)  # made each time, never kept
    assert unhashable.A.value == [1] and meta(_Meta, A=[1], B=2) is not unhashable
    launch.start_over()
    assert meta(_Meta, A=64, B=True) is not one  # forgotten together with the plans


def test_keys_follow_what_triton_specializes_on():
    launch.start_over()
    m = meta(_Meta, A=1, B=2)
    base = torch.zeros(64, dtype=torch.float16)
    aligned, shifted = base[:32], base[1:33]  # 2 bytes off: not 16-byte aligned
    assert aligned.data_ptr() % 16 == 0 and shifted.data_ptr() % 16 != 0
    def key(a):
        return launch._key_of((a,))[0]

    assert key(aligned) == (torch.float16, True) and key(shifted) == (torch.float16, False)
    assert key(aligned.float()) == (torch.float32, True)
    assert key(16) != key(17) and key(1) != key(2)  # ints by value (==1, %16 and width follow)
    assert key(0.5) is float and key(0.25) is float and key(None) is None and key(True) is bool
    assert key(m) == ("meta", id(m)) and key(meta(_Meta, A=1, B=3)) != key(m)
    assert key(Strides(1, 2, 3, 4)) == (1, 2, 3, 4) and key((aligned, (None, 3))) == ((torch.float16, True), (None, 3))
    with pytest.raises(launch._Unplanned):
        key(object())
    import triton.language as tl

    hand_made = _Meta(A=tl.constexpr(1), B=tl.constexpr(2))  # not made by meta(): keyed by its values
    assert key(hand_made) == (("constexpr", "1"), ("constexpr", "2")) != key(_Meta(tl.constexpr(1), tl.constexpr(3)))
    from triton.tools.tensor_descriptor import TensorDescriptor

    d = TensorDescriptor(torch.zeros(4, 64), [4, 64], [64, 1], [2, 16])
    assert key(d)[:3] == ("desc", torch.float32, True) and key(d)[3:6] == ((4, 64), (64, 1), (2, 16))
    assert key(TensorDescriptor(torch.zeros(4, 64), [4, 64], [64, 1], [4, 16])) != key(d)


class _Kernel:
    def __init__(self):
        self.runs = []
        self.function, self.packed_metadata = "function", "packed"

    @property
    def run(self):
        return lambda *a: self.runs.append(a)


class _Jit:
    """triton's JITFunction as jit_launch uses it."""

    def __init__(self):
        def kernel(X, n, meta, BLOCK, EXTRA=7):
            pass
        sig = inspect.signature(kernel)
        self.params = [SimpleNamespace(name=p.name, default=p.default) for p in sig.parameters.values()]
        self.arg_names = [p.name for p in self.params]
        self.__name__ = "kernel"
        self.via_triton, self.kernels = [], []

    def __getitem__(self, grid):
        def go(*args, **kwargs):
            self.via_triton.append((grid, args, kwargs))
            self.kernels.append(_Kernel())
            return self.kernels[-1]
        return go


@pytest.fixture
def compiled(monkeypatch):
    """jit_launch as on a GPU: not interpreting, no launch hooks, device 0, stream 1234."""
    hooks = SimpleNamespace(launch_enter_hook=SimpleNamespace(calls=[]), launch_exit_hook=SimpleNamespace(calls=[]),
                            debug=False)
    knobs = SimpleNamespace(runtime=hooks, compilation=SimpleNamespace(instrumentation_mode=""))
    monkeypatch.setattr(backend, "INTERPRET", False)
    monkeypatch.setattr(launch, "_triton_parts", (knobs, lambda device: 1234 + device))
    monkeypatch.setattr(launch._torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(launch, "CHECK_PLANS", False)
    launch.start_over()
    yield hooks
    launch.start_over()


def test_second_launch_goes_direct_with_every_argument_in_order(compiled):
    fn = _Jit()
    x = torch.zeros(32)
    m = meta(_Meta, A=1, B=2)
    launch.jit_launch(fn, (5, 3), x, 40, m, BLOCK=64, num_warps=4)
    assert len(fn.via_triton) == 1 and fn.via_triton[0][2] == dict(BLOCK=64, num_warps=4)
    before = dict(launch.plan_stats)
    y = torch.ones(32)  # another tensor, the same specialization
    launch.jit_launch(fn, (6, 3), y, 40, m, BLOCK=64, num_warps=4)
    assert len(fn.via_triton) == 1, "the second launch went through triton"
    (run,) = fn.kernels[0].runs
    assert run[:7] == (6, 3, 1, 1234, "function", "packed", None) and run[7:9] == (None, None)
    assert run[9] is y and run[10:12] == (40, m) and run[12:] == (64, 7)  # BLOCK by name, EXTRA's default
    assert launch.plan_stats["direct"] == before["direct"] + 1


@pytest.mark.parametrize("change", ["int", "alignment", "dtype", "meta", "constexpr", "option", "device"])
def test_another_specialization_goes_through_triton(compiled, monkeypatch, change):
    fn = _Jit()
    base = torch.zeros(64, dtype=torch.float16)
    m = meta(_Meta, A=1, B=2)
    args = dict(x=base[:32], n=40, m=m, BLOCK=64, num_warps=4)
    launch.jit_launch(fn, (1,), args["x"], args["n"], args["m"], BLOCK=args["BLOCK"], num_warps=args["num_warps"])
    args = dict(args, **{"int": dict(n=48), "alignment": dict(x=base[1:33]), "dtype": dict(x=base[:32].float()),
                         "meta": dict(m=meta(_Meta, A=1, B=3)), "constexpr": dict(BLOCK=128),
                         "option": dict(num_warps=8), "device": {}}[change])
    if change == "device":
        monkeypatch.setattr(launch._torch.cuda, "current_device", lambda: 1)
    launch.jit_launch(fn, (1,), args["x"], args["n"], args["m"], BLOCK=args["BLOCK"], num_warps=args["num_warps"])
    assert len(fn.via_triton) == 2 and not fn.kernels[0].runs


def test_hooks_and_the_interpreter_go_through_triton(compiled, monkeypatch):
    fn = _Jit()
    x = torch.zeros(32)
    for _ in range(2):
        launch.jit_launch(fn, (1,), x, 1, None, BLOCK=16)
    assert len(fn.via_triton) == 1
    compiled.launch_enter_hook.calls.append(print)  # a profiler's hook: triton must call it
    launch.jit_launch(fn, (1,), x, 1, None, BLOCK=16)
    assert len(fn.via_triton) == 2
    compiled.launch_enter_hook.calls.clear()
    monkeypatch.setattr(backend, "INTERPRET", True)
    launch.jit_launch(fn, (1,), x, 1, None, BLOCK=16)
    assert len(fn.via_triton) == 3
    monkeypatch.setattr(backend, "INTERPRET", False)
    monkeypatch.setattr(launch, "USE_PLANS", False)
    launch.jit_launch(fn, (1,), x, 1, None, BLOCK=16)
    assert len(fn.via_triton) == 4


def test_an_argument_it_cannot_key_goes_through_triton(compiled):
    fn = _Jit()
    for _ in range(2):
        launch.jit_launch(fn, (1,), object(), 1, None, BLOCK=16)
    assert len(fn.via_triton) == 2


def test_plans_start_over_when_full(compiled, monkeypatch):
    monkeypatch.setattr(launch, "MAX_KEPT", 3)
    fn = _Jit()
    x = torch.zeros(32)
    for n in range(5):
        launch.jit_launch(fn, (1,), x, n, None, BLOCK=16)
    assert len(launch._plans) <= 3
    assert all(isinstance(k[3], tuple) for k in launch._plans)


def test_the_check_finds_a_plan_triton_would_not_launch(compiled, monkeypatch):
    """CHECK_PLANS asks triton's own cache for each direct launch: a plan that holds another
    kernel than triton's lookup finds is an AssertionError, not a wrong launch."""
    fn = _Jit()
    x = torch.zeros(32)
    launch.jit_launch(fn, (1,), x, 1, None, BLOCK=16)
    found = {"kernel": fn.kernels[0]}
    fn.debug = False
    fn.device_caches = {0: ({"k": None}, None, None, None, lambda *a, **k: (None, ["spec"], "opts"))}
    monkeypatch.setattr(launch, "CHECK_PLANS", True)
    import triton.runtime.jit as jit

    monkeypatch.setattr(jit, "compute_cache_key", lambda cache, spec, options: "k")
    with pytest.raises(AssertionError, match="holds another kernel than triton would launch"):
        launch.jit_launch(fn, (1,), x, 1, None, BLOCK=16)
    fn.device_caches[0][0]["k"] = found["kernel"]
    checked = launch.plan_stats["checked"]
    launch.jit_launch(fn, (1,), x, 1, None, BLOCK=16)
    assert launch.plan_stats["checked"] == checked + 1 and len(fn.kernels[0].runs) == 1


def test_constant_argument_tuples_are_keyed_once():
    from kernels.trace_buffers import NO_BACKWARD_TRACE, NO_FORWARD_TRACE

    for t in (NO_FORWARD_TRACE, NO_BACKWARD_TRACE):
        assert launch._key_of((t,)) == (launch._constant_keys[id(t)],)
        assert launch._constant_keys[id(t)] == ("constant", tuple(None for _ in t))
    copy = tuple(NO_FORWARD_TRACE)  # equal but not the constant: walked
    assert launch._key_of((copy,)) == (tuple(None for _ in copy),)
