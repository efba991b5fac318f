"""`python -m bench`: the app's own kernels (TRACE off) timed against PyTorch on the same GPU.

One module per part: timing.py (the clock, the ceilings, SDPA pinned to a backend), attention.py
(forward), backward.py (forward + backward), softmax.py, small.py (the Benchmarks page's live
run), report.py (the table); results/ holds the committed runs. Imports kernels/, never the other
way round.
"""
