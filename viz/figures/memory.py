"""Memory accesses: model (kernels/traffic.py) next to what the kernels counted, forward and backward."""
import plotly.graph_objects as go

from kernels import traffic
from viz.figures.style import BLUE, ORANGE, layout

ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4}


# ---------------------------------------------------------------- bytes moved so far, at a step
def bytes_so_far(trace, walk: list, k: int) -> dict:
    """What the followed program has moved through step k of its walk (derived: kernels/traffic
    .flash_walk over the kernel's own visit order, in bytes), what standard attention moves for the
    same rows (model), and the whole run: the kernel's counters and standard attention's model."""
    c = trace.config
    size = ITEMSIZE[c.dtype]
    tiles = [(s.q_block, s.kv_block, s.split) for s in walk]
    parts = traffic.walk_bytes(traffic.flash_walk(c.loop_order, tiles, c.seq_len, c.head_dim, c.block_m, c.block_n,
                                                  splits=c.kv_splits, n_rows=c.n_rows), size)
    rows = c.seq_len if c.loop_order == "fa1" else len(walk[0].rows)
    std = traffic.standard_rows(rows, c.seq_len, c.head_dim)
    return {"so_far": sum(parts[: k + 1]), "program": sum(parts), "rows": rows,
            "standard": traffic.total(std) * size, "standard_sp": std["s_p_elements"] * size,
            "whole_flash": traffic.counted_bytes(trace.counters, c.counter_keys(), size),
            "whole_standard": traffic.total(traffic.standard_attention(c.seq_len, c.head_dim, c.n_rows)) * size,
            "whole_program": c.loop_order == "fa1"}


