"""How a kernel is launched: one Config for every launcher, and the arguments kernels take bundled.

`Config` is the tuner's type and every launcher's (the forward, FA1's order, the backward's
kernels): block sizes, warps, stages and the forward's variants. The rules a launch needs are
written here once: `precision(dtype)` (tl.dot's input precision), `Config.warps` (the default
warps for a tile). The kernels take their arguments in named tuples, so no @triton.jit function
has a long positional list: `Strides` of a tensor, a `meta(...)` tuple of compile-time options
(each a tl.constexpr, so the kernel specializes on them), and the trace buffers' tuples
(kernels/trace_buffers.py).

Not for: which configs exist or which one wins (tuning.py), the kernels (flash_*.py).
"""
import os
from dataclasses import dataclass
from typing import NamedTuple

from kernels import backend
from kernels.limits import HEAD_DIMS, MAX_BLOCK_HEAD_ELEMENTS

try:
    import torch as _torch
except ImportError:  # the app replays traces without torch
    _torch = None


def precision(dtype) -> str:
    """tl.dot's input precision: ieee for float32 (exact in the interpreter), tensor cores otherwise."""
    return "ieee" if str(dtype) in ("torch.float32", "float32") else "tf32"


@dataclass(frozen=True)
class Config:
    block_m: int
    block_n: int
    num_warps: int | None = None  # None: `warps`, from the tile size
    num_stages: int = 2
    warp_spec: bool = False  # forward: triton's warp-specialized loop (tensor descriptors only)
    split: int = 1  # forward: 2 runs the q-block as two halves of rows with their own softmax state
    late_v: bool = False  # forward: V_j loaded after the softmax instead of with K_j
    head_dims: tuple = HEAD_DIMS  # the head dims it is kept for
    fused_dq: bool = False  # backward: the dK/dV kernel also adds dQ atomically (no dQ kernel)
    kv_splits: int = 1  # forward: split-KV, this many programs per q-block and a merge (flash-decoding)

    @property
    def warps(self) -> int:
        """num_warps, or 4 for tiles up to 64 x 64 and 8 above."""
        return self.num_warps or (4 if self.block_m * self.block_n <= 64 * 64 else 8)

    @property
    def name(self) -> str:
        """'BM128 BN128 w8 s3', plus ' ws', ' split2', ' late-V', ' fused-dQ', ' kv-split8' where they apply."""
        return (f"BM{self.block_m} BN{self.block_n} w{self.warps} s{self.num_stages}"
                + " ws" * self.warp_spec + " split2" * (self.split == 2) + " late-V" * self.late_v
                + " fused-dQ" * self.fused_dq + (f" kv-split{self.kv_splits}" if self.kv_splits > 1 else ""))

    def fits(self, head_dim: int) -> bool:
        return (head_dim in self.head_dims
                and max(self.block_m, self.block_n) * head_dim <= MAX_BLOCK_HEAD_ELEMENTS)

    def compile_options(self) -> dict:
        """num_warps and num_stages for a launch; none in the interpreter (it runs no warps)."""
        return {} if backend.INTERPRET else {"num_warps": self.warps, "num_stages": self.num_stages}


