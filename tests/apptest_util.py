"""Helpers for driving the dashboard with Streamlit's AppTest and reading what a page shows.

Shared by `tests/test_dashboard_part1.py` and `tests/test_dashboard_part2.py`. Plotly figures are
read back from the chart's JSON spec, where numeric arrays may come as typed arrays
{"dtype", "bdata", "shape"} (base64 bytes) instead of plain lists.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
TIMEOUT = 120  # seconds a single script run may take before AppTest gives up


def new_app(**session) -> AppTest:
    """A fresh AppTest of the dashboard, not yet run, with these session-state values preset."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    for key, value in session.items():
        at.session_state[key] = value
    return at


def open_app(monkeypatch: pytest.MonkeyPatch, runs_folder: Path, page: str | None = None, **session) -> AppTest:
    """Run the dashboard on `runs_folder` (DIGIT_LENS_RUNS), switch to `page` if given, assert no exception.

    Args:
        page: a file name in dashboard/app_pages without ".py", e.g. "confusion"; None stays on the first page.
        session: session-state values set before the first run (preset widgets by key).
    """
    monkeypatch.setenv("DIGIT_LENS_RUNS", str(runs_folder))
    at = new_app(**session).run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def errors(at: AppTest) -> list[str]:
    """The texts of the page's st.error boxes."""
    return [e.value for e in at.error]


def ok(at: AppTest) -> None:
    """The page ran without an exception and without an error box."""
    assert not at.exception, [e.value for e in at.exception]
    assert not errors(at), errors(at)


def chart(at: AppTest, key: str) -> dict:
    """The Plotly figure (as JSON) of the chart with this widget key."""
    found = [c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    assert found, f"no chart with key {key!r}"
    return json.loads(found[0].proto.spec)


def array(value) -> np.ndarray:
    """A Plotly JSON array as float64: a (nested) list, None read as NaN, or a typed array {"dtype", "bdata", "shape"}."""
    if isinstance(value, dict) and "bdata" in value:
        a = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            a = a.reshape([int(s) for s in str(shape).split(",")])
        return a.astype(np.float64)
    return np.asarray(value, dtype=np.float64)      # numpy reads None as NaN for a float dtype


def heatmap(at: AppTest, key: str) -> np.ndarray:
    """The z values of the first trace of the chart with this key: (rows, cols)."""
    return array(chart(at, key)["data"][0]["z"])


def captions(at: AppTest) -> list[str]:
    """The captions of every st.image on the page, in page order."""
    return [c for im in at.image for c in im.captions]
