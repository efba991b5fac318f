"""Presenter view: the page chrome out of the way, large type, one 1280 x 720 screen per step, and
the projector theme (light or dark). CSS only; what fits on the screen is each page's layout.

Not for: the figures (viz/figures/) or the state (viz/urlstate.py).
"""
import streamlit as st

BASE = """
<style>
[data-testid='stMainBlockContainer']{padding-top:4rem;padding-left:2.2rem;padding-right:2.2rem;padding-bottom:2rem}
.fa-words {font-size: 1.15rem; line-height: 1.35; border-left: 4px solid #E8710A; padding: 0.15rem 0 0.15rem 0.7rem;}
.fa-bytes {font-size: 0.95rem; line-height: 1.3;}
.fa-dim {opacity: 0.72;}
.fa-bar {display: flex; align-items: center; gap: 0.5rem; margin: 0.1rem 0;}
.fa-bar-label {flex: 0 0 58%;}
.fa-bar-track {flex: 1 1 auto; height: 0.8em; background: rgba(128,128,128,0.12); border-radius: 3px; overflow: hidden;}
.fa-bar-track span {display: block; height: 100%;}
.fa-overflow table {border-collapse: collapse; margin-top: 0.2rem;}
.fa-overflow th, .fa-overflow td {padding: 0.05rem 0.7rem; text-align: right; font-variant-numeric: tabular-nums;}
.fa-overflow .fa-bad {color: #C62828; font-weight: 700;}
</style>
"""
PRESENTER = """
<style>
[data-testid='stSidebar'], [data-testid='stSidebarCollapsedControl'], header[data-testid='stHeader'],
[data-testid='stToolbar'], [data-testid='stDecoration'], [data-testid='stStatusWidget'] {display: none !important;}
[data-testid='stMainBlockContainer'] {padding: 0.6rem 1.2rem 0.2rem 1.2rem !important; max-width: 100% !important;}
[data-testid='stMain'] p, [data-testid='stMain'] li {font-size: 1.25rem;}
[data-testid='stVerticalBlock'] {gap: 0.35rem;}
.katex {font-size: 26.5px !important;}
.fa-words {font-size: 1.45rem; line-height: 1.3;}
.fa-bytes {font-size: 18px;}
.fa-overflow {font-size: 19px;}
</style>
"""
DARK = """
<style>
[data-testid='stApp'], [data-testid='stMain'], [data-testid='stHeader'] {background: #0e1117 !important; color: #e6e8eb;}
[data-testid='stMain'] p, [data-testid='stMain'] span, [data-testid='stMain'] div, .katex {color: #e6e8eb;}
[data-testid='stSidebar'] {background: #161b24 !important;}
[data-testid='stSidebarNav'] span, [data-testid='stSidebar'] [data-testid='stWidgetLabel'] p,
[data-testid='stSidebar'] [data-testid='stCaptionContainer'], [data-testid='stSidebar'] summary p,
[data-testid='stSidebar'] [data-testid='stSliderThumbValue'] {color: #e6e8eb !important;}
[data-testid='stMain'] button:not(.primary)
  {background: #1b2029 !important; color: #e6e8eb !important; border-color: #3a4250 !important;}
[data-testid='stMain'] button[aria-checked='true'], [data-testid='stMain'] button[kind='segmented_controlActive']
  {background: #3a4250 !important;}
[data-testid='stMain'] a {color: #8ab4f8 !important;}
</style>
"""


def apply(present: bool, dark: bool) -> None:
    st.html(BASE + (PRESENTER if present else "") + (DARK if dark else ""))
