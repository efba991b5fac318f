"""The softmax kernels against the float64 references, and their own access counts against the
traffic model. CPU runs them in Triton's interpreter; `-m gpu` runs the larger, compiled checks."""
import numpy as np
import pytest
import torch

from kernels import (
    backend,
    reference,
    traffic,
)
from kernels import softmax as sm

# Allowed error: twice what torch.softmax gets in the same dtype, but never below the dtype's own
# floor relative to the largest output. float32 (eps 6e-8): exp2, a tree sum of <= 1000 terms and
# one division add a few ulps -> 1e-6. float16 / bfloat16 store the output in 11 / 8 bits, so
# rounding alone costs up to 2^-11 ~ 5e-4 / 2^-8 ~ 4e-3 relative -> 1e-3 / 8e-3.
RTOL = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}

# (rows, cols, block): cols that do not divide the block, a single column, a single chunk
SHAPES = [(3, 1, None), (5, 17, None), (7, 1000, 128), (4, 300, 64)]


def _randn(rows, cols, dtype, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(rows, cols, generator=g, dtype=torch.float64) * scale).to(dtype).to(backend.DEVICE)


def _assert_close(y, x, what):
    """y against the float64 safe softmax of x exactly as the kernel saw it."""
    ref = reference.softmax_safe(x)["y"]  # (rows, cols) float64
    got = y.detach().cpu().double().numpy()
    assert not np.isnan(got).any(), f"{what}: {np.isnan(got).sum()} of {got.size} outputs are NaN (unwritten or 0/0)"
    err = np.abs(got - ref).max()
    torch_err = np.abs(torch.softmax(x, dim=-1).cpu().double().numpy() - ref).max()
    tol = max(2 * torch_err, RTOL[x.dtype] * ref.max())
    assert err <= tol, f"{what}: max |y - ref| = {err:.3g} > {tol:.3g} (torch.softmax in {x.dtype}: {torch_err:.3g})"


def _block_for(variant, block):
    return None if variant == "single_pass" else block  # single_pass always takes the whole row


# ---------------------------------------------------------------- values
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("rows,cols,block", SHAPES)
@pytest.mark.parametrize("variant", sm.VARIANTS)
def test_matches_float64_reference(variant, rows, cols, block, dtype):
    x = _randn(rows, cols, dtype, seed=rows * cols)
    out = torch.full_like(x, float("nan"))  # poison: any element the kernel skips stays NaN
    y = sm.softmax(x, variant, block=_block_for(variant, block), out=out)
    assert y.data_ptr() == out.data_ptr()
    _assert_close(y, x, f"{variant} {dtype} {rows}x{cols} block={block}")


@pytest.mark.parametrize("rows_per_program", [1, 4])
@pytest.mark.parametrize("variant", sm.VARIANTS)
def test_strided_rows(variant, rows_per_program):
    # rows 40 apart in memory but 33 wide: the kernels must follow stride_xm, not cols
    x = _randn(6, 40, torch.float32, seed=1)[:, 3:36]
    assert x.stride(0) == 40 and not x.is_contiguous()
    y = sm.softmax(x, variant, block=_block_for(variant, 16), rows_per_program=rows_per_program)
    _assert_close(y, x, f"{variant} strided rows, {rows_per_program} rows a program")


# (rows, cols, block): row counts that leave the last program ragged (7 rows at 4 or 8 a program,
# 13 at 4 or 8), several chunks per row, one chunk, a single column
RAGGED_SHAPES = [(7, 1000, 128), (13, 300, 64), (7, 17, None), (13, 1, None)]


