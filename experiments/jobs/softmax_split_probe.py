"""H200 probe: the cooperative split-row softmax against the online kernel, torch.softmax and a copy of
the same bytes, on the long-row shapes of the benchmark, at several slice widths. Also checks it
against float64 and records which path ran (cooperative / fallback). Writes JSON to argv[1]."""
import json
import sys

import torch

from bench.timing import median_ms
from kernels import softmax, softmax_split


def case(rows, cols, dtype) -> list[dict]:
    x = torch.randn(rows, cols, device="cuda", dtype=dtype)
    nbytes = 2 * x.numel() * x.element_size()
    ref = torch.softmax(x.double(), -1)
    y = torch.empty_like(x)
    base = {"copy": median_ms(lambda: y.copy_(x)), "torch": median_ms(lambda: torch.softmax(x, -1)),
            "online": median_ms(lambda: softmax.softmax(x, "online"))}
    out = []
    for slice_cols in (8192, 16384):
        if cols // slice_cols > softmax_split.MAX_SPLITS or slice_cols > cols:
            continue
        row = {"rows": rows, "cols": cols, "dtype": str(dtype), "slice": slice_cols}
        try:
            got, counts = softmax_split.softmax_split_row(x, slice_cols=slice_cols, return_counts=True)
            ms = median_ms(lambda s=slice_cols: softmax_split.softmax_split_row(x, slice_cols=s))
            row.update(path=counts["path"], max_err=float((got.double() - ref).abs().max()), GBps=nbytes / ms / 1e6,
                       counts=counts, **{f"{k}_GBps": nbytes / v / 1e6 for k, v in base.items()})
        except Exception as e:  # a probe: record what failed and go on
            row["error"] = repr(e)[:300]
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


result = {"gpu": torch.cuda.get_device_name(), "rows": []}
for shape in [(1024, 262144, torch.float32), (256, 1048576, torch.float16), (256, 1048576, torch.float32),
              (4096, 32768, torch.float32)]:
    result["rows"] += case(*shape)
    torch.cuda.empty_cache()
with open(sys.argv[1], "w") as f:
    json.dump(result, f, indent=1)
