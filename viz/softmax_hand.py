"""The Softmax page at the size of the documents' examples: every number of a short row (the row, the
online kernel's running m and d after each chunk, the outputs) with this step's equation, the
seeds' presets with what each document prints or gets wrong, and the underflow demonstration.

Not for: the stepping (viz/pages/softmax.py) or anything the kernels compute (kernels/).
"""
import math

import numpy as np
import streamlit as st

from kernels import softmax_hand, steps
from viz import state

SHOW_ALL = softmax_hand.MAX_VALUES  # rows up to this long show every number


def g(v: float, digits: int = 5) -> str:
    """A number as the page prints it (LaTeX): digits significant digits, -inf as \\infty."""
    if math.isinf(v):
        return r"-\infty" if v < 0 else r"\infty"
    if math.isnan(v):
        return r"\mathrm{NaN}"
    s = f"{v:.{digits}g}"
    if "e" in s:
        m, e = s.split("e")
        return rf"{m} \times 10^{{{int(e)}}}"
    return s


def typed_url(row: tuple | None) -> dict:
    """The URL's `values` for a typed row (its numbers as typed, exactly), {} otherwise."""
    return {} if row is None else {"values": softmax_hand.format_row(row)}


def step_tex(trace, k: int) -> str:
    """This step's equation with the kernel's numbers: pass 1 folds chunk j into the running (m, d);
    the last pass writes y = e^(x - m) / d for the chunk's elements."""
    c = trace.config
    p, ch = steps.softmax_position(c.length, c.block, k)
    lo, hi = ch * c.block, min((ch + 1) * c.block, c.length)
    x = trace.x[lo:hi].astype(np.float64)
    if p == 0:
        m_old = float(trace.m[ch - 1]) if ch else -math.inf
        d_old = float(trace.d[ch - 1]) if ch else 0.0
        m_new, d_new = float(trace.m[ch]), float(trace.d[ch])
        s = float(np.exp(x - m_new).sum())
        xs = ", ".join(g(v) for v in x)
        return (rf"\begin{{aligned}} m_{{{ch + 1}}} &= \max(m_{{{ch}}},\ \max[{xs}])\\ &= \max({g(m_old)},\ "
                rf"{g(float(x.max()))}) = \mathbf{{{g(m_new)}}}\\[6pt] d_{{{ch + 1}}} &= d_{{{ch}}}\, e^{{m_{{{ch}}} - "
                rf"m_{{{ch + 1}}}}} + \textstyle\sum e^{{x - m_{{{ch + 1}}}}}\\ &= {g(d_old)} \cdot e^{{{g(m_old)} - "
                rf"({g(m_new)})}} + {g(s)} = \mathbf{{{g(d_new)}}} \end{{aligned}}")
    m, d = float(trace.m[-1]), float(trace.d[-1])
    terms = [rf"\frac{{e^{{{g(v)} - {g(m)}}}}}{{{g(d)}}} = \mathbf{{{g(float(y))}}}"
             for v, y in zip(x, trace.y[lo:hi], strict=True)]
    lines = r"\\ ".join(r",\quad ".join(terms[i:i + 2]) for i in range(0, len(terms), 2))  # two a line
    return rf"y = \frac{{e^{{x - m}}}}{{d}}:\quad \begin{{gathered}} {lines} \end{{gathered}}"


def numbers_table(trace, k: int) -> list[dict]:
    """One row per element: x, the running (m, d) after its chunk (on the chunk's last element), the
    online kernel's y and float64's; what this step has not reached yet is blank."""
    c = trace.config
    p, ch = steps.softmax_position(c.length, c.block, k)
    rows = []
    for i, v in enumerate(trace.x):
        j = i // c.block
        last = i == min((j + 1) * c.block, c.length) - 1
        seen = p > 0 or j <= ch
        written = (p == 1 and j <= ch) or p > 1  # online writes y in its second pass
        rows.append({"i": i, "x": float(v), "m": float(trace.m[j]) if last and seen else None,
                     "d": float(trace.d[j]) if last and seen else None,
                     "y": float(trace.y[i]) if written else None, "y f64": float(trace.ref_y[i])})
    return rows


def hand_section(spec, trace, k: int, compact: bool = False) -> None:
    """Every number of a short row at this step, and the step's equation."""
    if trace.config.length > SHOW_ALL:
        return
    fmt = st.column_config.NumberColumn(format="%.5g")
    t1, t2 = st.columns([1, 1.2]) if not compact else st.columns([1, 1.35])
    t1.dataframe(numbers_table(trace, k), hide_index=True, key=spec.key("hand_table"), width="stretch",
                 placeholder="", height=min(36 + 35 * trace.config.length, 300 if compact else 600),
                 column_config={"i": st.column_config.NumberColumn(width="small"),
                                **{n: fmt for n in ("x", "m", "d", "y", "y f64")}})
    with t2, st.container(key=spec.key("hand_eq")):
        st.latex(step_tex(trace, k))
        if not compact:
            st.caption("m, d: the online kernel's running max and sum after each chunk (TRACE on), beside the "
                       "chunk's last element; the sum of e^(x − m) is float64 of the kernel's x and m; y: the online "
                       "kernel's output, written in its second pass; y f64: float64's.")


