"""analysis.calibration: ECE on synthetic calibrated / overconfident data and a hand-computed case."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.special

from analysis.calibration import Reliability, calibration_by_epoch, reliability
from model import runs


def sample_labels(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One label per row drawn from that row's probabilities."""
    cum = probs.cumsum(1)
    return (rng.random((len(probs), 1)) > cum).sum(1).clip(0, probs.shape[1] - 1)


def test_perfectly_calibrated_data_has_ece_near_zero():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(10, 0.3), size=200_000)   # varied confidences
    y = sample_labels(rng, probs)                            # labels drawn from the predicted probabilities
    table, ece = reliability(probs, y)
    assert ece < 0.01
    assert table["count"].sum() == 200_000


def test_overconfident_data_has_large_ece():
    rng = np.random.default_rng(1)
    true_probs = rng.dirichlet(np.full(10, 1.0), size=50_000)
    y = sample_labels(rng, true_probs)
    claimed = scipy.special.softmax(np.log(true_probs) * 5, axis=1)   # same ranking, far sharper
    _, ece = reliability(claimed, y)
    _, ece_true = reliability(true_probs, y)
    assert ece > 0.3 and ece_true < 0.02


def test_hand_computed_tiny_case():
    probs = np.array([[0.9, 0.1, 0.0],    # conf .9, right  -> bin (.8, 1]
                      [0.8, 0.2, 0.0],    # conf .8, wrong  -> bin (.6, .8]  (upper edge belongs to the bin)
                      [0.6, 0.4, 0.0],    # conf .6, right  -> bin (.4, .6]
                      [0.3, 0.7, 0.0],    # conf .7, right  -> bin (.6, .8]
                      [0.4, 0.3, 0.3]])   # conf .4, wrong  -> bin (.2, .4]
    y = np.array([0, 1, 0, 1, 1])
    rel = reliability(probs, y, bins=5)
    assert isinstance(rel, Reliability)
    t = rel.table
    assert list(t.columns) == ["bin_lower", "bin_upper", "count", "confidence", "accuracy", "gap"]
    assert t["count"].tolist() == [0, 1, 1, 2, 1]
    assert t["bin_upper"].tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert np.isnan(t.loc[0, "confidence"]) and np.isnan(t.loc[0, "gap"])
    assert t["confidence"].iloc[1:].tolist() == pytest.approx([0.4, 0.6, 0.75, 0.9])
    assert t["accuracy"].iloc[1:].tolist() == pytest.approx([0.0, 1.0, 0.5, 1.0])
    assert t["gap"].iloc[1:].tolist() == pytest.approx([0.4, -0.4, 0.25, -0.1])
    # ECE = (1*.4 + 1*.4 + 2*.25 + 1*.1) / 5
    assert rel.ece == pytest.approx(0.28)


def test_single_bin_is_confidence_minus_accuracy():
    probs = np.array([[0.7, 0.3], [0.9, 0.1], [0.2, 0.8]])
    y = np.array([0, 1, 1])
    _, ece = reliability(probs, y, bins=1)
    assert ece == pytest.approx(abs((0.7 + 0.9 + 0.8) / 3 - 2 / 3))


def test_bad_input():
    with pytest.raises(ValueError):
        reliability(np.ones((3, 2)) / 2, np.array([0, 1]))
    with pytest.raises(ValueError):
        reliability(np.zeros((0, 10)), np.array([], dtype=int))
    with pytest.raises(ValueError):
        reliability(np.ones((2, 2)) / 2, np.array([0, 1]), bins=0)


def ece_by_loop(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Guo et al.'s ECE written out one bin at a time: bins (lower, upper], the first also holding 0."""
    conf, right = probs.max(1), probs.argmax(1) == y
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (conf > lo) & (conf <= hi) if b > 0 else (conf <= hi)
        if inside.any():
            total += inside.sum() / len(y) * abs(conf[inside].mean() - right[inside].mean())
    return total


def test_reliability_matches_the_loop_on_random_predictions():
    rng = np.random.default_rng(4)
    probs = scipy.special.softmax(rng.normal(0, 3, size=(5000, 10)), axis=1)
    y = rng.integers(0, 10, 5000)
    for bins in (1, 10, 15):
        assert reliability(probs, y, bins).ece == pytest.approx(ece_by_loop(probs, y, bins), abs=1e-12)


def test_calibration_by_epoch_on_fixture(fixture_run):
    got = calibration_by_epoch(fixture_run)
    assert got["epoch"].tolist() == [1, 2, 3]
    assert list(got.columns) == ["epoch", "ece", "confidence", "accuracy", "overconfidence"]
    metrics = runs.load_metrics(fixture_run).set_index("epoch")
    for split in ("val", "test"):
        table = got if split == "val" else calibration_by_epoch(fixture_run, split="test")
        for epoch in (1, 2, 3):
            p = runs.load_predictions(fixture_run, epoch)
            probs = scipy.special.softmax(p[f"{split}_logits"].astype(np.float64), axis=1)
            row = table.set_index("epoch").loc[epoch]
            assert row["confidence"] == pytest.approx(probs.max(1).mean(), rel=1e-4)
            assert row["accuracy"] == pytest.approx((probs.argmax(1) == p[f"{split}_labels"]).mean())
            # the trainer measured the same accuracy while training (metrics.csv)
            assert row["accuracy"] == pytest.approx(metrics.loc[epoch, f"{split}_acc"], abs=1e-6)
            assert row["ece"] == pytest.approx(ece_by_loop(probs, p[f"{split}_labels"]), abs=1e-5)
            assert row["overconfidence"] == pytest.approx(row["confidence"] - row["accuracy"])
