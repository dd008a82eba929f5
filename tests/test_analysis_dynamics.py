"""analysis.dynamics: forgetting events and cartography on hand-built data, loaders on the fixture run."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.dynamics import (REGIONS, cartography, cartography_table, forgetting_by_class, forgetting_events,
                               forgetting_table, most_forgotten, training_dynamics)
from model import runs

# rows = epochs, columns = examples
CORRECT = np.array([[1, 1, 0, 0],
                    [0, 1, 0, 1],
                    [1, 1, 1, 0],
                    [0, 1, 1, 0]], dtype=bool)
# example 0: right->wrong twice; 1: always right; 2: learned once, never forgotten; 3: forgotten once


def test_forgetting_events_hand_built():
    np.testing.assert_array_equal(forgetting_events(CORRECT), [2, 0, 0, 1])
    np.testing.assert_array_equal(forgetting_events(CORRECT[:1]), [0, 0, 0, 0])   # one epoch: no transitions
    with pytest.raises(ValueError):
        forgetting_events(np.ones(4, dtype=bool))


def test_forgetting_table_hand_built():
    labels = np.array([3, 3, 5, 3])
    never = np.array([[0, 1], [0, 1]], dtype=bool)       # example 0 never right
    t = forgetting_table(CORRECT, labels)
    assert t.loc[3, "examples"] == 3 and t.loc[3, "events"] == 3
    assert t.loc[3, "mean_events"] == pytest.approx(1.0)
    assert t.loc[3, "forgotten_share"] == pytest.approx(2 / 3)
    assert t.loc[5, "events"] == 0 and t.loc[5, "never_learned"] == 0
    assert np.isnan(t.loc[0, "mean_events"]) and t.loc[0, "examples"] == 0
    assert forgetting_table(never, np.array([1, 1]))["never_learned"].tolist()[1] == 1


def test_cartography_regions_hand_built():
    true_prob = np.array([[0.90, 0.1, 0.10, 0.3],
                          [0.95, 0.9, 0.05, 0.5],
                          [1.00, 0.1, 0.15, 0.3],
                          [0.95, 0.9, 0.10, 0.5]])
    correct = true_prob > 0.5
    got = cartography_table(true_prob, correct, labels=np.array([1, 2, 3, 4]), index=np.array([10, 11, 12, 13]))
    assert got["index"].tolist() == [10, 11, 12, 13] and got["label"].tolist() == [1, 2, 3, 4]
    assert got["confidence"].tolist() == pytest.approx([0.95, 0.5, 0.1, 0.4])
    # population std by hand: ex0 sqrt((.05²+0+.05²+0)/4), ex1 .4, ex2 sqrt((0+.05²+.05²+0)/4), ex3 .1
    assert got["variability"].tolist() == pytest.approx([np.sqrt(0.005 / 4), 0.4, np.sqrt(0.005 / 4), 0.1])
    assert got["correctness"].tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert got["region"].tolist() == ["easy", "ambiguous", "hard-to-learn", "hard-to-learn"]
    # thresholds are parameters
    loose = cartography_table(true_prob, correct, [1, 2, 3, 4], [10, 11, 12, 13], easy_confidence=0.35)
    assert loose["region"].tolist()[3] == "easy"
    with pytest.raises(ValueError):
        cartography_table(true_prob, correct[:2], [1] * 4, [0] * 4)


# ----------------------------------------------------------------------------- on the fixture run

def test_training_dynamics_on_fixture(fixture_run, mnist_root):
    from data.mnist import load_raw
    d = training_dynamics(fixture_run)
    assert d.true_prob.shape == (3, 1000) and d.correct.shape == (3, 1000)
    assert d.true_prob.dtype == np.float32 and d.correct.dtype == bool
    np.testing.assert_array_equal(d.index, np.arange(1000))
    np.testing.assert_array_equal(d.labels, load_raw(mnist_root)["train-labels-idx1-ubyte"][:1000])
    assert ((d.true_prob >= 0) & (d.true_prob <= 1)).all()
    metrics = runs.load_metrics(fixture_run)
    np.testing.assert_allclose(d.correct.mean(1), metrics["train_acc"], atol=1e-6)   # the trainer's own accuracy


def raw_correct(run) -> np.ndarray:
    """(E, N) train_correct straight from the files (the fixture stores them in index order)."""
    return np.stack([runs.load_predictions(run, e)["train_correct"] for e in runs.prediction_epochs(run)])


def test_forgetting_on_fixture(fixture_run):
    c = raw_correct(fixture_run)
    by_hand = np.zeros(c.shape[1], dtype=int)
    for t in range(1, len(c)):
        for i in range(c.shape[1]):
            by_hand[i] += bool(c[t - 1, i] and not c[t, i])
    table = forgetting_by_class(fixture_run)
    assert table["examples"].sum() == 1000 and table["events"].sum() == by_hand.sum()
    top = most_forgotten(fixture_run, k=5)
    assert list(top.columns) == ["index", "label", "events", "last_correct"]
    assert len(top) == min(5, int((by_hand > 0).sum()))
    assert top["events"].tolist() == sorted(by_hand[by_hand > 0], reverse=True)[:len(top)]
    for _, row in top.iterrows():
        assert by_hand[row["index"]] == row["events"]


def test_cartography_on_fixture(fixture_run):
    got = cartography(fixture_run)
    assert len(got) == 1000 and set(got["region"]) <= set(REGIONS)
    p = np.stack([runs.load_predictions(fixture_run, e)["train_true_prob"].astype(np.float64) for e in (1, 2, 3)])
    np.testing.assert_allclose(got["confidence"], p.mean(0), rtol=1e-5)
    np.testing.assert_allclose(got["variability"], p.std(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["correctness"], raw_correct(fixture_run).mean(0))
    # the regions by the module docstring's thresholds, example by example
    expected = ["ambiguous" if s >= 0.2 else "easy" if c >= 0.5 else "hard-to-learn"
                for c, s in zip(p.mean(0), p.std(0))]
    assert (got["region"] == expected).mean() > 0.999                 # float32 vs float64 at a threshold at most


def test_epochs_in_another_order_are_aligned_by_index(copy_run):
    run = copy_run()
    p = dict(runs.load_predictions(run, 2))
    perm = np.random.default_rng(0).permutation(1000)
    for k in ("train_true_prob", "train_correct", "train_labels", "train_index"):
        p[k] = p[k][perm]
    runs.atomic_save_npz(runs.predictions_path(run, 2), **p)
    d = training_dynamics(run)
    original = runs.load_predictions(run, 1)
    np.testing.assert_array_equal(d.labels, original["train_labels"])
    np.testing.assert_array_equal(d.true_prob[1, perm], p["train_true_prob"].astype(np.float32))


def test_run_without_training_records(copy_run):
    run = copy_run()
    p = {k: v for k, v in runs.load_predictions(run, 1).items() if not k.startswith("train_")}
    runs.atomic_save_npz(runs.predictions_path(run, 1), **p)
    with pytest.raises(runs.RunError, match="no training records"):
        training_dynamics(run)
