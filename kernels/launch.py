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
from dataclasses import dataclass
from typing import NamedTuple

from kernels import backend
from kernels.limits import HEAD_DIMS, MAX_BLOCK_HEAD_ELEMENTS


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


def strides(t) -> Strides:
    return Strides(*t.stride())


def meta(cls, **values):
    """An instance of the named tuple `cls` with every value a tl.constexpr: the kernel compiles
    one variant per combination, as it would for separate constexpr parameters."""
    import triton.language as tl

    return cls(**{k: tl.constexpr(_plain(v)) for k, v in values.items()})


def _plain(value):
    """A NumPy scalar as the Python value it holds: triton's compiler takes only bool, int and None
    as an `if` condition (a np.bool_ is refused where the interpreter accepts it; the ring's pair
    kinds, compared in NumPy, hit it on the H200)."""
    return value.item() if hasattr(value, "item") and type(value).__module__ == "numpy" else value
