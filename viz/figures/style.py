"""The house style of every figure: font, colours, margins, colorscales the browser will not retheme."""
import plotly.graph_objects as go

FONT = dict(family="Inter, Source Sans Pro, Arial, sans-serif", size=14, color="#1f2430")  # INK
ORANGE, BLUE, GREY, RED = "#E8710A", "#2E6DB4", "#9AA3AE", "#C62828"


def colorscale(name: str) -> list:
    """A plotly colorscale by name, with Streamlit's placeholder colors (#000001-#000040, which the
    browser swaps for theme colors) nudged: Inferno starts at #000004 and would turn lavender."""
    import plotly.colors

    out = []
    for pos, color in plotly.colors.get_colorscale(name):
        if color.lower().startswith("#0000") and int(color[1:], 16) <= 0x40:
            color = "#01010a"
        out.append([pos, color])
    return out


def layout(fig: go.Figure, height: int, **kw) -> go.Figure:
    fig.update_layout(
        template="plotly_white", font=FONT, height=height,
        margin=dict(l=10, r=10, t=kw.pop("t", 36), b=10), **kw,
    )
    return fig


def discrete_colorscale(colors: list[str]) -> list:
    n = len(colors)
    scale = []
    for k, c in enumerate(colors):
        scale += [[k / n, c], [(k + 1) / n, c]]
    return scale


TICK_PX, LEGEND_PX, TITLE_PX, NOTE_PX = 18, 16, 19, 16  # presenter view: type for the back of a room


def big(fig: go.Figure) -> go.Figure:
    """Presenter type: tick labels and axis titles 18 px, legends 16 px, titles 19 px, annotations and
    colorbars at least 16 px. Text drawn inside the data (a tile grid's numbers) stays as the
    figure sized it for its cells."""
    fig.update_layout(font=dict(size=TICK_PX), legend=dict(font=dict(size=LEGEND_PX)))
    if fig.layout.title.text:
        fig.update_layout(title_font_size=TITLE_PX)
    fig.update_xaxes(tickfont_size=TICK_PX, title_font_size=TICK_PX)
    fig.update_yaxes(tickfont_size=TICK_PX, title_font_size=TICK_PX)
    for a in fig.layout.annotations:
        a.font.size = max(a.font.size or 0, NOTE_PX)
    for t in fig.data:
        if getattr(t, "colorbar", None) is not None and t.type in ("heatmap", "contour"):
            t.colorbar.tickfont.size = LEGEND_PX
    return fig


INK, INK_DARK = "#1f2430", "#e6e8eb"  # outlines and text: near-black on light, near-white on dark
# the tile grid's light fills, for the dark theme: "other programs", "skipped", "pending" (white outlines stay visible)
DARK_FILLS = {"#e4e7eb": "#3a4250", "#ffffff": "#161b24", "#86aedc": "#5d86b8"}


def _dark_fill(color):
    return DARK_FILLS.get(color.lower(), color) if isinstance(color, str) else color


def themed(fig: go.Figure, dark: bool) -> go.Figure:
    """The figure for a dark projector theme (light is the default): dark paper, light text and
    grid; the data colours and colorscales stay as they are."""
    if not dark:
        return fig
    fig.update_layout(template="plotly_dark", paper_bgcolor="#0e1117", font=dict(color="#e6e8eb"),
                      legend=dict(font=dict(color="#e6e8eb")))
    if fig.layout.plot_bgcolor in (None, "white", "#fff", "#FFFFFF"):
        fig.update_layout(plot_bgcolor="#0e1117")
    fig.update_annotations(font_color=INK_DARK)
    for shape in fig.layout.shapes:  # the on-chip outlines, the split lines: near-black would vanish
        if shape.line.color == INK:
            shape.line.color = INK_DARK
    for t in fig.data:
        if t.type == "heatmap" and t.name == "tiles" and t.colorscale:  # the tile grid's discrete scale
            t.colorscale = [[pos, _dark_fill(color)] for pos, color in t.colorscale]
        marker = getattr(t, "marker", None)
        if marker is not None and t.type == "scatter" and isinstance(marker.color, str):
            marker.color = _dark_fill(marker.color)  # the grid's legend squares
        if marker is not None and getattr(marker, "line", None) is not None and marker.line.color == INK:
            marker.line.color = INK_DARK
        if getattr(t, "line", None) is not None and getattr(t.line, "color", None) == INK:
            t.line.color = INK_DARK
    return fig