def nice_bytes(b: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if b >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{int(b)} B"


# ---------------------------------------------------------------- memory accesses
def flash_name(c) -> str:
    if c.loop_order == "fa1":
        return "FlashAttention-1 order"
    return f"FlashAttention-2, split-KV × {c.kv_splits}" if c.kv_splits > 1 else "FlashAttention-2"


def memory_rows(trace, softmax_counts: dict | None, measured: dict | None = None) -> list[dict]:
    """Model next to counted, in elements, and the DRAM bytes a GPU measured where it measured this
    shape. softmax_counts: scores_softmax_counts(trace) or None; measured: state.measured_bytes."""
    c = trace.config
    n, m = c.seq_len, c.n_rows  # keys, and the rows of the score matrix
    rows = []
    names = {"naive": "naive softmax", "safe": "safe softmax", "online": "online softmax",
             "single_pass": "single-pass softmax"}
    for variant in traffic.SOFTMAX_VARIANTS:
        if variant not in names:
            continue  # split-row is the softmax page's (one long row), not an N x N matrix's
        counted = (softmax_counts or {}).get(variant)
        if variant == "single_pass" and counted is None and softmax_counts is not None:
            continue  # the row does not fit on chip: the kernel refuses, so no row
        rows.append({"id": variant, "what": names[variant], "group": "softmax",
                     "model": traffic.softmax(variant, m, n), "counted": counted})
    rows.append({"id": "standard", "what": "standard attention", "group": "attention",
                 "model": traffic.standard_attention(n, c.head_dim, m), "counted": None})
    rows.append({"id": "flash", "what": flash_name(c), "group": "attention",
                 "model": traffic.summed(trace.model_counters(), c.counter_keys()),
                 "counted": traffic.summed(trace.counters, c.counter_keys())})
    got = (measured or {}).get("bytes", {})
    for r in rows:
        r["model_total"] = traffic.total(r["model"])
        r["counted_total"] = traffic.total(r["counted"]) if r["counted"] else None
        r["equal"] = None if r["counted"] is None else (
            r["counted"]["loads"] == r["model"]["loads"] and r["counted"]["stores"] == r["model"]["stores"])
        r["measured_bytes"] = got.get(r["id"])
    return rows


def memory_table(rows: list[dict], measured: dict | None = None) -> list[dict]:
    """Rows for st.dataframe; a measured-bytes column when a GPU measured this shape."""
    out = []
    for r in rows:
        row = {"": r["what"], "model": r["model_total"], "counted by the kernel": r["counted_total"],
               "equal?": "—" if r["equal"] is None else ("✓" if r["equal"] else "✗ differs")}
        if measured:
            row[f"DRAM MB, {measured['gpu']} (ncu)"] = None if r["measured_bytes"] is None else r["measured_bytes"] / 1e6
        out.append(row)
    return out


def memory_note(c, rows: list[dict], measured: dict | None = None) -> str:
    """What the numbers are, and the rule that predicts the FlashAttention row."""
    note = (f"Counts are elements (multiply by the dtype's size for bytes), every load and store to global memory. "
            f"Standard attention writes and reads S and P (N² each); FlashAttention re-reads K and V once per q-block, "
            f"so for long sequences it moves about 2·block_m/d = {2 * c.block_m / c.head_dim:.1f}× fewer elements "
            f"(derived) — Θ(N²d²/M) accesses for an on-chip memory of M elements, against Θ(N² + Nd).")
    if measured:
        note += (f" The DRAM column is Nsight Compute's dram bytes read + written on the {measured['gpu']} "
                 f"({measured['date']}, softmax rows in float32): its L2 cache absorbs most of FlashAttention's "
                 f"K, V re-reads, and O can still sit in L2 when the kernel ends.")
    return note


def measured_cases_table(data: dict) -> list[dict]:
    """Every case of a DRAM-bytes measurement: model bytes at its dtype next to what ncu measured."""
    names = {"fa2": "FlashAttention-2", "fa1": "FlashAttention-1 order", "standard": "standard attention"}
    out = []
    for case in data["cases"]:
        what = case.get("what", "")
        measured = case["dram_read_bytes"] + case["dram_write_bytes"]
        out.append({"N": case.get("seq_len"), "": names.get(what, what.replace("softmax_", "softmax: ")),
                    "causal": "causal" if case.get("causal") else "", "dtype": case.get("dtype"),
                    "model MB": case["model_bytes_at_dtype"] / 1e6, "measured MB": measured / 1e6,
                    "measured / model": round(measured / case["model_bytes_at_dtype"], 3)})
    return out


def flash_ratio(rows: list[dict]) -> float:
    """Elements standard attention moves per element FlashAttention moved (counted when known)."""
    std = next(r for r in rows if r["id"] == "standard")
    fa = next(r for r in rows if r["id"] == "flash")
    return std["model_total"] / (fa["counted_total"] or fa["model_total"])


def flash_headline(rows: list[dict]) -> str:
    ratio = flash_ratio(rows)
    if ratio >= 1:
        return f"FlashAttention moves {ratio:.1f}× fewer elements than standard attention here."
    return (f"FlashAttention moves {1 / ratio:.1f}× more elements than standard attention here: "
            f"K and V are re-read once per q-block, so a larger block_m helps at this size.")


def memory_figure(rows: list[dict]) -> go.Figure:
    """Horizontal bars: loads and stores per method (model), counted totals as diamonds."""
    names = [r["what"] for r in rows][::-1]
    rows_r = rows[::-1]
    fig = go.Figure()
    fig.add_trace(go.Bar(y=names, x=[r["model"]["loads"] for r in rows_r], orientation="h", name="loads (model)",
                         marker_color=BLUE, hovertemplate="%{y}: %{x:,} loads<extra></extra>"))
    fig.add_trace(go.Bar(y=names, x=[r["model"]["stores"] for r in rows_r], orientation="h", name="stores (model)",
                         marker_color="#8DB6E3", hovertemplate="%{y}: %{x:,} stores<extra></extra>"))
    counted = [(r["what"], r["counted_total"]) for r in rows_r if r["counted_total"] is not None]
    if counted:
        fig.add_trace(go.Scatter(y=[c[0] for c in counted], x=[c[1] for c in counted], mode="markers",
                                 name="counted by the kernel (total)",
                                 marker=dict(symbol="diamond", size=13, color=ORANGE, line=dict(color="white", width=1)),
                                 hovertemplate="%{y}: %{x:,} counted<extra></extra>"))
    fig.update_layout(barmode="stack", legend=dict(orientation="h", y=-0.12, yanchor="top", x=0, font=dict(size=13)))
    fig.update_xaxes(tickformat="~s", side="top")
    return layout(fig, 330, t=30)


def elements_text(n_elements: int, bytes_per: int = 4, dtype: str = "float32") -> str:
    """'65,536 elements (256 KiB in float32)'; '1 element (4 B in float32)'."""
    size = n_elements * bytes_per
    what = f"{n_elements:,} element{'s' if n_elements != 1 else ''}"
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= div:
            return f"{what} ({size / div:.3g} {unit} in {dtype})"
    return f"{what} ({size} B in {dtype})"


# -- memory traffic of the backward
BWD_PARTS = (("pre", "· preprocess (D)"), ("dkdv", "· dK/dV pass"), ("dq", "· dQ pass"))


def bwd_memory_rows(trace) -> list[dict]:
    """Standard backward (model) against the FlashAttention-2 backward, whole and per kernel
    (model, and the kernels' own counts), in elements. Same keys as memory_rows."""
    c = trace.config
    model = trace.model_counters()
    counted = trace.counters

    def part(prefix: str, source: dict) -> dict:
        return traffic.summed(source, tuple(k for k in traffic.BACKWARD_COUNTERS if k.startswith(prefix)))

    rows = [{"id": "standard", "what": "standard backward",
             "model": traffic.standard_backward(c.seq_len, c.head_dim), "counted": None}]
    rows.append({"id": "flash", "what": "FlashAttention-2 backward", "model": part("", model),
                 "counted": part("", counted)})
    for prefix, what in BWD_PARTS:
        rows.append({"id": prefix, "what": what, "model": part(prefix + "_", model),
                     "counted": part(prefix + "_", counted)})
    for r in rows:
        r["model_total"] = traffic.total(r["model"])
        r["counted_total"] = traffic.total(r["counted"]) if r["counted"] else None
        r["equal"] = None if r["counted"] is None else r["counted"] == {k: r["model"][k] for k in ("loads", "stores")}
    return rows


def bwd_headline(rows: list[dict], seq_len: int) -> str:
    std = next(r for r in rows if r["id"] == "standard")
    fa = next(r for r in rows if r["id"] == "flash")
    ratio = std["model_total"] / (fa["counted_total"] or fa["model_total"])
    mats = f"P, dP and dS ({3 * seq_len * seq_len:,} elements) never leave the chip."
    if ratio >= 1:
        return f"The FlashAttention-2 backward moves {ratio:.1f}× fewer elements than the standard backward here: {mats}"
    return (f"The FlashAttention-2 backward moves {1 / ratio:.1f}× more elements than the standard backward at "
            f"this small size (Q, dO re-read per kv-block, K, V per q-block), yet {mats}")