def preset_links(spec) -> None:
    st.markdown("**The documents' worked examples** (each opens this page on its numbers):")
    cols = st.columns(len(softmax_hand.PRESETS))
    for col, p in zip(cols, softmax_hand.PRESETS.values(), strict=True):
        col.page_link(spec.file, label=p.label, icon=":material/menu_book:", help=p.title,
                      query_params={"scenario": "typed", "values": softmax_hand.format_row(p.values),
                                    "block": str(p.block)})


def preset_notes(trace, row: tuple | None, counts: dict) -> None:
    """What the preset's document prints or says, beside what the kernels give (row: the typed row)."""
    c = trace.config
    if row is None:
        return
    p = softmax_hand.preset_for(row, c.block)
    if p is None:
        return
    st.markdown(f"#### {p.title}")
    st.markdown(p.about)
    if p.printed:
        shown = ", ".join(f"{y:.4f}" for y in trace.y)
        doc = ", ".join(f"{y:.4f}" for y in p.printed)
        same = all(f"{a:.4f}" == f"{b:.4f}" for a, b in zip(trace.y, p.printed, strict=True))
        st.markdown(f"The post prints `[{doc}]`; the online kernel, to 4 decimals: `[{shown}]` "
                    f"({'the same' if same else 'they differ'}).")
    L = c.length
    for claim in p.claims:
        if claim == "naive-3":
            n = counts["naive"]
            st.markdown(f"The review: naive softmax takes 3 accesses per element (2 loads, 1 store). The naive kernel "
                        f"counted {n['loads']} loads and {n['stores']} stores on these {L} values: "
                        f"{(n['loads'] + n['stores']) / L:g} per element.")
        elif claim == "safe-4":
            n = counts["safe"]
            st.markdown(f"And safe softmax 4 (3 loads, 1 store): the safe kernel counted {n['loads']} loads and "
                        f"{n['stores']} stores, {(n['loads'] + n['stores']) / L:g} per element.")
        elif claim == "naive-store":
            n = counts["naive"]
            st.markdown(f"**The blog is wrong here:** it counts naive softmax's 3 accesses as load x, store e^x, load "
                        f"e^x, and so leaves out the store of the output y (its scheme would take 4). The naive "
                        f"kernel recomputes e^x instead of storing it: {n['loads']} loads (x twice) and "
                        f"{n['stores']} stores (y), {(n['loads'] + n['stores']) / L:g} per element.")
        elif claim == "online-equals-safe":
            here = state.safe_vs_online(tuple(float(v) for v in trace.x), c.block)
            wide = state.safe_vs_online_randn(64, 16, c.seed)
            st.markdown(f"**\"Online gives the same result as safe\" holds to rounding only:** the two kernels sum "
                        f"e^(x − m) in different orders. On this row {here['differ']} of {here['n']} float32 outputs "
                        f"differ (max {here['max_ulp']} ulp); on the randn row of 64 (seed {c.seed}) at chunk 16, "
                        f"{wide['differ']} of {wide['n']} differ, by at most {wide['max_ulp']} ulp.")


def underflow(spec, trace) -> None:
    """naive, safe, online computing in float32 on a row whose every e^x underflows to 0."""
    from viz import controls
    from viz.figures import softmax as fsm
    from viz.sections import chart

    c = trace.config
    st.markdown("**Underflow, float32 arithmetic: the randn row shifted to max −110**: e<sup>x</sup> is 0 in "
                "float32 below −103.28 (ln of the smallest subnormal, 2<sup>−149</sup>), so every term of naive "
                "softmax's sum is 0 and it returns 0 / 0 = NaN; safe and online subtract the max first.",
                unsafe_allow_html=True)
    u = state.softmax_underflow(c.length, c.block, c.seed)
    if u is None:
        st.caption(controls.plain("The underflow demonstration runs the kernels: Triton is not installed here."))
        return
    outs = {v: u["out"][i] for i, v in enumerate(("naive", "safe", "online"))}
    chart(fsm.overflow_figure(u["x"], outs, u["ref"], height=280), spec.key("underflow"))
    bad = {v: int(np.isnan(y).sum()) for v, y in outs.items()}
    st.caption(f"Computed by the kernels in {u['math']}: naive {bad['naive']} NaN of {c.length}, safe "
               f"{bad['safe']}, online {bad['online']}; max |safe − float64| = "
               f"{np.max(np.abs(outs['safe'] - u['ref'])):.1e}.")
