"""Router: page config, navigation over viz/pages, and where the kernels run.

`streamlit run app.py`. Not for: anything a page draws (viz/pages) or computes (kernels/).
"""
import streamlit as st

from kernels import backend  # picks the GPU or the interpreter before triton is imported

st.set_page_config(page_title="FlashAttention, tile by tile", page_icon=":material/grid_on:", layout="wide")

# projector-friendly: less empty space above the first chart (1280 x 720 is the target)
st.html("<style>[data-testid='stMainBlockContainer']{padding-top:3.8rem;padding-left:2.5rem;"
        "padding-right:2.5rem;padding-bottom:3rem}</style>")
page = st.navigation([
    st.Page("viz/pages/attention.py", title="FlashAttention tiles", icon=":material/grid_on:",
            url_path="attention", default=True),
    st.Page("viz/pages/softmax.py", title="Softmax: naive, safe, online", icon=":material/functions:",
            url_path="softmax"),
    st.Page("viz/pages/backward.py", title="Backward", icon=":material/undo:", url_path="backward"),
    st.Page("viz/pages/benchmarks.py", title="Benchmarks", icon=":material/speed:", url_path="benchmarks"),
])
st.sidebar.badge(backend.describe(), icon=":material/memory:", color="orange" if backend.INTERPRET else "green",
                 help="Where the Triton kernels run: compiled on a GPU, or Triton's interpreter on CPU")
page.run()
