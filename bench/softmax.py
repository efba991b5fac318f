"""Softmax: GB/s (the matrix read once + written once) of every variant against torch.softmax,
with a device copy of the same bytes timed beside each shape (the ceiling at that size)."""
from bench.timing import log, median_ms

SHAPES_ON_CHIP = [(4096, 4096), (8192, 8192), (8192, 16384)]
SHAPES_LONG = [(1024, 262144), (256, 1048576)]


def bench_softmax(shapes, dtypes=("float32", "float16"), progress=None) -> list[dict]:
    """One row per (impl, shape, dtype): ms, GB/s, max error against float32 torch.softmax."""
    import torch

    rows = []
    cases = [(s, d) for s in shapes for d in dtypes]
    for idx, ((r, c), dtype) in enumerate(cases):
        if progress:
            progress(idx / len(cases), f"softmax {r}x{c} {dtype}")
        rows += _case(r, c, dtype)
        torch.cuda.empty_cache()
    if progress:
        progress(1.0, "softmax done")
    return rows


def _case(r: int, c: int, dtype: str) -> list[dict]:
    import torch

    from kernels import softmax

    x = torch.randn(r, c, device="cuda", dtype=getattr(torch, dtype))
    nbytes = 2 * r * c * x.element_size()  # read once + write once: the minimum
    ref = torch.softmax(x.float(), dim=-1)
    y = torch.empty_like(x)
    impls = {"copy": lambda x: y.copy_(x), "torch": lambda x: torch.softmax(x, dim=-1)}
    for variant in softmax.variants_for(c):
        impls[variant] = lambda x, variant=variant: softmax.softmax(x, variant=variant)
    if c > softmax.SINGLE_PASS_MAX_COLS:  # rows too long for one program: split across cooperating ones
        from kernels import softmax_split

        impls["split_row"] = lambda x: softmax_split.softmax_split_row(x)
    rows = []
    for name, fn in impls.items():
        err = float((fn(x).float() - (x.float() if name == "copy" else ref)).abs().max())
        x2 = torch.randn_like(x)
        ms = median_ms(lambda fn=fn, x2=x2: fn(x2))
        rows.append({"impl": name, "rows": r, "cols": c, "dtype": dtype, "ms": ms, "GBps": nbytes / ms / 1e6,
                     "max_err": err})
        log(f"  softmax {name:12s} {r}x{c} {dtype:8s} {rows[-1]['GBps']:8.0f} GB/s")
    return rows
