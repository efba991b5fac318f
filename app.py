"""Router: page config, navigation over viz/pages, and where the kernels run.

`streamlit run app.py`. Not for: anything a page draws (viz/pages) or computes (kernels/).
"""
import streamlit as st

from kernels import backend  # picks the GPU or the interpreter before triton is imported
from viz import serving

serving.no_outbound_lookups()  # a refused foreign-origin WebSocket never makes the server reach outside

# an emoji icon: a :material: one makes the browser fetch the favicon from Google's servers
st.set_page_config(page_title="FlashAttention, tile by tile", page_icon="🟧", layout="wide")
page = st.navigation([
    st.Page("viz/pages/start.py", title="Start: the story", icon=":material/home:", default=True),
    st.Page("viz/pages/attention.py", title="FlashAttention tiles", icon=":material/grid_on:", url_path="attention"),
    st.Page("viz/pages/orders.py", title="FA1 vs FA2 loop order", icon=":material/swap_horiz:", url_path="orders"),
    st.Page("viz/pages/softmax.py", title="Softmax: naive, safe, online", icon=":material/functions:",
            url_path="softmax"),
    st.Page("viz/pages/backward.py", title="Backward", icon=":material/undo:", url_path="backward"),
    st.Page("viz/pages/ring.py", title="Ring attention", icon=":material/cycle:", url_path="ring"),
    st.Page("viz/pages/benchmarks.py", title="Benchmarks", icon=":material/speed:", url_path="benchmarks"),
    st.Page("viz/pages/console.py", title="Speaker console", icon=":material/co_present:", url_path="console"),
])
st.sidebar.badge(backend.describe(), icon=":material/memory:", color="orange" if backend.INTERPRET else "green",
                 help="Where the Triton kernels run: compiled on a GPU, Triton's interpreter on CPU, or "
                      "nowhere (no triton: the pages replay traces a GPU recorded)")
page.run()
