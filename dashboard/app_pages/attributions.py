"""Placeholder page: attributions."""
import streamlit as st

st.title("attributions")
st.info("This page is being built.")
