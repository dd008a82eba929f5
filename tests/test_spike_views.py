"""A one-epoch spike of validation loss is named in the verdict and marked on every curve that shows it.

The fixture run's metrics.csv is rewritten so validation loss goes 0.50 -> 0.70 -> 0.45 (a spike at
epoch 2 by analysis.overfitting's rule: +40% and back below the epoch before); its original
metrics (no spike) must show no mark.
"""
from __future__ import annotations

import pandas as pd
import pytest
import streamlit as st

from apptest_util import chart, ok, open_app
from model import runs


def spiked(copy_run, spike: bool):
    run = copy_run("spiked" if spike else "plain")
    if spike:
        m = pd.read_csv(runs.metrics_path(run))
        m["val_loss"] = [0.50, 0.70, 0.45]
        m["train_loss"] = [0.60, 0.40, 0.30]
        m.to_csv(runs.metrics_path(run), index=False)
    return run


def spike_traces(fig: dict) -> list[dict]:
    return [t for t in fig["data"] if "spike" in str(t.get("name", ""))]


@pytest.mark.parametrize("spike", [True, False])
def test_curves_overfitting_and_report_mark_the_spike(monkeypatch, copy_run, spike):
    run = spiked(copy_run, spike)
    st.cache_data.clear()
    at = open_app(monkeypatch, run.parent, "curves")
    ok(at)
    marks = spike_traces(chart(at, "curves_loss"))
    assert [list(t["x"]) for t in marks] == ([[2]] if spike else [])
    if spike:
        assert marks[0]["y"] == [pytest.approx(0.70)]
    at.switch_page("app_pages/overfitting.py").run()
    ok(at)
    verdict = " ".join(e.value for kind in ("markdown", "info", "success", "warning") for e in at.get(kind))
    assert ("one-epoch spike at epoch 2" in verdict) == spike
    assert [list(t["x"]) for t in spike_traces(chart(at, "over_curves"))] == ([[2]] if spike else [])
    from dashboard.report import build_report
    page = build_report(run)
    assert ("one-epoch spike at epoch 2" in page) == spike