@pytest.mark.parametrize("rows_per_program", [1, 4, 8])
@pytest.mark.parametrize("rows,cols,block", RAGGED_SHAPES)
@pytest.mark.parametrize("variant", sm.VARIANTS)
def test_rows_per_program_values_and_counts(variant, rows, cols, block, rows_per_program):
    # a (rows_per_program, BLOCK) tile per program: every real row written, rows past the end of
    # the last, ragged group neither written (the NaN poison stays where it is out of bounds)
    # nor counted
    x = _randn(rows, cols, torch.float32, seed=rows * cols + rows_per_program)
    what = f"{variant} {rows}x{cols} block={block}, {rows_per_program} rows a program"
    out = torch.full((rows + 1, cols), float("nan"), device=backend.DEVICE)  # one spare row past the end
    y, counted = sm.softmax(x, variant, block=_block_for(variant, block), out=out[:rows],
                            return_counts=True, rows_per_program=rows_per_program)
    _assert_close(y, x, what)
    assert torch.isnan(out[rows]).all(), f"{what}: wrote past the last row"
    model = traffic.softmax(variant, rows, cols)
    assert counted == model, f"{what}: kernel counted {counted}, model says {model}"


@pytest.mark.parametrize("variant", sm.VARIANTS)
def test_rows_per_program_fp16_causal_rows(variant):
    # fp16 with -inf entries as in a causal score matrix: row 0 has one finite value, so whole
    # chunks of it are -inf; 13 rows at 8 a program leaves the second program 5 real rows
    x = _randn(13, 300, torch.float16, seed=11)
    x = x.masked_fill(torch.ones_like(x, dtype=torch.bool).triu(1), float("-inf"))
    y, counted = sm.softmax(x, variant, block=_block_for(variant, 64), return_counts=True, rows_per_program=8)
    _assert_close(y, x, f"{variant} fp16 causal rows, 8 rows a program")
    assert counted == traffic.softmax(variant, 13, 300)


def test_naive_overflows_where_safe_and_online_do_not():
    # fp16 randn * 100 reaches ~300; the kernels compute in fp32, where e^x overflows past x ~ 88
    x = _randn(4, 300, torch.float16, scale=100.0, seed=2)
    assert x.float().max() > 88.8
    with np.errstate(over="ignore", invalid="ignore"):  # the interpreter's NumPy would warn
        naive = sm.softmax(x, "naive", block=64)
    assert not torch.isfinite(naive).all(), "naive softmax of fp16 randn*100 should overflow to inf/NaN"
    for variant in ("safe", "online", "single_pass"):
        y = sm.softmax(x, variant, block=_block_for(variant, 64))
        assert torch.isfinite(y).all(), f"{variant}: {(~torch.isfinite(y)).sum()} non-finite outputs"
        _assert_close(y, x, f"{variant} on fp16 randn*100")


@pytest.mark.parametrize("variant", ["safe", "online", "single_pass"])
def test_padding_never_sets_the_max(variant):
    # every value near -120: if a masked lane counted as 0 in the max, e^(x - 0) underflows to 0 and
    # y = 0/0; naive underflows the same way, which is why it is not run here
    x = _randn(4, 300, torch.float32, seed=9) - 120.0
    y = sm.softmax(x, variant, block=_block_for(variant, 64))
    _assert_close(y, x, f"{variant} on rows near -120")


# ---------------------------------------------------------------- counts
@pytest.mark.parametrize("rows,cols,block", [(7, 1000, 128), (4, 300, 64), (3, 1, None), (2, 4096, 1024)])
@pytest.mark.parametrize("variant", sm.VARIANTS)
def test_counted_equals_model(variant, rows, cols, block):
    x = _randn(rows, cols, torch.float32, seed=3)
    _, counted = sm.softmax(x, variant, block=_block_for(variant, block), return_counts=True)
    model = traffic.softmax(variant, rows, cols)
    assert counted == model, f"{variant} {rows}x{cols} block={block}: kernel counted {counted}, model says {model}"


# ---------------------------------------------------------------- trajectory
def test_online_trajectory_matches_reference():
    cols, block = 1000, 128  # 8 chunks, the last one 104 wide
    g = torch.Generator().manual_seed(4)
    x = torch.randn(cols, generator=g) + torch.linspace(0, 6, cols)  # a rising row: m grows, d is rescaled
    m, d = sm.online_trajectory(x.to(backend.DEVICE), block)
    ref = reference.softmax_online(x[None, :], block)
    assert m.dtype == np.float32 and d.dtype == np.float32 and m.shape == d.shape == (8,)
    assert np.array_equal(m, ref["m_traj"][0]), f"m differs: kernel {m}, reference {ref['m_traj'][0]}"
    rel = np.abs(d - ref["d_traj"][0]) / ref["d_traj"][0]
    assert rel.max() <= 1e-6, f"d differs by up to {rel.max():.3g} relative (float32 sums of <= 128 terms)"
    assert np.all(np.diff(m) >= 0), f"running max decreased: {m}"
    assert np.diff(m).max() > 0, "test row should make m grow at least once"


