"""The FlashAttention page's standard-attention section: the same q, k, v through the three kernels of
kernels/standard.py (S = QKᵀ to HBM, P = softmax(S), O = PV), stepped for the followed q-block's rows,
with S and P's HBM round trips in bytes beside FlashAttention's none, the equations with the kernels'
numbers, and the output against float64.

Not for: FlashAttention's own stepping (viz/pages/attention.py) or anything kernels/ computes.
"""
import html

import numpy as np
import streamlit as st

from kernels import backend, limits, traffic
from viz import state
from viz.figures import standard as fstd
from viz.figures.memory import ITEMSIZE, nice_bytes
from viz.sections import chart


def why_not(c) -> str:
    """Why this config cannot run the standard kernels here; "" when it can."""
    if not backend.HAVE_TRITON:
        return "triton is not installed here: the standard kernels cannot run (scenes replay FlashAttention only)"
    if not c.masks().plain_or_causal or c.n_rows != c.seq_len:
        return "the standard kernels run plain and causal attention only (no window, documents, GQA or decode)"
    if c.dtype not in limits.dtypes():
        return f"{c.dtype} does not run on this backend"
    return ""


def equations(res, trace, step, row: int, col: int) -> list[str]:
    """The equation of this step for S[row, col], P[row, col] or O[row, 0], with the kernels' numbers."""
    c = trace.config
    if step.kernel == 1:
        if not np.isfinite(res.s[row, col]):
            return [f"S[{row}, {col}] = −∞ (causal: key {col} is after query {row}; still written to HBM)"]
        dot = float(np.dot(trace.q[row].astype(np.float64), trace.k[col].astype(np.float64)))
        return [f"S[{row}, {col}] = (q_{row} · k_{col}) × sm_scale = {dot:.6g} × {c.sm_scale:.6g} = {res.s[row, col]:.6g}"]
    s = res.s[row].astype(np.float64)
    m = float(np.max(s))
    ell = float(np.sum(np.exp(s - m)))
    if step.kernel == 2:
        return [f"m = max S[{row}, :] = {m:.6g}, ℓ = Σ e^(S[{row}, :] − m) = {ell:.6g}",
                f"P[{row}, {col}] = e^(S[{row}, {col}] − m) / ℓ = {np.exp(s[col] - m):.6g} / {ell:.6g} "
                f"= {res.p[row, col]:.6g}"]
    end = min((step.kv_block + 1) * c.block_n, c.seq_len)
    part = float(np.dot(res.p[row, :end].astype(np.float64), trace.v[:end, 0].astype(np.float64)))
    eq = [f"O[{row}, 0] so far = Σ_(key < {end}) P[{row}, key] V[key, 0] = {part:.6g}"]
    if end == c.seq_len:
        eq.append(f"O[{row}, 0] = {res.out[row, 0]:.6g} (written once, after the last tile)")
    return eq


def _run(trace):
    """The three kernels on the trace's q, k, v (cached), or None with the reason shown."""
    c = trace.config
    try:
        return state.standard_attention(trace.q, trace.k, trace.v, c.causal, c.block_m, c.block_n, c.dtype)
    except (TimeoutError, ValueError) as err:
        st.warning(str(err))
        return None


def _label(trace, steps, k: int, follow: int) -> str:
    from kernels import standard

    c, step = trace.config, steps[k]
    rows = range(follow * c.block_m, min((follow + 1) * c.block_m, c.seq_len))
    col = 0 if step.kv_block is None else step.kv_block * c.block_n
    where = "" if step.kv_block is None else f", keys {col}–{min(col + c.block_n, c.seq_len) - 1}"
    return (f"**Kernel {step.kernel}: {standard.KERNEL_NAMES[step.kernel]}** · rows {rows.start}–{rows.stop - 1} "
            f"(q-block {follow}){where} · step {k + 1} of {len(steps)}")


def stepped(spec, src, trace, follow: int, here) -> None:
    """?std=1: standard attention's steps as the page's own, one screen a step in presenter view
    (the same figures and equations as the section, the stepper's keys, the URL's step)."""
    from kernels import standard
    from viz import page, stepping, urlstate

    c = trace.config
    reason = why_not(c)
    if reason:
        st.warning(f"Standard attention cannot be stepped here: {reason}.")
        _back(spec)
        return
    res = _run(trace)
    if res is None:
        return
    steps = standard.walk(c.seq_len, c.block_n)
    presenting = st.session_state[stepping.PRESENT]

    def draw(k: int) -> None:
        rows = range(follow * c.block_m, min((follow + 1) * c.block_m, c.seq_len))
        row = min(int(spec.get("row")), len(rows) - 1) + rows.start
        urlstate.write(src.url({"q_block": follow, "row": row, "step": k + 1, "std": True}))
        label = _label(trace, steps, k, follow).replace("**", "")
        page.step_header(spec, len(steps), k, here=here, label_html=f"<b>Standard attention</b> · {label}")
        _step_body(spec, trace, res, steps, k, follow, row, compact=presenting)

    stepping.step_fragment(spec.prefix, len(steps), draw, here)
    if not presenting:
        _back(spec)


