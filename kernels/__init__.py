"""The kernels and everything that computes: no Streamlit or Plotly below here.

Importing any kernels module imports kernels.backend first (here), which picks the GPU or
Triton's interpreter (TRITON_INTERPRET=1) before triton itself is imported.
"""
from kernels import backend  # noqa: F401
