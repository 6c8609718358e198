"""Dataset page (placeholder)."""

import streamlit as st

st.title("Dataset")
st.info("This page is being built.")
