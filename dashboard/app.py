"""digit-lens: the router. Sets up the page, the shared sidebar (run, epoch), and runs one page.

    streamlit run dashboard/app.py
    streamlit run dashboard/app.py -- --read-only    (serve a class: no training, no writes; dashboard/mode.py)
"""
import gc
import importlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # so `streamlit run` finds our packages

import streamlit as st  # noqa: E402

from dashboard import mode, state, ui, workers  # noqa: E402

mode.configure()   # read-only: the analysis cache goes outside the run folders

# Freeze what lives for the whole server (runner.postScriptGC is off: .streamlit/config.toml). Measured with
# tests/test_memory.py's tour (5 runs x 10 epochs, 2 shared cores, load 1.7-2.9; one process, before the worker
# pool of dashboard/workers.py): before, RSS peaked at 2113 MB in the first pass and saw-toothed 1441-1768 MB in
# the second, page switch / epoch step medians 0.34 / 0.44 s; with the freeze, 1577 MB and 1418-1681 MB,
# 0.35 / 0.41 s.
SERVER_LIFETIME_MODULES = ("torch", "pandas", "plotly.graph_objects", "plotly.subplots", "dashboard.cache",
                           "dashboard.figures", "dashboard.maps", "dashboard.why", "dashboard.walkthrough",
                           "analysis.attributions", "analysis.trust", "analysis.kernels", "analysis.internals")


@st.cache_resource(show_spinner=False)
def freeze_startup() -> None:
    """Once per server process: import what every page uses, then gc.freeze() it, so that collections walk only
    what pages create, not the ~0.4M objects of torch & co. (a full collection: 0.19 s before, microseconds after).
    The collection after the freeze resets the gc's gen-2 baseline to what is left, so the next full collection
    comes after a little page garbage, not after a quarter of the whole heap."""
    for name in SERVER_LIFETIME_MODULES:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()
    gc.collect()


freeze_startup()

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

# $DIGIT_LENS_TIMING_LOG: a file that gets one JSON line per script run (page, start, seconds), the server's own
# clock, for bench/load_test.py (its browsers share the server's cores, so their clocks include drawing).
TIMING_LOG = os.environ.get("DIGIT_LENS_TIMING_LOG")
started = time.time()
workers.request_began()   # this run's heavy jobs queue behind those of runs that began earlier, ahead of later ones
page = st.navigation(PAGES)
try:
    with ui.page_guard("sidebar"):
        state.render_sidebar()
    with ui.page_guard(page.title):
        page.run()
finally:
    # Measured with tests/test_memory.py's tour (5 runs x 10 epochs, one session): without this the server tree's
    # PSS saw-toothed 170-270 MB above its median (up to 1.21-1.29 GB, on the epoch-dependent pages); with it, peaks
    # stay within 85-93 MB of the median, at 0.6 ms a run (median; 40 ms at worst).
    workers.give_back_heap()
    if TIMING_LOG:
        with open(TIMING_LOG, "a") as log:
            log.write(json.dumps({"page": page.title, "start": started, "seconds": time.time() - started}) + "\n")
