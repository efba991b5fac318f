"""Presenter view: the page chrome out of the way, large type, one 1280 x 720 screen per step, and
the projector theme (light or dark). CSS only; what fits on the screen is each page's layout.

Not for: the figures (viz/figures/) or the state (viz/urlstate.py).
"""
import streamlit as st

BASE = """
<style>
[data-testid='stMainBlockContainer']{padding-top:3.2rem;padding-left:2.2rem;padding-right:2.2rem;padding-bottom:2rem}
</style>
"""
PRESENTER = """
<style>
[data-testid='stSidebar'], [data-testid='stSidebarCollapsedControl'], header[data-testid='stHeader'],
[data-testid='stToolbar'], [data-testid='stDecoration'], [data-testid='stStatusWidget'] {display: none !important;}
[data-testid='stMainBlockContainer'] {padding: 0.6rem 1.2rem 0.2rem 1.2rem !important; max-width: 100% !important;}
[data-testid='stMain'] p, [data-testid='stMain'] li {font-size: 1.25rem;}
[data-testid='stVerticalBlock'] {gap: 0.35rem;}
.katex {font-size: 1.32em !important;}
.st-key-attn-eq .katex {font-size: 1.2em !important;}
</style>
"""
DARK = """
<style>
[data-testid='stApp'], [data-testid='stMain'], [data-testid='stHeader'] {background: #0e1117 !important; color: #e6e8eb;}
[data-testid='stMain'] p, [data-testid='stMain'] span, [data-testid='stMain'] div, .katex {color: #e6e8eb;}
</style>
"""


def apply(present: bool, dark: bool) -> None:
    st.html(BASE + (PRESENTER if present else "") + (DARK if dark else ""))
