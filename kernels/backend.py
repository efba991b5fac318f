"""Pick where the kernels run, before anything imports triton.

CUDA present -> the kernels are compiled for the GPU. No CUDA, or FA_VIZ_FORCE_CPU=1 ->
TRITON_INTERPRET=1 is set first and the very same @triton.jit source runs on CPU tensors
in Triton's interpreter. Every module in kernels/ imports this one before triton.

Not for: choosing block sizes or anything else about the kernels themselves.
"""
import os
import sys

FORCE_CPU_ENV = "FA_VIZ_FORCE_CPU"


def _want_cpu() -> bool:
    if os.environ.get(FORCE_CPU_ENV, "") not in ("", "0"):
        return True
    if os.environ.get("TRITON_INTERPRET", "") not in ("", "0"):
        return True
    try:
        import torch
    except ImportError:
        return True
    return not torch.cuda.is_available()


INTERPRET = _want_cpu()
if INTERPRET:
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            "triton was imported before kernels.backend could set TRITON_INTERPRET=1; "
            "import kernels (or set TRITON_INTERPRET=1) first"
        )
    os.environ["TRITON_INTERPRET"] = "1"

try:
    import triton  # noqa: F401  (imported here, after the switch above)

    HAVE_TRITON = True
except ImportError:  # macOS / Windows: no triton wheels; the app replays recorded traces
    HAVE_TRITON = False

DEVICE = "cpu" if INTERPRET else "cuda"


def triton_version() -> str:
    if not HAVE_TRITON:
        return "not installed"
    import triton

    return triton.__version__


def device_name() -> str:
    if INTERPRET:
        return "CPU"
    import torch

    return torch.cuda.get_device_name()


def describe() -> str:
    """One human line: where the kernels run."""
    if not HAVE_TRITON:
        return "no triton on this machine · replaying recorded traces only"
    mode = "Triton interpreter" if INTERPRET else "compiled"
    return f"{device_name()} · triton {'.'.join(triton_version().split('.')[:2])} · {mode}"


def require_triton() -> None:
    if not HAVE_TRITON:
        raise RuntimeError(
            "triton is not installed on this machine (it ships wheels for Linux only); "
            "load a recorded trace instead"
        )


def torch_build_problem() -> str | None:
    """A sentence when this PyTorch is a CUDA build on a machine whose CUDA is not usable (the
    CPU index could not be reached and pip fell back to PyPI's CUDA build: gigabytes, no error),
    else None."""
    try:
        import torch
    except ImportError:
        return None
    cuda = getattr(torch.version, "cuda", None)
    if cuda is None or torch.cuda.is_available():
        return None
    return (f"This PyTorch ({torch.__version__}) is a CUDA {cuda} build on a machine without a usable GPU: several "
            "GB of NVIDIA libraries it cannot use. On a machine without a GPU, install the CPU build: "
            "pip uninstall -y torch && pip install torch --index-url https://download.pytorch.org/whl/cpu "
            "(README, Troubleshooting).")

