"""Everything that draws: figure builders (figures.py), cached calls into kernels/ (state.py) and
the Streamlit pages (pages/). Reads traces; never launches a kernel outside state.py."""
