"""Map page (placeholder)."""

import streamlit as st

st.title("Map")
st.info("This page is being built.")