@pytest.mark.parametrize("rows_per_program", [1, 4, 8])
def test_online_trajectory_several_rows_per_program(rows_per_program):
    # 13 rising rows, each its own trajectory: the (ROWS,) running state must not mix rows, and
    # the last, ragged program must write only its real rows
    rows, cols, block = 13, 1000, 128
    g = torch.Generator().manual_seed(12)
    x = torch.randn(rows, cols, generator=g) + torch.linspace(0, 6, cols) * torch.arange(1, rows + 1)[:, None]
    m, d = sm.online_trajectory(x.to(backend.DEVICE), block, rows_per_program=rows_per_program)
    ref = reference.softmax_online(x, block)
    assert m.shape == d.shape == (rows, 8) and m.dtype == np.float32
    assert np.array_equal(m, ref["m_traj"]), f"m differs: kernel {m}, reference {ref['m_traj']}"
    rel = np.abs(d - ref["d_traj"]) / ref["d_traj"]
    assert rel.max() <= 1e-6, f"d differs by up to {rel.max():.3g} relative"


# ---------------------------------------------------------------- validation
def test_rejects_bad_arguments():
    x = _randn(2, 8, torch.float32)
    with pytest.raises(ValueError, match=r"variant must be one of 'naive', 'safe', 'online', 'single_pass', got 'fast'"):
        sm.softmax(x, "fast")
    for block in (48, 8, 131072):
        with pytest.raises(ValueError, match=f"block must be a power of two between 16 and 65536, got {block}"):
            sm.softmax(x, "online", block=block)
    with pytest.raises(ValueError, match=r"x must be 2-D \(rows, cols\), got shape \(8,\)"):
        sm.softmax(x[0])
    with pytest.raises(ValueError, match="at least 1 row and 1 column"):
        sm.softmax(x[:0])
    with pytest.raises(ValueError, match="cols must be at most 32768, got 40000"):
        sm.softmax(torch.zeros(1, 40000, device=backend.DEVICE), "single_pass")
    with pytest.raises(ValueError, match=r"block must be >= cols \(40\), got 16"):
        sm.softmax(_randn(2, 40, torch.float32), "single_pass", block=16)
    with pytest.raises(ValueError, match="x.dtype must be one of float32, float16"):
        sm.softmax(x.double())
    with pytest.raises(ValueError, match="block must be a power of two"):
        sm.online_trajectory(x[0], 100)
    for r in (0, 3, 512, -4):
        with pytest.raises(ValueError, match="rows_per_program must be a power of two between 1 and 256"):
            sm.softmax(x, "safe", rows_per_program=r)
    for r in (2.0, True):
        with pytest.raises(ValueError, match=r"rows_per_program must be an integer, got .* \((float|bool)\)"):
            sm.softmax(x, "safe", rows_per_program=r)
    with pytest.raises(ValueError, match=r"x must be a torch.Tensor \(rows, cols\), got ndarray"):
        sm.softmax(x.numpy())
    with pytest.raises(ValueError, match=r"return_counts must be True or False, got 'yes' \(str\)"):
        sm.softmax(x, return_counts="yes")
    with pytest.raises(ValueError, match="rows_per_program must be a power of two between 1 and 256"):
        sm.online_trajectory(x[0], 16, rows_per_program=5)
    with pytest.raises(ValueError, match=r"rows_per_program \* block must be at most 1048576"):
        sm.softmax(_randn(2, 8192, torch.float32), "online", block=8192, rows_per_program=256)


@pytest.mark.skipif(not backend.INTERPRET, reason="bfloat16 runs when compiled")
def test_rejects_bfloat16_in_interpreter():
    with pytest.raises(ValueError, match="no bfloat16 in the interpreter"):
        sm.softmax(_randn(2, 8, torch.bfloat16))


