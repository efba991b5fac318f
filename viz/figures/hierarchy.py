"""The memory hierarchy figure (kernels/hierarchy.py's levels) and the softmax DRAM-bytes table."""
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from viz.figures.memory import nice_bytes
from viz.figures.style import BLUE, GREY, ORANGE, layout


def hierarchy_figure(levels: list, gpu: str, height: int = 360) -> go.Figure:
    """Size (left) and bandwidth (right) of each level, log scales; spec in blue, measured in orange,
    levels with no published bandwidth marked so."""
    names = list(dict.fromkeys(lv.name for lv in levels))
    sizes = {lv.name: lv for lv in levels if lv.bandwidth_source != "measured"}
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=("size (whole GPU)", "bandwidth, TB/s"))
    fig.add_trace(go.Bar(y=names, x=[sizes[n].size_bytes for n in names], orientation="h", marker_color=GREY,
                         text=[size_text(sizes[n]) for n in names], textposition="outside", cliponaxis=False,
                         name="size", showlegend=False,
                         hovertemplate="%{y}: %{x:.3s}B<extra></extra>"), row=1, col=1)
    for source, color in (("spec", BLUE), ("measured", ORANGE)):
        lvs = [lv for lv in levels if lv.bandwidth_source == source]
        if lvs:
            fig.add_trace(go.Bar(y=[lv.name for lv in lvs], x=[lv.bandwidth_TBps for lv in lvs], orientation="h",
                                 marker_color=color, name=source, text=[f"{lv.bandwidth_TBps:.3g} TB/s {source}"
                                                                        for lv in lvs],
                                 textposition="inside", insidetextanchor="start"), row=1, col=2)
    unpublished = [lv.name for lv in levels if lv.bandwidth_source == ""]
    for name in unpublished:
        fig.add_annotation(x=0.02, y=name, xref="x2 domain", yref="y2", text="not published, not measured",
                           showarrow=False, xanchor="left", font=dict(color=GREY, size=13))
    fig.update_xaxes(type="log", range=[7, 14.5], row=1, col=1, showticklabels=False)
    fig.update_xaxes(range=[0, 6], row=1, col=2)
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    layout(fig, height, barmode="group", title=dict(text=f"{gpu}: where the bytes live", x=0.01),
           legend=dict(orientation="h", y=-0.08, x=0.55), t=60)
    return fig


def size_text(level) -> str:
    size = nice_bytes(level.size_bytes)
    return size if level.size_note.startswith(size) else f"{size} · {level.size_note}"


def softmax_dram_rows(rows: list[dict]) -> list[dict]:
    """One row per softmax variant: model accesses per element, model bytes, DRAM bytes ncu measured."""
    return [{"softmax": r["variant"], "accesses / element (model)": f"{r['loads']} loads + {r['stores']} store",
             "model bytes": nice_bytes(r["model_bytes"]), "DRAM read (ncu)": nice_bytes(r["dram_read_bytes"]),
             "DRAM written (ncu)": nice_bytes(r["dram_write_bytes"]),
             "input reads that reached DRAM": round(r["dram_reads_per_element"], 2),
             "reads served by the caches": round(r["cached_reads_per_element"], 2)} for r in rows]


def dram_reads_figure(rows: list[dict], seq_len: int, gpu: str, height: int = 300) -> go.Figure:
    """Reads of the input per element for each softmax variant: the model's loads (kernels/traffic.py)
    beside the reads that reached DRAM (Nsight Compute's bytes / the input's bytes) and those the
    caches served (derived: the model's minus DRAM's)."""
    names = [r["variant"] for r in rows]
    fig = go.Figure()
    fig.add_bar(x=names, y=[r["loads"] for r in rows], name="reads in the model", marker_color=GREY,
                text=[str(r["loads"]) for r in rows], textposition="outside")
    fig.add_bar(x=names, y=[r["dram_reads_per_element"] for r in rows], name=f"reached DRAM (Nsight Compute, {gpu})",
                marker_color=ORANGE, text=[f"{r['dram_reads_per_element']:.2f}" for r in rows], textposition="outside")
    fig.add_bar(x=names, y=[r["cached_reads_per_element"] for r in rows], name="served by the caches (derived)",
                marker_color=BLUE, text=[f"{r['cached_reads_per_element']:.2f}" for r in rows], textposition="outside")
    fig.update_yaxes(title="reads of each input element", range=[0, max(r["loads"] for r in rows) * 1.25])
    return layout(fig, height, barmode="group", title=f"Softmax, {seq_len}² float32: where the reads went",
                  legend=dict(orientation="h", y=-0.18), t=40)
