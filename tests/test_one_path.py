"""One path per number: within one rerun of any page, no file is read twice and no result computed twice.

Every page of the app is rendered once with Streamlit's caches cleared first (a cold rerun, the worst
case), while counters wrapped around the readers of `model.runs` and the analysis functions record each
(function, arguments) call. A pair counted twice in one rerun means two code paths compute the same
number (e.g. the sidebar and a page each running `diagnose` on the same metrics), which is what
dashboard/cache.py exists to prevent.
"""
from __future__ import annotations

import collections
import functools
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import streamlit as st

from tests.apptest_util import new_app

PAGES = ["runs", "curves", "overfitting", "data_page", "confusion", "attributions", "filters", "draw"]
COUNTED = [   # (module, function): the readers of run files and the analysis results pages show
    ("model.runs", "load_predictions"), ("model.runs", "load_metrics"), ("model.runs", "load_model"),
    ("model.runs", "load_steps"), ("analysis.errors", "confusion_matrix"), ("analysis.errors", "per_class_report"),
    ("analysis.errors", "split_predictions"), ("analysis.overfitting", "diagnose"),
    ("analysis.calibration", "reliability"), ("analysis.dynamics", "training_dynamics"),
]
# Functions counted by their positional arguments only: diagnose(metrics) and diagnose(metrics,
# class_accuracy_by_epoch=...) are one computation (the best epoch and verdict of that run) done twice.
SAME_COMPUTATION = {"analysis.overfitting.diagnose"}



def _key(value) -> object:
    """A hashable stand-in for an argument: paths by name, arrays and tables by content."""
    if isinstance(value, (str, Path)):
        return str(Path(value).resolve()) if Path(value).is_absolute() else str(value)
    if isinstance(value, np.ndarray):
        return ("array", value.shape, str(value.dtype), hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest())
    if isinstance(value, pd.DataFrame):
        return ("frame", tuple(value.columns.astype(str)), int(pd.util.hash_pandas_object(value).sum()))
    if isinstance(value, dict):
        return tuple(sorted((k, _key(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_key(v) for v in value)
    return repr(value)


def _cold_rerun(at, calls: collections.Counter, page: str | None, **session) -> dict[tuple, int]:
    """Clear Streamlit's caches and the counters, rerun (switching to `page`, with these session values),
    return the pairs called twice or more."""
    st.cache_data.clear()
    st.cache_resource.clear()
    calls.clear()
    if page is not None:
        at.switch_page(f"app_pages/{page}.py")
    for key, value in session.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, (page, [e.value for e in at.exception])
    return {k: n for k, n in calls.items() if n > 1}


@pytest.fixture(scope="module")
def findings(tmp_path_factory, fixture_run):
    """{page: {(function, args, kwargs): calls}} of every page's cold rerun on a fresh copy of the fixture run."""
    import shutil
    folder = tmp_path_factory.mktemp("one_path")
    shutil.copytree(fixture_run, folder / fixture_run.name, ignore=shutil.ignore_patterns("cache"))
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("DIGIT_LENS_RUNS", str(folder))
        calls = _install_counters(mp)
        at = new_app()
        out = {"(first run)": _cold_rerun(at, calls, None)}
        for page in PAGES:
            out[page] = _cold_rerun(at, calls, page)
        for view in ("Classes", "Calibration", "Training examples"):     # the Overfitting page's other views
            out[f"overfitting · {view}"] = _cold_rerun(at, calls, "overfitting", over_view=view)
    finally:
        mp.undo()
    return out


def _install_counters(mp: pytest.MonkeyPatch) -> collections.Counter:
    """Wrap each COUNTED function in a counter; returns the Counter of (name, args, kwargs) -> calls."""
    import importlib
    calls: collections.Counter = collections.Counter()
    for module_name, func in COUNTED:
        module = importlib.import_module(module_name)
        original = getattr(module, func)

        @functools.wraps(original)      # keeps the signature: cache.diagnosis inspects diagnose's parameters
        def wrapper(*args, __name=f"{module_name}.{func}", __original=original, **kwargs):
            calls[(__name, _key(args), () if __name in SAME_COMPUTATION else _key(kwargs))] += 1
            return __original(*args, **kwargs)

        mp.setattr(module, func, wrapper)
    return calls


def _report(findings: dict, keep) -> list[str]:
    return [f"{page}: {name} called {n}x with the same arguments {args}"[:300]
            for page, dupes in findings.items() for (name, args, _), n in sorted(dupes.items(), key=str)
            if keep(page, name)]


def test_no_page_computes_the_same_thing_twice_in_one_rerun(findings):
    problems = _report(findings, lambda page, name: True)
    assert not problems, "\n".join(problems)


def test_the_counters_see_the_calls(fixture_run, monkeypatch):
    """The counters are not blind: reading a file twice outside any cache is counted as a duplicate."""
    calls = _install_counters(monkeypatch)
    from model import runs
    runs.load_predictions(fixture_run, 1)
    runs.load_predictions(Path(str(fixture_run)), 1)
    assert calls[("model.runs.load_predictions", (str(fixture_run.resolve()), "1"), ())] == 2


def test_diagnosis_is_spike_aware(monkeypatch, fixture_run):
    """cache.diagnosis hands diagnose the per-class validation accuracy of every epoch (checked against
    recall computed by hand from the npz files), once for the verdict and the best epoch together."""
    from analysis import overfitting
    from dashboard import cache
    seen = []
    real = overfitting.diagnose

    def spike_aware(metrics, patience=2, tol=0.01, class_accuracy_by_epoch=None):
        seen.append(class_accuracy_by_epoch)
        return real(metrics, patience, tol)

    st.cache_data.clear()
    monkeypatch.setattr(overfitting, "diagnose", spike_aware)
    diag = cache.diagnosis(str(fixture_run))
    assert cache.best_epoch(str(fixture_run)) == diag.best_epoch
    m = pd.read_csv(fixture_run / "metrics.csv")
    assert diag.best_epoch == int(m.loc[m["val_loss"].idxmin(), "epoch"])
    (acc,) = seen                                                   # once: the best epoch reuses the diagnosis
    for epoch in (1, 2, 3):
        with np.load(fixture_run / "predictions" / f"epoch_{epoch:03d}.npz") as z:
            y, pred = z["val_labels"], z["val_logits"].astype(np.float32).argmax(1)
        for c in range(10):
            assert acc.loc[epoch, c] == pytest.approx(np.mean(pred[y == c] == c))