def test_default_block():
    assert sm.default_block(1000, torch.float32, "single_pass") == 1024
    assert sm.default_block(1, torch.float32) == 16
    big = sm.default_block(1 << 20, torch.float32)
    assert big == (1024 if backend.INTERPRET else 8192)  # 32 KiB chunks on a GPU
    assert sm.default_block(1 << 20, torch.float16) == (1024 if backend.INTERPRET else 16384)


def test_default_rows_per_program(monkeypatch):
    # interpreter: tiles of ~64K elements, never more rows than the input rounds up to, at most 256
    monkeypatch.setattr(sm.backend, "INTERPRET", True)
    assert sm.default_rows_per_program(2048, 1024) == 64
    assert sm.default_rows_per_program(2048, 2048) == 32
    assert sm.default_rows_per_program(7, 16) == 8
    assert sm.default_rows_per_program(1, 16) == 1
    assert sm.default_rows_per_program(100_000, 16) == 256
    assert sm.default_rows_per_program(4, 65536) == 1
    # GPU: one row a program for long rows (the measured fast path), up to 16K-element tiles for short
    monkeypatch.setattr(sm.backend, "INTERPRET", False)
    assert sm.default_rows_per_program(8192, 128) == 128
    assert sm.default_rows_per_program(8192, 1024) == 16
    assert sm.default_rows_per_program(8192, 16) == 256
    assert sm.default_rows_per_program(3, 128) == 4
    assert sm.default_rows_per_program(4096, 2048) == 1
    assert sm.default_rows_per_program(64, 32768) == 1


def test_trace_scores_use_several_rows_per_program():
    # what kernels.trace.scores_softmax_counts runs, N x N scores with the default tiling: in the
    # interpreter all 256 rows in one program (a 256 x 256 tile) instead of one program per row
    x = _randn(256, 256, torch.float32, seed=13)
    for variant in sm.VARIANTS:
        block = sm.default_block(256, torch.float32, variant)
        if backend.INTERPRET:
            assert sm.default_rows_per_program(256, block) == 256
        y, counted = sm.softmax(x, variant, return_counts=True)
        _assert_close(y, x, f"{variant} 256x256 default rows per program")
        assert counted == traffic.softmax(variant, 256, 256)


# ---------------------------------------------------------------- GPU, compiled
@pytest.mark.gpu  # tests/conftest.py skips it without CUDA
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("variant", sm.VARIANTS)
def test_gpu_large(variant, dtype):
    rows, cols = (64, 100_000) if variant != "single_pass" else (64, 32_768 - 3)
    x = _randn(rows, cols, dtype, seed=5)
    out = torch.full_like(x, float("nan"))
    y, counted = sm.softmax(x, variant, out=out, return_counts=True)
    _assert_close(y, x, f"{variant} {dtype} {rows}x{cols}")
    model = traffic.softmax(variant, rows, cols)
    assert counted == model, f"{variant} {rows}x{cols}: kernel counted {counted}, model says {model}"


@pytest.mark.gpu  # tests/conftest.py skips it without CUDA
def test_gpu_overflow_and_trajectory():
    x = _randn(8, 5000, torch.float16, scale=100.0, seed=6)
    assert not torch.isfinite(sm.softmax(x, "naive")).all()
    for variant in ("safe", "online", "single_pass"):
        _assert_close(sm.softmax(x, variant), x, f"{variant} on fp16 randn*100")
    row = _randn(1, 100_000, torch.float32, seed=7)[0]
    m, d = sm.online_trajectory(row, 4096)
    ref = reference.softmax_online(row[None, :], 4096)
    assert np.array_equal(m, ref["m_traj"][0]), "m differs from the reference"
    rel = np.abs(d - ref["d_traj"][0]) / ref["d_traj"][0]
    assert rel.max() <= 1e-5, f"d differs by up to {rel.max():.3g} relative (ex2.approx, 25 chunks)"


