"""Retrieve page (placeholder)."""

import streamlit as st

st.title("Retrieve")
st.info("This page is being built.")
