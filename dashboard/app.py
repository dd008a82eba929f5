"""digit-lens: the router. Sets up the page, the shared sidebar (run, epoch), and runs one page.

    streamlit run dashboard/app.py
    streamlit run dashboard/app.py -- --read-only    (serve a class: no training, no writes; dashboard/mode.py)
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # so `streamlit run` finds our packages

import streamlit as st  # noqa: E402

from dashboard import mode, state, ui  # noqa: E402

mode.configure()   # read-only: the analysis cache goes outside the run folders

st.set_page_config(page_title="digit-lens", page_icon="🔍", layout="wide")

PAGES = {
    "Training": [
        st.Page("app_pages/runs.py", title="Runs", icon="🗂️", default=True),
        st.Page("app_pages/curves.py", title="Training curves", icon="📈"),
        st.Page("app_pages/overfitting.py", title="Overfitting", icon="🩺"),
        st.Page("app_pages/data_page.py", title="Data", icon="🔢"),
    ],
    "Errors": [
        st.Page("app_pages/confusion.py", title="Confusion & errors", icon="🧩"),
    ],
    "How it decides": [
        st.Page("app_pages/attributions.py", title="Attributions", icon="🔥"),
        st.Page("app_pages/filters.py", title="Kernels & activations", icon="🧠"),
        st.Page("app_pages/draw.py", title="Draw a digit", icon="✏️"),
    ],
}

page = st.navigation(PAGES)
with ui.page_guard("sidebar"):
    state.render_sidebar()
with ui.page_guard(page.title):
    page.run()
