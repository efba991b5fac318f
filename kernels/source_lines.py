"""The kernel's own source beside each value: the lines of the @triton.jit code that computed m,
alpha, p, l, acc and out (the backward's D and dS), read from the kernel modules at run time.

A line is marked in the kernel source with a trailing `# [NAME]` tag, or `# [NAME: BRANCHES]` where
the tile update has branches (softmax_tile: "masked" for the ragged end and the causal band,
"empty" where a row may have seen no key yet: split-KV's splits, a window's or a document's first
tiles; "unmasked" for whole tiles); `lines(NAME,
...)` finds every such line (file, line number, the code, the function it is in). Which branch ran
at a step follows the kernel's own loop bounds (`branch`). tests/test_source_lines.py fails when
a marked line no longer computes what its tag names.

Not for: drawing (viz/) or the numbers themselves (steps.py).
"""
import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

KERNELS = Path(__file__).resolve().parent
TAG = re.compile(r"#\s*\[(\w+)(?::\s*([\w ]+))?\]\s*$")
BRANCHES = ("masked", "unmasked", "empty")
NAMES = {"m": "the running max", "alpha": "the rescale factor", "p": "the probabilities", "l": "the running sum",
         "acc": "the accumulator", "out": "the output", "D": "D = rowsum(dO o O)", "dS": "dS = P o (dP - D)"}
MODULES = {"fa2": ("flash_fwd.py",), "fa1": ("flash_fwd.py", "flash_fa1.py"), "backward": ("flash_bwd.py",)}


@dataclass(frozen=True)
class SourceLine:
    file: str  # relative to the repository, e.g. kernels/flash_fwd.py
    line: int  # 1-based
    code: str  # the line, stripped of its tag
    function: str  # the @triton.jit function it is in
    branches: tuple  # the tile update's branches the line runs in (every branch when the line names none)


@cache
def _tagged(file: str) -> tuple[tuple[str, SourceLine], ...]:
    text = (KERNELS / file).read_text()
    funcs = [(n.lineno, n.end_lineno, n.name) for n in ast.walk(ast.parse(text)) if isinstance(n, ast.FunctionDef)]
    out = []
    for k, line in enumerate(text.splitlines(), start=1):
        m = TAG.search(line)
        if not m:
            continue
        func = min((f for f in funcs if f[0] <= k <= f[1]), key=lambda f: f[1] - f[0], default=(0, 0, "?"))[2]
        branches = tuple(m[2].split()) if m[2] else BRANCHES
        out.append((m[1], SourceLine(f"kernels/{file}", k, TAG.sub("", line).rstrip(), func, branches)))
    return tuple(out)


def lines(name: str, kernel: str = "fa2", branch: str | None = None) -> list[SourceLine]:
    """The marked lines that compute `name` in `kernel` ("fa2", "fa1", "backward"), in the given
    branch of the tile update (None: every branch)."""
    out = []
    for file in MODULES[kernel]:
        out += [s for tag, s in _tagged(file) if tag == name and (branch is None or branch in s.branches)]
    if kernel == "fa1" and name in ("acc", "out"):  # FA1 updates and writes O in its own kernel
        out = [s for s in out if s.file.endswith("flash_fa1.py")]
    return out


def branch(trace, step) -> str:
    """The branch of softmax_tile the kernel ran this step's tile through, from the trace's own record
    of how the kernel ran each tile (tile_kind; a file recorded before it was kept: the kernel's loop
    bounds, kernels/masks.py): "unmasked" for a whole tile; for a masked one "empty" where FA2 runs
    split-KV or row intervals (a row may have seen no key yet), else "masked" (FA1 masks every tile)."""
    from kernels import masks

    c = trace.config
    kinds = trace.tile_kind if trace.tile_kind is not None else c.tile_kinds()
    if kinds[step.q_block, step.kv_block] == masks.WHOLE:
        return "unmasked"
    return "empty" if c.loop_order == "fa2" and (c.kv_splits > 1 or c.masks().intervals) else "masked"
