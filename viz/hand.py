"""Attention with your own numbers: a small Q, K, V typed into tables, run through the real kernel.

The FlashAttention page shows this instead of a scene or a generated input when the sidebar's
"your own Q, K, V" is on or the URL carries `hand=1` (with `q=1,0;0,1;...`, `k=`, `v=`, `block_m=`,
`block_n=`, `step=`). Every cell is parsed here, and anything that is not a finite number, a row
with missing cells, an empty row or too many values is an st.error naming the table, the row and
the column: nothing is dropped. At this size the page prints the whole s, p, m, ℓ and acc of each
step with the update equations.

Not for: padding the small tiles for the kernel (kernels/hand.py) or the trace (kernels/trace.py).
"""
import math
from types import SimpleNamespace

import numpy as np
import streamlit as st

from kernels import limits, steps, trace_io
from kernels.trace import TraceConfig
from viz import page, screens, stepping, urlstate
from viz.figures import attention as fa

P = "hand"  # session keys hand.*
SPEC = SimpleNamespace(prefix=P, key=lambda name: f"{P}.{name}")
NAMES = ("Q", "K", "V")
# Seed 004 splits a row x in R^{2B} into two blocks x(1), x(2) and prints no numbers: B = 2 here, four
# keys in two kv-blocks, the larger scores in the second block so that its step rescales.
SEED_004 = {"q": "1,0;0,1;1,1;-1,0.5", "k": "1,0;0,1;2,1;1,2", "v": "1,0;0,1;2,2;-1,3", "block_m": 2, "block_n": 2}
URL = ("hand", "q", "k", "v", "block_m", "block_n", "step")  # this view's parameters (besides present, theme)
PRESETS = {"seed 004: two kv-blocks of 2": SEED_004}


def preset_query(values: dict) -> str:
    """The URL query that opens the page with these numbers (commas and semicolons as typed)."""
    return "&".join(f"{k}={v}" for k, v in {"hand": 1, **values}.items())


