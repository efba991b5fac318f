"""Kernels, traces and models. Importing the package picks the backend first."""
from kernels import backend  # noqa: F401  (must run before triton is imported)
