"""Rows typed by hand and the source documents' worked examples, through the real softmax kernels.

`parse_row` reads what a user typed ("3, 1, 4, 1, 5") into a row or a ValueError naming the field
and the value; `PRESETS` are the documents' examples as rows and chunks (with what each document
prints, and where it is wrong); `underflow` runs a row where every e^x underflows float32 through
naive, safe and online; `safe_vs_online` compares two kernels' float32 outputs bit by bit.

Not for: the page (viz/) or the kernels themselves (softmax.py, softmax_split.py).
"""
import math
from dataclasses import dataclass

import numpy as np

from kernels import backend, inputs, reference
from kernels.softmax_trace import OVERFLOW_VARIANTS, tile_for

MAX_VALUES = 16  # a typed row: every number of it, its running (m, d) and its output fit on one screen
MAX_TEXT = 400  # characters of a typed row
FLOAT32_MAX = float(np.finfo(np.float32).max)
# e^x is 0 in float32 below ln(2^-149), the smallest subnormal: -103.28. The underflow row's max sits
# UNDERFLOW_MAX below that, so even a kernel that keeps subnormals gets 0 for every e^x
UNDERFLOW_MAX = -110.0


def parse_row(text: str) -> tuple[float, ...]:
    """Numbers separated by commas or spaces -> a tuple of floats; ValueError naming what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"row: must be text, got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise ValueError(f"row: {len(text)} characters, at most {MAX_TEXT}")
    items = [t.strip() for t in text.replace(",", " , ").split(",")]
    if items and items[-1] == "":
        items = items[:-1]  # a trailing comma ends the row; it holds no value
    words = [w for item in items for w in (item.split() or [""])]
    if not words or words == [""]:
        raise ValueError("row: the row is empty; type at least one number, e.g. 3, 1, 4, 1, 5")
    if len(words) > MAX_VALUES:
        raise ValueError(f"row: {len(words)} values, at most {MAX_VALUES} (the page shows every number of a "
                         f"typed row); longer rows: the row length slider")
    values = []
    for i, w in enumerate(words, 1):
        if w == "":
            raise ValueError(f"row: value {i} is empty (two commas with nothing between them)")
        try:
            v = float(w)
        except ValueError:
            raise ValueError(f"row: value {i}, {w[:20]!r}, is not a number") from None
        if math.isnan(v):
            raise ValueError(f"row: value {i}, {w[:20]!r}, is NaN; softmax of a row holding NaN is NaN everywhere")
        if math.isinf(v) or abs(v) > FLOAT32_MAX:
            raise ValueError(f"row: value {i}, {w[:20]!r}, is not a finite float32 number (the kernels read "
                             f"float32: at most ±{FLOAT32_MAX:.4g})")
        values.append(v)
    return tuple(values)


def format_row(values) -> str:
    """The row as the URL and the text box hold it: each value's shortest exact form, comma separated."""
    out = []
    for v in values:
        s = repr(float(v))
        out.append(s[:-2] if s.endswith(".0") else s)
    return ",".join(out)


@dataclass(frozen=True)
class Preset:
    name: str
    seed: str  # the source document, shared/seeds/NNN_...
    title: str
    label: str  # the link's words
    values: tuple[float, ...]
    block: int
    about: str  # where the numbers come from
    printed: tuple[float, ...] = ()  # the document's own printed output, when it prints one (4 decimals)
    claims: tuple[str, ...] = ()  # the document's statements the page checks beside it (keys of CLAIMS)


# seed 003 prints only the output of torch.randn(2, 5) through softmax (its input is not printed);
# softmax is shift-invariant, so x = ln y reproduces it. The five printed values sum to 0.9999: each
# is lifted by 0.00002, inside its rounding, so that they sum to 1 and the kernels print them back
SEED003_PRINTED = (0.4979, 0.0880, 0.0198, 0.0267, 0.3675)
SEED003_ROW = tuple(round(math.log(y + 0.00002), 6) for y in SEED003_PRINTED)

