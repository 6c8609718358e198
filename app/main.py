"""Entry of the CosPlace Explorer: `streamlit run app/main.py -- --workspace DIR`.

The page files live in app/views/, not app/pages/: Streamlit treats a `pages/` folder beside
the entry script as an old-style multipage app and then never runs this st.navigation.
"""

import streamlit as st

st.set_page_config(page_title="CosPlace Explorer", layout="wide")

PAGES = [
    st.Page("views/map.py", title="Map", url_path="map", default=True),
    st.Page("views/retrieve.py", title="Retrieve", url_path="retrieve"),
    st.Page("views/dataset.py", title="Dataset", url_path="dataset"),
    st.Page("views/results.py", title="Results", url_path="results"),
    st.Page("views/training.py", title="Training", url_path="training"),
    st.Page("views/space.py", title="Descriptor space", url_path="space"),
    st.Page("views/failures.py", title="Failures", url_path="failures"),
]

st.navigation(PAGES).run()
