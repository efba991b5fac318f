"""Pure figure builders, one module per page (plus style, the tile grid and memory): data in,
plotly Figure or plain rows out. No Streamlit import: tests call them directly."""
