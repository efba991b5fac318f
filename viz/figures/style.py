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