class Strides(NamedTuple):
    """A (batch, heads, rows, columns) tensor's strides, in elements."""
    z: int
    h: int
    m: int
    k: int


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for a grid: triton.cdiv is a constexpr function in triton 3.9, about 3 us a call on the host."""
    return -(-a // b)


def strides(t) -> Strides:
    return Strides(*t.stride())


def meta(cls, **values):
    """An instance of the named tuple `cls` with every value a tl.constexpr: the kernel compiles
    one variant per combination, as it would for separate constexpr parameters. One object per
    combination, kept: building 25 constexprs for each launch was host time a small call paid
    (issue 22), and launch plans key on the object itself."""
    key = (cls, *values.items())
    try:
        made = _metas.get(key)
    except TypeError:  # a value that cannot be hashed: made each time
        key, made = None, None
    if made is None:
        import triton.language as tl

        made = cls(**{k: tl.constexpr(_plain(v)) for k, v in values.items()})
        if key is not None:
            if len(_metas) >= MAX_KEPT:
                start_over()
            _metas[key] = made
            _meta_ids[id(made)] = made
    return made


_metas: dict = {}  # (cls, (name, value), ...) -> the named tuple of constexprs
_meta_ids: dict = {}  # id -> every meta tuple made (kept alive, so an id is not reused while a plan names it)
MAX_KEPT = 4096  # metas or plans kept before both start over


def start_over() -> None:
    """Forget every kept meta tuple and launch plan (they are made again on the next launches)."""
    _metas.clear()
    _meta_ids.clear()
    _plans.clear()


def _plain(value):
    """A NumPy scalar as the Python value it holds: triton's compiler takes only bool, int and None
    as an `if` condition (a np.bool_ is refused where the interpreter accepts it; the ring's pair
    kinds, compared in NumPy, hit it on the H200)."""
    return value.item() if hasattr(value, "item") and type(value).__module__ == "numpy" else value


# ------------------------------------------------------------------------------ launch plans
# A compiled kernel launched straight from the plan kept for its arguments (issue 22: a small
# call's host time). `fn[grid](*args)` costs about 50 us of Python a launch on the H200: triton
# binds the arguments, hashes each constexpr of the meta tuples to find the compiled kernel and
# builds launch metadata. The first launch of a kind goes that way; its kernel is kept under a
# key made of what triton specializes on (each int's value, each tensor's dtype and 16-byte
# alignment, each float and None as itself, the meta tuples by identity, a tensor descriptor's
# shape, strides and block), and later launches of that key call the kernel's launcher directly,
# as triton's own JITFunction.run does at its end (the same entry point in triton 3.6 and 3.9).
# Off in the interpreter (nothing is compiled) and while a launch hook is set (a profiler's).
# CHECK_PLANS (environment FA_VIZ_CHECK_PLANS=1; the GPU suite's job sets it) makes every direct
# launch ask triton for its own key too and fail if triton would have picked another kernel.
CHECK_PLANS = os.environ.get("FA_VIZ_CHECK_PLANS", "") == "1"
USE_PLANS = True  # False: every launch through fn[grid] (experiments/scripts/host_time.py times both)
_plans: dict = {}
plan_stats = {"direct": 0, "planned": 0, "checked": 0}


class _Unplanned(Exception):
    """An argument whose specialization this key does not model: launched through triton."""


def _key_of(values: tuple) -> tuple:
    """What triton specializes on in these arguments (see above), as a hashable tuple; the common
    types first (one pass, nested tuples recursed)."""
    out = []
    for a in values:
        t = type(a)
        if t is int:
            out.append(a)
        elif a is None:
            out.append(None)
        elif t is float or t is bool:
            out.append(t)
        elif _torch is not None and isinstance(a, _torch.Tensor):
            out.append((a.dtype, a.data_ptr() % 16 == 0))
        elif _meta_ids.get(id(a)) is a:
            out.append(("meta", id(a)))
        elif isinstance(a, tuple):
            out.append(_constant_keys.get(id(a)) or _key_of(a))
        elif t.__name__ == "TensorDescriptor":
            out.append(("desc", a.base.dtype, a.base.data_ptr() % 16 == 0, tuple(a.shape), tuple(a.strides),
                        tuple(a.block_shape), getattr(a, "padding", None)))
        elif t.__name__ == "constexpr":
            out.append(("constexpr", repr(a.value)))
        else:
            raise _Unplanned(t.__name__)
    return tuple(out)


_constant_keys: dict = {}  # id -> key of the argument tuples that never change (constant())


def constant(args: tuple) -> tuple:
    """A module-level tuple of arguments that never changes (no trace buffers, say): its key is
    made once. Returns it."""
    _constant_keys[id(args)] = ("constant", _key_of(args))
    _constant_objects.append(args)  # kept: the id stays its own
    return args


_constant_objects: list = []


def jit_launch(fn, grid: tuple, *args, **kwargs) -> None:
    """fn[grid](*args, **kwargs), directly through the kept plan where there is one (see above).
    kwargs: the kernel's remaining parameters by name and triton's options (num_warps, num_stages)."""
    if backend.INTERPRET or not USE_PLANS or _hooked():
        fn[grid](*args, **kwargs)
        return
    layout_key = (fn, len(args), tuple(kwargs))
    layout = _layouts.get(layout_key)
    if layout is None:
        layout = _layouts[layout_key] = _layout(fn, len(args), kwargs)
    rest, option_names = layout
    values = args + tuple(kwargs[name] if name in kwargs else default for name, default in rest)
    device = _torch.cuda.current_device()
    try:
        key = (fn, device, tuple(kwargs[k] for k in option_names), _key_of(values))
    except _Unplanned:
        fn[grid](*args, **kwargs)
        return
    plan = _plans.get(key)
    if plan is None:
        kernel = fn[grid](*args, **kwargs)
        plan_stats["planned"] += 1
        if kernel is not None and hasattr(kernel, "packed_metadata"):
            if len(_plans) >= MAX_KEPT:
                start_over()  # the key names meta tuples by id: they go together
                return
            _plans[key] = (kernel.run, kernel.function, kernel.packed_metadata, kernel)
        return
    run, function, packed, kernel = plan
    if CHECK_PLANS:
        _check_plan(fn, kernel, device, args, kwargs)
    g1 = grid[1] if len(grid) > 1 else 1
    g2 = grid[2] if len(grid) > 2 else 1
    run(grid[0], g1, g2, _triton()[1](device), function, packed, None, None, None, *values)
    plan_stats["direct"] += 1


_layouts: dict = {}  # (fn, positional count, keyword names) -> _layout


def _layout(fn, n_args: int, kwargs) -> tuple:
    """((name, default) of each parameter after the positional ones, in order; the keyword names
    that are triton's options, not parameters)."""
    names = set(fn.arg_names)
    return (tuple((p.name, p.default) for p in fn.params[n_args:]),
            tuple(k for k in kwargs if k not in names))


def _check_plan(fn, kernel, device, args, kwargs) -> None:
    """Triton's own lookup for these arguments must find the kernel the plan holds."""
    from triton.runtime.jit import compute_cache_key

    knobs = _triton()[0]
    kernel_cache, kernel_key_cache, _target, _backend, binder = fn.device_caches[device]
    kw = dict(kwargs)
    kw["debug"] = kw.get("debug", fn.debug) or knobs.runtime.debug
    kw["instrumentation_mode"] = knobs.compilation.instrumentation_mode
    _bound, specialization, options = binder(*args, **kw)
    found = kernel_cache.get(compute_cache_key(kernel_key_cache, specialization, options))
    if found is not kernel:
        raise AssertionError(f"launch plan for {fn.__name__} holds another kernel than triton would launch: "
                             f"specialization {specialization}")
    plan_stats["checked"] += 1


_triton_parts: tuple = ()


def _triton() -> tuple:
    """(triton.knobs, the driver's current-stream function), looked up once."""
    global _triton_parts
    if not _triton_parts:
        from triton import knobs
        from triton.runtime.driver import driver

        _triton_parts = (knobs, driver.active.get_current_stream)
    return _triton_parts


def _hooked() -> bool:
    """A launch hook is set (a profiler's): launches go through triton, which calls it."""
    rt = _triton()[0].runtime
    return bool(getattr(rt.launch_enter_hook, "calls", rt.launch_enter_hook)
                or getattr(rt.launch_exit_hook, "calls", rt.launch_exit_hook))
