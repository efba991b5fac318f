"""Export for slides: the followed q-block as one self-contained animated HTML file (plotly.js
embedded, so it plays from a USB stick on a machine with no network), and the current step as a
1920 x 1080 PNG.

Both draw the kernel's numbers with the same figure code as the page: the tile grid next to the
running max and running sum of the followed row, one animation frame per step.

Not for: the page's own layout (viz/pages/) or the trace file (kernels/trace_io.py).
"""
import html
import os
import re
import shutil
import struct
import zlib

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from kernels import steps, trace_io
from viz import controls
from viz.figures import attention as fa
from viz.figures import grid
from viz.figures.style import layout

PNG_SIZE = (1920, 1080)
MAX_FRAMES = 400  # an HTML animation of more steps would be tens of MB
BUDGET_BYTES = 30 << 20  # one animated HTML file: what a browser plays and a server builds at once
BUDGET_SECONDS = 30.0  # the time the server spends building it
PLOTLY_JS_BYTES = 4_700_000  # plotly.js, inlined once


def _axis(axis) -> dict:
    """An axis's settings without its place: the combined figure's subplot decides that."""
    out = axis.to_plotly_json()
    for key in ("domain", "anchor", "matches"):
        out.pop(key, None)
    return out


def step_figure(trace, q_block: int, row: int, index: int) -> go.Figure:
    """What presenter view shows at one step, as one figure: the tile grid, the followed row's
    running max and sum, α per row (top); the accumulator's four stages, the update equations with
    the kernel's numbers and the speaker's words (bottom)."""
    from viz import words

    step = steps.step_at(trace, q_block, index)
    row = min(row, len(step.rows) - 1)
    g = grid.tile_grid_figure(trace, step, hover=False)
    s = fa.running_state_figure(trace, step, row)
    a = fa.alpha_figure(trace, step, row)
    acc = fa.accumulator_figure(trace, step, row)
    fig = make_subplots(rows=2, cols=4, column_widths=[0.3, 0.22, 0.22, 0.26], row_heights=[0.62, 0.38],
                        horizontal_spacing=0.06, vertical_spacing=0.16,
                        specs=[[{}, {}, {}, {}], [None, None, {"colspan": 2}, None]],
                        subplot_titles=("", "running max m", "running sum ℓ",
                                        "α per row (orange: max grew)", "the accumulator of the row"))
    for t in g.data:
        fig.add_trace(t, row=1, col=1)
    for t in s.data:
        fig.add_trace(t, row=1, col=2 if (t.xaxis or "x") == "x" else 3)
    for t in a.data:
        fig.add_trace(t, row=1, col=4)
    for t in acc.data:
        fig.add_trace(t.update(colorbar=dict(len=0.3, y=0.16, thickness=12)), row=2, col=3)
    for shape in g.layout.shapes:
        fig.add_shape(shape, row=1, col=1)
    fig.update_xaxes(_axis(g.layout.xaxis), row=1, col=1)
    fig.update_yaxes(_axis(g.layout.yaxis), row=1, col=1)
    fig.update_xaxes(_axis(s.layout.xaxis), row=1, col=2)
    fig.update_xaxes(_axis(s.layout.xaxis2), row=1, col=3)
    fig.update_yaxes(_axis(acc.layout.yaxis), row=2, col=3)
    fig.update_xaxes(title_text="query row", row=1, col=4)
    fig.update_xaxes(title_text="head dim", row=2, col=3)
    fig.update_yaxes(range=[0, 1.05], row=1, col=4)
    eq = "<br>".join(["<b>tiles of S</b> (left): keys →, queries ↓; Q<sub>i</sub> solid, K<sub>j</sub>, V<sub>j</sub> "
                      "dotted", ""] + fa.update_html(trace, step, row, n_vec=1))
    fig.add_annotation(text=eq, x=0, y=0.33, xref="paper", yref="paper", xanchor="left", yanchor="top", align="left",
                       showarrow=False, font=dict(size=15), name="equations")
    fig.add_annotation(text="<i>" + html.escape(words.attention(trace, step, row)) + "</i>", x=0, y=-0.1,
                       xref="paper", yref="paper", xanchor="left", yanchor="top", align="left", showarrow=False,
                       font=dict(size=14), name="words")
    i, j = step.q_block, step.kv_block
    c = trace.config
    fig.update_layout(title=dict(text=f"Step {step.index + 1}: Q<sub>{i}</sub> meets K<sub>{j}</sub>, V<sub>{j}</sub> · "
                                      f"row {step.rows.start + row} · N={c.seq_len}, d={c.head_dim}, "
                                      f"{c.block_m}×{c.block_n} blocks, {c.dtype} · {html.escape(trace.device)}",
                                 x=0, xref="paper", font=dict(size=18)),
                      showlegend=False)
    return layout(fig, 760, t=90).update_layout(margin_b=90)