PRESETS = {p.name: p for p in (
    Preset("seed-003-merge", "003", "Seed 003: X = (X1, X2), two parts of a 5-value row merged",
           "Seed 003: two parts merged",
           SEED003_ROW, 3,
           "The post prints only the softmax of torch.randn(2, 5), not its input. This row is ln y of its first "
           "printed row (softmax ignores a shift), so the kernels print the post's numbers back. Chunk 3: X1 is "
           "the first 3 values, X2 the last 2: the online kernel folds X2 into (M1, L1) step by step, and the "
           "split-row section below merges the split-row kernel's two partials with L = L1 e^(M1 − M) + L2 e^(M2 − M).",
           printed=SEED003_PRINTED),
    Preset("seed-000-recurrence", "000", "Seed 000: the online normalizer, element by element",
           "Seed 000: element by element",
           (3.0, 1.0, 4.0, 1.0, 5.0), 1,
           "Milakov and Gimelshein's recurrence d_j = d_(j−1) e^(m_(j−1) − m_j) + e^(x_j − m_j), one element a "
           "step (chunk 1). The review prints no numbers of its own; the row is ours.",
           claims=("naive-3", "safe-4")),
    Preset("seed-004-two-blocks", "004", "Seed 004: x in R^2B as two blocks x(1), x(2)",
           "Seed 004: two blocks",
           (3.0, 1.0, 4.0, 1.0, 5.0, 9.0), 3,
           "The blog's tiling: x = [x(1), x(2)], each of B = 3, m(x) and ℓ(x) from each block's m and ℓ. "
           "It prints no numbers; the row is ours.",
           claims=("naive-store", "online-equals-safe")),
)}


def preset_for(values, block: int) -> Preset | None:
    """The preset this row and chunk are, if any (a typed row equal to a document's opens its notes)."""
    for p in PRESETS.values():
        if p.block == block and tuple(float(v) for v in values) == p.values:
            return p
    return None


def underflow(length: int, block: int, seed: int) -> dict:
    """naive, safe and online computing in float32 on a row whose every e^x underflows to 0: the
    randn row of this length and seed, shifted so that its max is UNDERFLOW_MAX. naive divides 0 by
    0 (NaN); safe and online subtract the max first. {"x", "out" (3, L), "ref", "math"}."""
    backend.require_triton()
    import torch

    from kernels import softmax

    base = inputs.softmax_row(length, "randn", seed).astype(np.float64)
    x = (base - base.max() + UNDERFLOW_MAX).astype(np.float32)  # (L,)
    xt = torch.from_numpy(x)[None, :]
    tile = tile_for(block)
    out = np.stack([softmax.softmax(xt, v, block=tile, chunk=block).cpu().numpy()[0] for v in OVERFLOW_VARIANTS])
    return {"x": x, "out": out.astype(np.float32), "ref": reference.softmax_safe(x[None, :])["y"][0],
            "math": "float32"}


def ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How many float32 values lie between a and b, elementwise (both finite)."""
    def ordered(v):
        i = np.ascontiguousarray(v, dtype=np.float32).view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF), i)
    return np.abs(ordered(a) - ordered(b))


def safe_vs_online(x, block: int) -> dict:
    """The safe and the online kernel on one row, their float32 outputs compared bit by bit:
    {"y_safe", "y_online", "differ" (how many outputs differ), "max_ulp", "n"}."""
    backend.require_triton()
    import torch

    from kernels import softmax

    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None, :]
    tile = tile_for(block)
    y_safe = softmax.softmax(xt, "safe", block=tile, chunk=block).cpu().numpy()[0]
    y_online = softmax.softmax(xt, "online", block=tile, chunk=block).cpu().numpy()[0]
    d = ulps(y_safe, y_online)
    return {"y_safe": y_safe, "y_online": y_online, "differ": int((y_safe != y_online).sum()),
            "max_ulp": int(d.max()), "n": int(y_safe.size)}