def _back(spec) -> None:
    from viz import stepping

    def off():
        st.session_state[spec.key("std")] = False
        stepping.restart(spec.prefix)

    st.button("Back to FlashAttention's tiles", key=spec.key("std_off"), on_click=off)


def section(spec, trace, follow: int) -> None:
    from viz import stepping

    c = trace.config
    st.markdown("#### Standard attention, three kernels: S and P through HBM")
    reason = why_not(c)
    if reason:
        st.caption(f"Standard attention beside FlashAttention: {reason}.")
        return
    res = _run(trace)
    if res is None:
        return
    from kernels import standard

    def on():
        st.session_state[spec.key("std")] = True
        stepping.restart(spec.prefix)

    st.button("Step it as the page's steps (one screen a step in presenter view; the URL's std=1)",
              key=spec.key("std_on"), on_click=on)
    steps = standard.walk(c.seq_len, c.block_n)
    k = st.slider("standard attention step", 1, len(steps), 1, key=spec.key("std_step")) - 1
    rows = range(follow * c.block_m, min((follow + 1) * c.block_m, c.seq_len))
    row = min(int(spec.get("row")), len(rows) - 1) + rows.start
    st.markdown(_label(trace, steps, k, follow))
    _step_body(spec, trace, res, steps, k, follow, row, compact=False)


def _step_body(spec, trace, res, steps, k: int, follow: int, row: int, compact: bool) -> None:
    """One step of the three kernels: its equation with the kernels' numbers, the followed rows of S
    and P in HBM, and the bytes of S and P moved (compact: one projector screen, side by side)."""
    from kernels import standard

    c = trace.config
    step = steps[k]
    rows = range(follow * c.block_m, min((follow + 1) * c.block_m, c.seq_len))
    col = 0 if step.kv_block is None else step.kv_block * c.block_n
    moved = standard.moved(steps, k, len(rows), c.seq_len, c.block_n)
    size = ITEMSIZE[c.dtype]
    for line in equations(res, trace, step, row, col):
        if compact:
            st.html(f"<div class='fa-words'>{html.escape(line)}</div>")
        else:
            st.markdown(f"`{line}`")
    s_done = c.seq_len if step.kernel > 1 else min((step.kv_block + 1) * c.block_n, c.seq_len)
    rows_fig = fstd.rows_figure(res.s[rows.start:rows.stop], res.p[rows.start:rows.stop], s_done, step.kernel > 1,
                                moved["p_loads"] // len(rows), rows.start, height=400 if compact else 300)
    bytes_fig = fstd.bytes_figure(moved, res.counters, size, height=400 if compact else 240)
    sp = sum(moved.values()) * size
    if compact:
        left, right = st.columns([1.25, 1])
        with left:
            chart(rows_fig, spec.key("std_rows"))
        with right:
            chart(bytes_fig, spec.key("std_bytes"))
        st.caption(f"These rows: {nice_bytes(sp)} of S and P through HBM so far (derived from the kernels' walk); "
                   f"FlashAttention: 0. max |O − float64| = "
                   f"{float(np.max(np.abs(res.out.astype(np.float64) - trace.ref_out))):.2e}.")
        return
    chart(rows_fig, spec.key("std_rows"))
    chart(bytes_fig, spec.key("std_bytes"))
    whole = traffic.counted_bytes(res.counters, tuple(res.counters), size)
    err = float(np.max(np.abs(res.out.astype(np.float64) - trace.ref_out)))
    st.caption(f"These rows have moved {nice_bytes(sp)} of S and P through HBM so far; the whole run moved "
               f"{nice_bytes(sum(res.counters[x] for x in ('s_stores', 's_loads', 'p_stores', 'p_loads')) * size)} of "
               f"S and P ({nice_bytes(whole)} in all, counted by the kernels); FlashAttention: 0 bytes of S and P. "
               f"Check: max |O − float64| = {err:.2e} ({c.dtype}; FlashAttention: {trace.max_abs_err:.2e}).")
