"""The masks benchmark without a GPU: each case's FlexAttention mask_mod (from which SDPA's dense mask
and the block mask are built) is the mask our kernel is given, by kernels/masks.py's definitions;
the pairs its TFLOP/s count are the kept ones; the ratios, the CLI's table and the Benchmarks page's
table are the timed numbers."""
import re

import numpy as np
import pytest

from bench import masks as bm
from bench import report
from kernels import masks, results
from viz.figures import benchmarks as fbench


@pytest.mark.parametrize("case,n_q,n_k,group", [("window", 1500, 1500, 1), ("documents", 300, 300, 1),
                                                ("gqa", 200, 200, 4), ("decode", 4, 700, 4), ("decode", 1, 700, 8)])
def test_each_mask_mod_is_the_mask_our_kernel_is_given(case, n_q, n_k, group):
    cu = masks.document_bounds(n_k, bm.DOCUMENTS, 0) if case == "documents" else ()
    dense = bm.dense_mask(bm.mask_mod(case, n_q, n_k, cu), n_q, n_k, "cpu").numpy()
    ours = bm.ours_masks(case, n_q, n_k, cu, group)
    assert np.array_equal(dense, ours.allowed(0, n_q)), case
    assert bm.pairs(ours) == int(dense.sum()) and (case != "window" or dense.sum() < n_q * (n_q + 1) // 2)


def _result():
    """A result as bench_masks writes it, with times put in by hand (what the arithmetic must show)."""
    rows = []
    for case, n, q_len, times in (("window", 4096, 4096, {"ours": 1.0, "sdpa_dense_mask": 3.0, "flex_attention": 1.25}),
                                  ("decode", 16384, 1, {"ours": 0.5, "sdpa_dense_mask": 2.0, "flex_attention": 0.6,
                                                        "sdpa_lower_right": 0.4})):
        for impl, ms in times.items():
            rows.append(bm._row(case, impl, 4, 16, 16, q_len, n, 128, "float16", ms=ms, tflops=100 / ms,
                                kv_GBps=1000 / ms, config="BM64 BN64 w4 s2" if impl == "ours" else None))
    return {"env": {"gpu": "a GPU", "torch": "x", "triton": "y", "date": "2026-12-02"}, "masks": rows,
            "masks_note": bm.note()}


def test_ratios_and_tables_are_the_timed_numbers():
    r = _result()
    got = {(x["case"], x["seq_len"]): x for x in results.mask_ratios(r["masks"])}
    assert got[("window", 4096)]["vs_flex_attention"] == pytest.approx(1.25)
    assert got[("window", 4096)]["vs_sdpa_dense_mask"] == pytest.approx(3.0)
    assert got[("decode", 16384)]["vs_sdpa_lower_right"] == pytest.approx(0.8)  # SDPA faster there: below 1
    table = fbench.bench_masks_table(r)
    assert [t["case"] for t in table] == ["decode", "window"] and table[1]["FlexAttention / ours"] == 1.25
    assert table[0]["ours K/V GB/s"] == 2000 and table[1]["config picked"] == "BM64 BN64 w4 s2"
    text = report.table(r)
    assert "masks (causal; window 1024" in text and re.search(r"window\s+4096\s+4096\s+1\.000\s+100\.0", text), text


def test_the_cli_has_the_masks_part():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "bench", "--help"], capture_output=True, text=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert "masks" in out.stdout and "--decode-lens" in out.stdout and "--mask-seq-lens" in out.stdout
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # what the run times

    assert callable(flex_attention) and callable(create_block_mask)
