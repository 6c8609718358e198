"""Entry of the CosPlace Explorer: `streamlit run app/main.py -- --workspace DIR`."""

import streamlit as st

st.set_page_config(page_title="CosPlace Explorer", layout="wide")

PAGES = [
    st.Page("pages/map.py", title="Map", url_path="map", default=True),
    st.Page("pages/retrieve.py", title="Retrieve", url_path="retrieve"),
    st.Page("pages/dataset.py", title="Dataset", url_path="dataset"),
    st.Page("pages/results.py", title="Results", url_path="results"),
]

st.navigation(PAGES).run()
