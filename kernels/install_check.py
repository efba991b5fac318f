"""`python -m kernels.install_check`: after an install, say where the kernels will run and fail
loudly (exit 1) on a PyTorch CUDA build on a machine without a usable GPU (pip's silent fallback
when PyTorch's CPU index cannot be reached).

Not for: picking the backend (kernels/backend.py does, on import).
"""
import sys

from kernels import backend

if __name__ == "__main__":
    print(backend.describe())
    problem = backend.torch_build_problem()
    if problem:
        print(problem, file=sys.stderr)
    sys.exit(1 if problem else 0)
