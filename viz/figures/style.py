"""The house style of every figure: font, colours, margins, colorscales the browser will not retheme."""
import plotly.graph_objects as go

FONT = dict(family="Inter, Source Sans Pro, Arial, sans-serif", size=14, color="#1f2430")
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


def themed(fig: go.Figure, dark: bool) -> go.Figure:
    """The figure for a dark projector theme (light is the default): dark paper, light text and
    grid; the data colours and colorscales stay as they are."""
    if not dark:
        return fig
    fig.update_layout(template="plotly_dark", paper_bgcolor="#0e1117", font=dict(color="#e6e8eb"),
                      legend=dict(font=dict(color="#e6e8eb")))
    if fig.layout.plot_bgcolor in (None, "white", "#fff", "#FFFFFF"):
        fig.update_layout(plot_bgcolor="#0e1117")
    fig.update_annotations(font_color="#e6e8eb")
    return fig
