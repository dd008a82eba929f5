"""Placeholder page: overfitting."""
import streamlit as st

st.title("overfitting")
st.info("This page is being built.")