@pytest.mark.gpu  # tests/conftest.py skips it without CUDA
def test_gpu_fast_path_has_no_counting_code():
    x = _randn(4, 5000, torch.float32, seed=8)
    y = torch.empty_like(x)
    args = (y, x, y, y, y, y.stride(0), x.stride(0), 0, x.shape[0], x.shape[1])
    fast = sm.softmax_online_kernel[(4,)](*args, BLOCK=1024, CHUNK=1024, ROWS=1, COUNT=False, TRACE=False)
    counted = sm.softmax_online_kernel[(4,)](*args[:2], torch.zeros(2, dtype=torch.int64, device="cuda"),
                                           *args[3:], BLOCK=1024, CHUNK=1024, ROWS=1, COUNT=True, TRACE=False)
    assert "atom" not in fast.asm["ptx"], "COUNT=False still compiles an atomic"
    assert "atom" in counted.asm["ptx"]


@pytest.mark.gpu  # tests/conftest.py skips it without CUDA
@pytest.mark.parametrize("variant", sm.VARIANTS)
def test_gpu_short_rows_several_per_program(variant):
    # 8192 x 128 takes 128 rows a program by default; 8191 leaves the last program ragged
    rows, cols = 8191, 128
    assert sm.default_rows_per_program(rows, sm.default_block(cols, torch.float32, variant)) == 128
    x = _randn(rows, cols, torch.float32, seed=14)
    out = torch.full_like(x, float("nan"))
    y, counted = sm.softmax(x, variant, out=out, return_counts=True)
    _assert_close(y, x, f"{variant} {rows}x{cols}")
    assert counted == traffic.softmax(variant, rows, cols)


# ---------------------------------------------------------------- the softmax backward of one row
@pytest.mark.parametrize("n", [1, 3, 100, 1000])
def test_softmax_backward_kernel_matches_the_jacobian(n):
    """dS = P o (dP - D) from the kernel against (diag(P) - P P^T) dP in float64, on ragged lengths
    (BLOCK is the next power of two: masked lanes). float32 products of O(1) numbers: 1e-6."""
    from kernels import softmax_bwd

    rng = np.random.default_rng(n)
    p = rng.random(n)
    p /= p.sum()
    dp = rng.standard_normal(n) * 3
    ds, d = softmax_bwd.softmax_backward(p, dp)
    p32, dp32 = (a.astype(np.float32).astype(np.float64) for a in (p, dp))
    want = reference.softmax_backward_row(p32, dp32)
    assert ds.shape == (n,) and abs(d - want["d"]) < 1e-6 * max(1.0, abs(want["d"]))
    assert np.max(np.abs(ds - want["ds_jacobian"])) < 1e-6
    if n == 1:
        assert ds[0] == 0.0  # one key: P = 1, J = P(1 - P) = 0


def test_softmax_backward_example_from_the_post():
    """P = [0.1, 0.5, 0.4]: J's last row is (-0.04, -0.2, 0.24), so (J dP)_3 = -0.04a - 0.2b + 0.24c."""
    from kernels import softmax_bwd

    for a, b, c in ((1.0, 2.0, 3.0), (0.0, 0.0, 1.0), (-2.0, 0.5, 7.0)):
        ds, d = softmax_bwd.softmax_backward([0.1, 0.5, 0.4], [a, b, c])
        assert ds[2] == pytest.approx(-0.04 * a - 0.2 * b + 0.24 * c, abs=1e-6)
        assert d == pytest.approx(0.1 * a + 0.5 * b + 0.4 * c, abs=1e-6)


@pytest.mark.parametrize("p, dp, words", [
    ([0.5, 0.5], [1.0], "same length"), ([[0.5, 0.5]], [[1.0, 2.0]], "1-D"), ([], [], "length"),
    ([0.5, np.nan], [1.0, 2.0], "finite"), (np.full(5000, 2e-4), np.zeros(5000), "length"),
])
def test_softmax_backward_refuses_bad_rows(p, dp, words):
    from kernels import softmax_bwd

    with pytest.raises(ValueError, match=words):
        softmax_bwd.softmax_backward(p, dp)


def test_softmax_refuses_an_out_with_overlapping_rows():
    x = torch.randn(4, 32)
    with pytest.raises(ValueError, match="rows that do not overlap"):
        sm.softmax(x, "online", out=torch.empty(1, 32).expand(4, 32))