def parse_cell(table: str, r: int, c: int, text) -> float:
    """One cell as a finite float, or a ValueError naming the table, row and column (1-based)."""
    where = f"{table} row {r + 1}, column {c + 1}"
    try:
        x = float(str(text).strip())
    except ValueError:
        raise ValueError(f"{where}: {str(text)[:20]!r} is not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"{where}: {text!r} is not a finite number (no NaN or inf)")
    return x


def parse_rows(table: str, rows: list) -> np.ndarray:
    """rows (lists of cell texts; blank cells None or '') -> (n, d) float32, or a ValueError naming the
    field: an empty row, a ragged row, a non-number, NaN or inf, more than the limits."""
    if not rows:
        raise ValueError(f"{table} has no rows: type at least one")
    out = []
    for r, row in enumerate(rows):
        cells = ["" if x is None or (isinstance(x, float) and math.isnan(x)) else str(x).strip() for x in row]
        while cells and cells[-1] == "":
            cells.pop()
        if not cells:
            raise ValueError(f"{table} row {r + 1} is empty: fill it in or delete it")
        if "" in cells:
            raise ValueError(f"{table} row {r + 1}, column {cells.index('') + 1} is blank")
        out.append([parse_cell(table, r, c, x) for c, x in enumerate(cells)])
    widths = sorted({len(x) for x in out})
    if len(widths) > 1:
        r = next(i for i, x in enumerate(out) if len(x) != len(out[0]))
        raise ValueError(f"{table} has ragged rows: row 1 has {len(out[0])} values, row {r + 1} has {len(out[r])}")
    if len(out) > limits.MAX_HAND_SEQ_LEN:
        raise ValueError(f"{table} has {len(out)} rows: at most {limits.MAX_HAND_SEQ_LEN} (seq_len)")
    if widths[0] > limits.MAX_HAND_HEAD_DIM:
        raise ValueError(f"{table} has {widths[0]} values a row: at most {limits.MAX_HAND_HEAD_DIM} (head_dim)")
    return np.asarray(out, dtype=np.float32)


def parse_text(table: str, text: str) -> np.ndarray:
    """'1,0;0,1' (rows by ';', values by ',') -> parse_rows."""
    return parse_rows(table, [row.split(",") for row in str(text).split(";")])


def to_text(a: np.ndarray) -> str:
    return ";".join(",".join(f"{float(x):.7g}" for x in row) for row in a)


def check_together(q, k, v) -> None:
    """Q, K, V of one self-attention: the same number of rows and of values a row."""
    for name, a in zip(NAMES[1:], (k, v), strict=True):
        if a.shape != q.shape:
            raise ValueError(f"{name} has {a.shape[0]} rows of {a.shape[1]} values; Q has {q.shape[0]} of "
                             f"{q.shape[1]}: K and V need Q's shape (seq_len x head_dim)")


def block_parse(name: str, text, n: int) -> int:
    try:
        b = int(str(text))
    except ValueError:
        raise ValueError(f"{name} must be a whole number from 1 to {n} (seq_len), got {str(text)[:20]!r}") from None
    if not 1 <= b <= n:
        raise ValueError(f"{name} must be from 1 to {n} (seq_len), got {b}")
    return b


def defaults() -> None:
    ss = st.session_state
    if f"{P}.q" in ss:
        return
    given = dict(SEED_004)
    params = st.query_params
    if params.get("hand") == "1":
        given.update({n: params[n] for n in ("q", "k", "v", "block_m", "block_n") if n in params})
        if "step" in params:
            ss[f"{P}.url_step"] = params["step"]
    ss[f"{P}.q"], ss[f"{P}.k"], ss[f"{P}.v"] = (str(given[n]) for n in ("q", "k", "v"))
    ss[f"{P}.block_m"], ss[f"{P}.block_n"] = str(given["block_m"]), str(given["block_n"])
    stepping.defaults(P)
    asked = ss.pop(f"{P}.url_step", None)
    if asked is not None:
        try:
            ss[f"{P}.step"] = max(0, int(asked) - 1)
        except ValueError:
            ss[f"{P}.url_error"] = f"URL parameter step={asked[:20]!r} must be a whole number from 1; showing step 1."


def wanted() -> bool:
    ss = st.session_state
    ss.setdefault(f"{P}.on", st.query_params.get("hand") == "1")
    return bool(ss[f"{P}.on"])


def toggle() -> None:
    ss = st.session_state
    ss[f"{P}.on_w"] = wanted()
    st.toggle("your own Q, K, V", key=f"{P}.on_w", help="type a small Q, K, V (up to 16 x 8) and block sizes from 1; "
              "the URL's hand=1", on_change=_switched)


def _switched() -> None:
    ss = st.session_state
    ss[f"{P}.on"] = ss[f"{P}.on_w"]
    if not ss[f"{P}.on"]:  # the generated-input page reads its own parameters from the URL
        st.query_params.clear()


def _table(text: str) -> list:
    return [row.split(",") for row in text.split(";")]


def _editor(name: str) -> None:
    """A data_editor of text cells for one of Q, K, V; its edits go back into hand.<name> as text."""
    ss = st.session_state
    rows = _table(ss[f"{P}.{name.lower()}"])
    width = max(len(r) for r in rows)
    data = {f"d{c}": [r[c] if c < len(r) else "" for r in rows] for c in range(width)}
    key = f"{P}.editor.{name}.{ss.get(f'{P}.gen', 0)}"
    cols = {f"d{c}": st.column_config.TextColumn(f"d{c}") for c in range(width)}
    st.data_editor(data, key=key, num_rows="dynamic", column_config=cols, width="stretch",
                   on_change=lambda: _edited(name, key, rows, width))


def _edited(name: str, key: str, rows: list, width: int) -> None:
    ss = st.session_state
    delta = ss[key]
    rows = [list(r) + [""] * (width - len(r)) for r in rows]
    for r, changes in delta.get("edited_rows", {}).items():
        for col, val in changes.items():
            rows[int(r)][int(col[1:])] = "" if val is None else str(val)
    for added in delta.get("added_rows", []):
        rows.append([str(added.get(f"d{c}", "") or "") for c in range(width)])
    for r in sorted(delta.get("deleted_rows", []), reverse=True):
        del rows[r]
    ss[f"{P}.{name.lower()}"] = ";".join(",".join(r) for r in rows)


def _resize(dim: int) -> None:
    """head_dim changed: every table to that many columns (new ones 0, dropped ones gone)."""
    ss = st.session_state
    for n in ("q", "k", "v"):
        rows = _table(ss[f"{P}.{n}"])
        ss[f"{P}.{n}"] = ";".join(",".join((r + ["0"] * dim)[:dim]) for r in rows)
    ss[f"{P}.gen"] = ss.get(f"{P}.gen", 0) + 1


def _preset(values: dict) -> None:
    ss = st.session_state
    for n in ("q", "k", "v", "block_m", "block_n"):
        ss[f"{P}.{n}"] = str(values[n])
    ss[f"{P}.gen"] = ss.get(f"{P}.gen", 0) + 1
    stepping.restart(P)


def sidebar() -> None:
    ss = st.session_state
    st.markdown("**Your own Q, K, V**")
    cols = st.columns(2)
    ss[f"{P}.bm_w"], ss[f"{P}.bn_w"] = ss[f"{P}.block_m"], ss[f"{P}.block_n"]
    cols[0].text_input("block_m", key=f"{P}.bm_w", help="rows of Q per q-block, from 1",
                       on_change=lambda: (ss.update({f"{P}.block_m": ss[f"{P}.bm_w"]}), stepping.restart(P)))
    cols[1].text_input("block_n", key=f"{P}.bn_w", help="keys per kv-block, from 1",
                       on_change=lambda: (ss.update({f"{P}.block_n": ss[f"{P}.bn_w"]}), stepping.restart(P)))
    dim = max(len(r) for r in _table(ss[f"{P}.q"]))
    ss[f"{P}.dim_w"] = min(dim, limits.MAX_HAND_HEAD_DIM)
    st.number_input("head_dim (columns)", 1, limits.MAX_HAND_HEAD_DIM, key=f"{P}.dim_w",
                    on_change=lambda: _resize(int(ss[f"{P}.dim_w"])))
    for label, values in PRESETS.items():
        st.button(label, key=f"{P}.preset.{label}", on_click=_preset, args=(values,))
        st.markdown(f"[link to it](./attention?{preset_query(values)})")
    st.caption("Seed 004 splits a row x ∈ ℝ²ᴮ into two blocks and prints no numbers: here B = 2, four keys in "
               "two kv-blocks, the larger scores in the second, so its step rescales.")


@st.cache_data(max_entries=32, show_spinner=False)
def capture(fields: tuple, q: str, k: str, v: str):
    from kernels.trace import capture_trace
    from viz import state

    arrays = tuple(parse_text(n, t) for n, t in zip(NAMES, (q, k, v), strict=True))
    with state.kernel_turn("your own Q, K, V"):
        return capture_trace(TraceConfig(**dict(fields)), inputs=arrays)


def read() -> tuple:
    """(TraceConfig, q, k, v texts) from the state, or a ValueError naming the field."""
    ss = st.session_state
    texts = [ss[f"{P}.{n}"] for n in ("q", "k", "v")]
    q, k, v = (parse_text(n, t) for n, t in zip(NAMES, texts, strict=True))
    check_together(q, k, v)
    n, d = q.shape
    bm, bn = (block_parse(name, ss[f"{P}.{name}"], n) for name in ("block_m", "block_n"))
    return TraceConfig(seq_len=n, head_dim=d, block_m=bm, block_n=bn), [to_text(a) for a in (q, k, v)]


def walk(trace) -> list:
    return [s for i in range(trace.config.n_q_blocks) for s in steps.steps(trace, i)]


def url_values(cfg, texts, k: int) -> dict:
    q, kk, v = texts
    short = sum(len(t) for t in texts) <= 600
    return {"hand": 1, "block_m": cfg.block_m, "block_n": cfg.block_n, "step": k + 1,
            **({"q": q, "k": kk, "v": v} if short else {})}


def matrix(a: np.ndarray) -> str:
    """A whole matrix for st.latex, row 0 at the top."""
    a = np.atleast_2d(a)
    return r"\begin{bmatrix}" + r" \\ ".join(" & ".join(fa.tex_num(x) for x in row) for row in a) + r"\end{bmatrix}"


def tile_tex(trace, step, terse: bool = False) -> str:
    """The whole step: S_ij, the running max, P, alpha, l and acc of every row of the q-block; terse
    (presenter view): the numbers without the symbolic middle of each line."""
    c, slot = trace.config, trace.tile_slot(step.q_block)
    nr, nk = len(step.rows), len(step.keys)
    s = trace.s[slot, step.kv_block, :nr, :nk]
    p = trace.p[slot, step.kv_block, :nr, :nk]
    if step.prev_kv is None:
        m_old, l_old = np.full(nr, -np.inf), np.zeros(nr)
    else:
        m_old, l_old = (a[step.q_block, step.prev_kv, :nr] for a in (trace.m, trace.l))
    m_new, l_new, alpha = (a[step.q_block, step.kv_block, :nr] for a in (trace.m, trace.l, trace.alpha))
    acc_old, acc_new = (a[slot, step.kv_block, :nr] for a in (trace.acc_before, trace.acc_after))
    col = lambda x: matrix(np.asarray(x)[:, None])  # noqa: E731
    i, j = step.q_block, step.kv_block
    v_j = matrix(trace.v[step.keys.start:step.keys.stop])
    mid = {"s": rf"Q_{{{i}}} K_{{{j}}}^T / \sqrt{{{c.head_dim}}} = ",
           "m": r"\max(m_\text{old}, \mathrm{rowmax}\,S) = ", "p": r"e^{S - m_\text{new}} = ",
           "a": r"e^{m_\text{old} - m_\text{new}} = ", "l": r"\alpha\,\ell_\text{old} + \mathrm{rowsum}\,P = ",
           "acc": rf"\alpha\,\mathrm{{acc}}_\text{{old}} + P V_{{{j}}} = "}
    if terse:
        mid = dict.fromkeys(mid, "")
    lines = [
        rf"S_{{{i}{j}}} &= {mid['s']}{matrix(s)}",
        rf"m_\text{{new}} &= {mid['m']}\max({col(m_old)}, {col(s.max(axis=1))}) = {col(m_new)}",
        rf"P_{{{i}{j}}} &= {mid['p']}{matrix(p)}",
        rf"\alpha &= {mid['a']}{col(alpha)}",
        rf"\ell_\text{{new}} &= {mid['l']}{col(alpha)} \odot {col(l_old)} + {col(p.astype(np.float64).sum(axis=1))} "
        rf"= {col(l_new)}",
        rf"\mathrm{{acc}}_\text{{new}} &= {mid['acc']}{col(alpha)} \odot {matrix(acc_old)} + {matrix(p)} {v_j}",
        rf"&= {matrix(acc_new)}",
    ]
    return r"\begin{aligned}" + r" \\[6pt] ".join(lines) + r"\end{aligned}"


def out_tex(trace, step) -> str:
    """After the q-block's last tile: out = acc / l of all its rows, the kernel's out and float64's."""
    slot, rows = trace.tile_slot(step.q_block), step.rows
    acc = trace.acc_after[slot, step.kv_block, :len(rows)]
    ell = trace.l[step.q_block, step.kv_block, :len(rows)]
    out, ref = trace.out[rows.start:rows.stop], trace.ref_out[rows.start:rows.stop]
    err = float(np.abs(out.astype(np.float64) - ref).max())
    return (rf"\begin{{aligned}}\mathrm{{out}} &= \mathrm{{acc}} / \ell = {matrix(acc)} / {matrix(ell[:, None])} \\[6pt] "
            rf"&= {matrix(out)} \\[6pt] \text{{float64}} &= {matrix(ref)} \\[6pt] "
            rf"\max|\Delta| &= {fa.tex_num(err, 2)}"
            r"\end{aligned}")


def inputs_tex(trace) -> str:
    return (rf"Q = {matrix(trace.q)},\quad K = {matrix(trace.k)},\quad V = {matrix(trace.v)}")


def presenter_size(rows: int) -> str:
    """A KaTeX size for presenter view: a q-block of up to 4 rows stays on one 1280 x 720 screen."""
    return "" if rows <= 2 else r"\footnotesize " if rows <= 4 else r"\scriptsize "


def step_label(trace, step) -> str:
    keys = f"keys {step.keys.start}–{step.keys.stop - 1}" if len(step.keys) > 1 else f"key {step.keys.start}"
    rows = f"rows {step.rows.start}–{step.rows.stop - 1}" if len(step.rows) > 1 else f"row {step.rows.start}"
    return (f"<b>Q<sub>{step.q_block}</sub> ({rows}) × K<sub>{step.kv_block}</sub>, V<sub>{step.kv_block}</sub> "
            f"({keys})</b>: tile {step.k + 1} of {step.program_steps} of this q-block")


def show() -> None:
    """The page for your own Q, K, V: tables, the kernel's run, every number of each step."""
    ss = st.session_state
    page.arrive_view("attention-hand", extra=dict.fromkeys(URL, str))  # present=1, theme=dark; the CSS
    defaults()
    presenting = bool(ss[stepping.PRESENT])
    with st.sidebar:
        sidebar()
        stepping.play_controls(P)
    if ss.get(f"{P}.url_error"):
        st.warning(ss.pop(f"{P}.url_error"))
    if not presenting:
        st.markdown("#### FlashAttention with your own numbers")
        cols = st.columns(3)
        for col, name in zip(cols, NAMES, strict=True):
            with col:
                st.markdown(f"**{name}** (rows: positions, columns: head dims)")
                _editor(name)
    try:
        cfg, texts = read()
        trace = capture(cfg.fields(), *texts)
    except ValueError as e:
        st.error(str(e))
        if presenting:  # the tables are in normal view: the way back to them
            stepping.exit_presenter(P)
        return
    walk_ = walk(trace)
    d = cfg.head_dim
    if not presenting:
        st.caption(f"seq_len {cfg.seq_len}, head_dim {d}, block_m {cfg.block_m}, block_n {cfg.block_n}: "
                   f"{cfg.n_q_blocks} q-block(s) × {cfg.n_kv_blocks} kv-block(s), scale 1/√{d}. The same Triton "
                   f"kernel ({trace.device}) runs 16-wide tiles (tl.dot's smallest): each block sits in its own "
                   "tile, the other key lanes masked like a ragged end, head_dim zero-padded; only the real "
                   "entries are shown.")

    def draw(k: int) -> None:
        step = walk_[k]
        urlstate.write(url_values(cfg, texts, k))
        page.step_header(SPEC, len(walk_), k, label_html=step_label(trace, step))
        if presenting:  # one screen: the whole tile, and out at the q-block's last tile
            size = presenter_size(len(step.rows) + 2 * step.last)  # out beside the tile: smaller
            left, right = st.columns([1.45, 1], vertical_alignment="center")
            left.latex(size + tile_tex(trace, step, terse=True))
            if step.last:
                right.latex(size + out_tex(trace, step))
            else:
                right.caption("After the q-block's last tile the kernel divides acc by ℓ once and writes out.")
            return
        st.latex(tile_tex(trace, step))
        for r in range(len(step.rows)):  # the whole width each: the numbers are never cut
            st.markdown(f"**Row {step.rows.start + r}**: the same update, one row")
            st.latex(fa.update_equations(trace, step, r, n_vec=d))
            if step.last:
                st.latex(screens.out_tex(trace, step, r, n=d))
        if not step.last:
            st.caption("After the q-block's last tile the kernel divides acc by ℓ once and writes out: step on.")

    stepping.step_fragment(P, len(walk_), draw)
    if not presenting:
        st.latex(inputs_tex(trace))
        st.caption(f"max |out − float64 reference| over the whole output: {trace.max_abs_err:.2e} (float32).")
        st.download_button("Trace file (.npz): these inputs and every step, to replay on a machine without Triton",
                           data=lambda: trace_io.to_bytes(trace), mime="application/octet-stream",
                           file_name=f"hand_{cfg.seq_len}x{cfg.head_dim}_{cfg.block_m}x{cfg.block_n}.npz",
                           key="hand.download", on_click="ignore")
