"""The clock every benchmark uses, the ceilings measured beside it, and SDPA pinned to one backend.

Method: triton.testing.do_bench (CUDA events, warm-up, median of repeats). The implementations of
one case are timed in interleaved rounds (kernels.tuning.interleaved_medians, the tuner's method),
so a clock that drifts during the run costs every implementation alike.
"""
import datetime
import platform
import sys

from kernels.tuning import interleaved_medians

TIME_ROUNDS = 3


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def median_ms(fn, warmup=25, rep=100) -> float:
    import triton

    return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


def graph_ms(fn) -> float:
    """Median ms of fn replayed from a CUDA graph: the GPU's time alone, without the host."""
    import triton

    return float(triton.testing.do_bench_cudagraph(fn, rep=100, return_mode="median"))


def interleaved_ms(fns: dict, rounds: int = TIME_ROUNDS) -> tuple[dict, dict]:
    """({name: ms}, {name: error}): each implementation's median, timed in interleaved rounds."""
    return interleaved_medians(fns, rounds, median_ms)


def clocks() -> dict | None:
    """The GPU's SM clock now and its maximum, MHz (nvidia-smi), or None where it cannot be asked."""
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm,clocks.max.sm", "--format=csv,noheader,nounits",
                              "--id=0"], capture_output=True, text=True, timeout=10, check=True).stdout
        now, most = (int(x) for x in out.strip().splitlines()[0].split(","))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return {"sm_mhz": now, "sm_max_mhz": most}


def environment() -> dict:
    """What a result was measured on: GPU, versions (cuDNN's too: SDPA's cuDNN backend is timed
    against), the SM clocks at the start and the date."""
    import torch
    import triton

    return {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "clocks": clocks(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "timing_rounds": TIME_ROUNDS,
    }


def ceilings() -> dict:
    """Copy bandwidth (bytes read + written) and fp16 matmul throughput, measured now."""
    import torch

    copy_tbs = copy_tbps(1 << 28)  # 1 GiB of fp32
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.float16) for _ in range(2))
    ms = median_ms(lambda: a @ b)
    return {"copy_TBps": copy_tbs, "matmul_fp16_TFLOPs": 2 * 8192**3 / ms / 1e9}


def copy_tbps(n: int, dtype="float32") -> float:
    """TB/s of a device-to-device copy of n elements, counting bytes read + written."""
    import torch

    src = torch.randn(n, device="cuda").to(getattr(torch, dtype))
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src))
    return 2 * src.numel() * src.element_size() / ms / 1e9


def sdpa(name: str):
    """torch's scaled_dot_product_attention pinned to one backend, e.g. "FLASH_ATTENTION"."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    be = getattr(SDPBackend, name)

    def run(q, k, v, causal):
        with sdpa_kernel([be]):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return run


def attention_cases(case, what: str, seq_lens, head_dims, causals, progress=None) -> list[dict]:
    """Every (head_dim, causal, seq_len) through case(d, causal, n) -> rows, with progress(fraction,
    message) between cases and the GPU's cache allocator emptied after each."""
    import torch

    rows = []
    cases = [(d, c, n) for d in head_dims for c in causals for n in seq_lens]
    for idx, (d, causal, n) in enumerate(cases):
        if progress:
            progress(idx / len(cases), f"{what} d={d} causal={causal} N={n}")
        rows += case(d, causal, n)
        torch.cuda.empty_cache()
    if progress:
        progress(1.0, f"{what} done")
    return rows


def attention_flops(batch, heads, seq_len, head_dim, causal) -> float:
    """4 * B * H * N^2 * D, halved when causal (FlashAttention's convention)."""
    f = 4.0 * batch * heads * seq_len * seq_len * head_dim
    return f / 2 if causal else f
