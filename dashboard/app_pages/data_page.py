"""Placeholder page: data_page."""
import streamlit as st

st.title("data_page")
st.info("This page is being built.")