def plan(trace, q_block: int, row: int) -> dict:
    """What an animated HTML of q_block costs, measured on its first frame: {"steps", "stride"
    (export every stride-th step), "frames", "bytes", "seconds", "fits"} within BUDGET_BYTES and
    BUDGET_SECONDS (a larger trace gets every k-th step; one whose single frame is over the budget,
    none: the PNG of the step is offered)."""
    import time

    n = steps.step_count(trace, q_block)
    t0 = time.perf_counter()
    frame = len(step_figure(trace, q_block, row, 0).to_json())
    secs = time.perf_counter() - t0
    room = BUDGET_BYTES - PLOTLY_JS_BYTES
    most = max(0, min(MAX_FRAMES, room // max(frame, 1), int(BUDGET_SECONDS // max(secs, 1e-3))))
    stride = max(1, -(-n // most)) if most else 0
    frames = len(range(0, n, stride)) if stride else 0
    return {"steps": n, "stride": stride, "frames": frames, "bytes": PLOTLY_JS_BYTES + frames * frame,
            "seconds": frames * secs, "fits": frames > 0}


def animation_html(trace, q_block: int, row: int, stride: int = 1) -> str:
    """Every stride-th step of q_block as plotly frames, with play and a step slider; plotly.js inline."""
    picked = list(range(0, steps.step_count(trace, q_block), max(1, stride)))[:MAX_FRAMES]
    figs = [step_figure(trace, q_block, row, k) for k in picked]
    base = go.Figure(figs[0])
    base.frames = [go.Frame(data=f.data, layout=dict(shapes=f.layout.shapes, title=f.layout.title,
                                                     annotations=f.layout.annotations), name=str(k))
                   for k, f in enumerate(figs)]
    n = len(picked)
    anim = dict(frame=dict(duration=900, redraw=True), transition=dict(duration=0), mode="immediate")
    base.update_layout(
        updatemenus=[dict(type="buttons", x=0, y=-0.16, xanchor="left", yanchor="top", direction="left", buttons=[
            dict(label="Play", method="animate", args=[None, dict(anim, fromcurrent=True)]),
            dict(label="Pause", method="animate", args=[[None], dict(anim, frame=dict(duration=0, redraw=False))])])],
        sliders=[dict(active=0, x=0.12, len=0.88, y=-0.13, currentvalue=dict(prefix="step "), steps=[
            dict(label=str(picked[k] + 1), method="animate", args=[[str(k)], anim]) for k in range(n)])],
        height=860, margin=dict(b=150))
    return base.to_html(include_plotlyjs=True, full_html=True, auto_play=False,
                        config={"displaylogo": False, "responsive": True})


def chromium() -> str | None:
    """A Chrome or Chromium for kaleido to draw with, or None."""
    for name in (os.environ.get("BROWSER_PATH"), "chromium", "chromium-browser", "google-chrome", "chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def step_png(trace, q_block: int, row: int, step: int) -> bytes:
    """The step as a 1920 x 1080 PNG (kaleido with the local Chromium; no network)."""
    import plotly.io as pio

    browser = chromium()
    if browser is None:
        raise RuntimeError("no Chrome or Chromium here for kaleido to draw the PNG with; the HTML export works "
                           "without one")
    os.environ.setdefault("BROWSER_PATH", browser)
    fig = step_figure(trace, q_block, row, step)
    fig.update_layout(font=dict(size=22), title=dict(font=dict(size=28)), margin=dict(l=50, r=40, t=120, b=120))
    fig.update_annotations(font_size=24)
    fig.update_annotations(font_size=22, selector=dict(name="equations"))
    fig.update_annotations(font_size=20, selector=dict(name="words"))
    fig.update_xaxes(tickfont_size=18)
    fig.update_yaxes(tickfont_size=18)
    png = pio.to_image(fig, format="png", width=PNG_SIZE[0], height=PNG_SIZE[1], scale=1)
    return with_title(png, re.sub(r"<[^>]+>", "", fig.layout.title.text))


def with_title(png: bytes, title: str) -> bytes:
    """The PNG with a tEXt "Title" chunk after its header: what the image shows, for a slide tool
    (and a test) to read."""
    data = b"Title\0" + title.encode("latin-1", "replace")
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    end_of_ihdr = 8 + 4 + 4 + 13 + 4  # signature, then IHDR's length, type, 13 bytes of data, crc
    return png[:end_of_ihdr] + chunk + png[end_of_ihdr:]


def png_title(png: bytes) -> str | None:
    """The tEXt "Title" of a PNG, or None."""
    pos = 8
    while pos + 8 <= len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind, body = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        if kind == b"tEXt" and body.startswith(b"Title\0"):
            return body[6:].decode("latin-1")
        pos += 12 + length
    return None


def plans() -> dict:
    """This session's export plans, {(config, device, q-block): plan}: measured once per trace."""
    return st.session_state.setdefault("export.plans", {})


def download_buttons(prefix: str, trace, q_block: int, at: dict, trace_file: bool = False) -> None:
    """Two download buttons; each file is made only when its button is pressed, for the row and
    step in `at` at that moment ({"row", "step"}: the step fragment keeps it current, so a press
    after stepping exports the step on screen, not the one of the last full page run)."""
    c = trace.config
    stem = f"flashattention_{c.seq_len}_{c.block_m}x{c.block_n}_q{q_block}"
    if trace_file:  # a live run: its trace, to replay elsewhere
        st.download_button("Trace file (.npz)", data=lambda: trace_io.to_bytes(trace),
                           file_name=f"trace_{c.seq_len}_{c.block_m}x{c.block_n}{'_causal' if c.causal else ''}.npz",
                           mime="application/octet-stream", key=f"{prefix}.download", on_click="ignore")
    key = (trace.config.fields(), trace.device, q_block)
    cost = plans().get(key) or plans().setdefault(key, plan(trace, q_block, at.get("row", 0)))
    if cost["fits"]:
        every = "" if cost["stride"] == 1 else f", every {cost['stride']}th of {cost['steps']} steps"
        st.download_button(f"Animated HTML (this q-block{every}, about {cost['bytes'] / 1e6:.0f} MB, plays offline)",
                           key=f"{prefix}.export_html", file_name=f"{stem}.html", mime="text/html", on_click="ignore",
                           data=lambda: animation_html(trace, q_block, at.get("row", 0), cost["stride"]).encode())
        if cost["stride"] > 1:
            st.caption(f"Every step would exceed {BUDGET_BYTES >> 20} MB or {BUDGET_SECONDS:.0f} s to build: the "
                       "animation keeps evenly spaced steps, and the PNG below any single one.")
    else:
        st.caption(f"One frame of this trace's animation is over {BUDGET_BYTES >> 20} MB: export the step as a PNG.")
    if chromium() is None:
        st.caption("PNG export needs Chrome or Chromium installed; the HTML export does not.")
        return

    def png() -> bytes:
        try:
            return step_png(trace, q_block, at["row"], at["step"])
        except Exception as e:  # kaleido could not start its browser: say so, never a traceback
            try:
                st.toast(controls.plain(f"The PNG could not be drawn: {type(e).__name__}: {str(e)[:200]}"))
            except Exception:  # no script context to show it in
                pass
            return b""

    st.download_button(f"The step on screen as a {PNG_SIZE[0]}×{PNG_SIZE[1]} PNG", key=f"{prefix}.export_png",
                       data=png, file_name=f"{stem}_step.png", mime="image/png", on_click="ignore")
