"""A short load test in CI (issue 11): four browser sessions touring one server at once, with no errors.

The full benchmark is `python bench/load_test.py --sessions 1 4 8` (figures in the README); this runs its
N = 4 case for one round on the small fixture run: a fresh server on a private linked copy, a warm-up tour,
then four sessions at once, each opening the app, choosing its own new example on Attributions, and visiting
Confusion & errors, Kernels & activations and Runs. Times are printed, not checked (the machine is shared).
"""
from __future__ import annotations

import pytest

from model import runs
from tests.browser_util import browser_missing

MISSING = browser_missing()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(MISSING is not None, reason=f"real-browser test: {MISSING}")]


def test_four_sessions_at_once_finish_every_step_without_errors(fixture_run):
    from bench import load_test
    n_val = len(runs.load_predictions(fixture_run, runs.prediction_epochs(fixture_run)[-1])["val_labels"])
    result = load_test.measure(fixture_run, n=4, rounds=1, positions=load_test.positions(n_val), timeout=240)
    tours = result["tours"]
    print({s: sorted(round(t.times[s], 1) for t in tours if s in t.times) for s in load_test.STEPS},
          f"server PSS median {result['pss_median_mb']:.0f} MB, peak {result['pss_mb']:.0f} MB")
    assert len(tours) == 4
    assert [t.errors for t in tours] == [{}] * 4
    assert all(set(t.times) == set(load_test.STEPS) for t in tours)
