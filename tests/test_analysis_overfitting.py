"""analysis.overfitting on hand-computed curves: the seed's published table, U shapes, edge cases."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.overfitting import diagnose, early_stopping
from model import runs

SEED_TRAIN = [0.909, 0.242, 0.159, 0.119, 0.097, 0.083, 0.074]
SEED_VAL = [0.310, 0.211, 0.122, 0.089, 0.082, 0.068, 0.064]


def table(val, train=None, start=1, **extra):
    train = train if train is not None else list(np.linspace(1.0, 0.1, len(val)))   # always falling
    return pd.DataFrame({"epoch": range(start, start + len(val)), "train_loss": train, "val_loss": val, **extra})


def test_seed_published_table():
    d = diagnose(table(SEED_VAL, SEED_TRAIN))
    assert d.best_epoch == 7 and d.last_epoch == 7 and d.best_val_loss == pytest.approx(0.064)
    assert d.overfitting_onset is None
    assert d.status == "no-overfitting"
    assert "No overfitting" in d.verdict and "7" in d.verdict
    assert d.recommended_stop.stop_epoch is None and d.recommended_stop.keep_epoch == 7
    assert d.gap["loss_gap"].tolist() == pytest.approx(np.subtract(SEED_VAL, SEED_TRAIN).tolist())


def test_u_shaped_curve():
    # lowest validation loss at epoch 4, rising every epoch after it while training loss falls
    d = diagnose(table([0.50, 0.30, 0.20, 0.15, 0.18, 0.22, 0.27, 0.33]))
    assert d.best_epoch == 4 and d.overfitting_onset == 4 and d.status == "overfitting"
    assert "Overfitting started after epoch 4" in d.verdict
    # early stopping, patience 2: no new low at epochs 5 and 6 -> stop after 6, keep 4, skip 7 and 8
    assert (d.recommended_stop.stop_epoch, d.recommended_stop.keep_epoch, d.recommended_stop.epochs_saved) == (6, 4, 2)
    assert "would have stopped at epoch 6" in d.verdict
    d3 = diagnose(table([0.50, 0.30, 0.20, 0.15, 0.18, 0.22, 0.27, 0.33]), patience=3)
    assert d3.overfitting_onset == 4
    assert (d3.recommended_stop.stop_epoch, d3.recommended_stop.epochs_saved) == (7, 1)


def test_noisy_rise_still_counts():
    # after epoch 3 (0.20) validation loss dips to 0.21 but stays above 0.20: onset 3
    d = diagnose(table([0.40, 0.25, 0.20, 0.22, 0.21, 0.24, 0.27]))
    assert d.overfitting_onset == 3
    assert d.recommended_stop.stop_epoch == 5 and d.recommended_stop.keep_epoch == 3


def test_rise_within_tolerance_is_noise():
    # 0.15 -> 0.1505 is within 1%, so the rise starts after epoch 4 (0.1505), not 3
    d = diagnose(table([0.30, 0.20, 0.15, 0.1505, 0.20, 0.30]))
    assert d.best_epoch == 3 and d.overfitting_onset == 4
    assert diagnose(table([0.30, 0.20, 0.15, 0.1505, 0.20, 0.30]), tol=0.0).overfitting_onset == 3


def test_training_loss_rising_too_is_not_overfitting():
    d = diagnose(table([0.5, 0.3, 0.2, 0.3, 0.4], train=[0.6, 0.4, 0.3, 0.35, 0.5]))
    assert d.overfitting_onset is None and d.status == "unstable"
    assert "not overfitting" in d.verdict and "epoch 3" in d.verdict


def test_flat_validation_loss():
    d = diagnose(table([0.5, 0.3, 0.1000, 0.1005, 0.0998]))
    assert d.status == "flat" and "flat" in d.verdict and d.overfitting_onset is None


def test_too_few_epochs():
    d = diagnose(table([0.5, 0.4]))
    assert d.status == "too-few-epochs" and "Too few epochs" in d.verdict
    assert d.best_epoch == 2
    assert diagnose(table([0.5])).status == "too-few-epochs"


def test_too_early_after_one_rise():
    d = diagnose(table([0.5, 0.3, 0.2, 0.25]))
    assert d.status == "too-early" and d.overfitting_onset is None and d.best_epoch == 3
    assert "Too early" in d.verdict


def test_temporary_bump_is_not_an_onset():
    # rose after epoch 2 for two epochs, then fell to a new lowest at epoch 6 (the last)
    d = diagnose(table([0.5, 0.3, 0.35, 0.36, 0.2, 0.15]))
    assert d.overfitting_onset is None and d.best_epoch == 6 and d.status == "no-overfitting"
    assert "temporary bump" in d.verdict and "epoch 2" in d.verdict


def test_epoch_numbers_from_the_table_are_used():
    # a table typed in from a paper, every 10 epochs, rows out of order
    df = table([0.5, 0.3, 0.2, 0.25, 0.3], start=0).assign(epoch=[0, 10, 20, 30, 40]).iloc[[3, 0, 4, 1, 2]]
    d = diagnose(df)
    assert d.best_epoch == 20 and d.overfitting_onset == 20 and d.recommended_stop.stop_epoch == 40
    assert d.gap["epoch"].tolist() == [0, 10, 20, 30, 40]


def test_accuracy_gap_when_accuracies_given():
    d = diagnose(table([0.3, 0.2, 0.1], train_acc=[0.90, 0.95, 0.99], val_acc=[0.91, 0.94, 0.96]))
    assert d.gap["acc_gap"].tolist() == pytest.approx([-0.01, 0.01, 0.03])
    assert "acc_gap" not in diagnose(table([0.3, 0.2, 0.1])).gap.columns


def test_early_stopping_hand_computed():
    epochs = np.arange(1, 9)
    # lows at 1, 2, 4; epochs 3 and 5 no new low; 6 no new low (2 in a row) -> stop after 6, keep 4
    stop = early_stopping(np.array([0.5, 0.4, 0.45, 0.3, 0.31, 0.32, 0.1, 0.1]), epochs, patience=2)
    assert (stop.stop_epoch, stop.keep_epoch, stop.epochs_saved) == (6, 4, 2)
    # a tie is no improvement (min_delta 0, strict)
    stop = early_stopping(np.array([0.5, 0.5, 0.5]), np.arange(1, 4), patience=2)
    assert (stop.stop_epoch, stop.keep_epoch) == (3, 1)


@pytest.mark.parametrize("df,match", [
    (pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5]}), "val_loss"),
    (pd.DataFrame({"epoch": [], "train_loss": [], "val_loss": []}), "empty"),
    (pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, np.nan, 0.4], "val_loss": [1.0, 0.9, 0.8]}), r"NaN.*\[2\]"),
    (pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 0.4], "val_loss": [1.0, "x", 0.8]}), "val_loss"),
    (pd.DataFrame({"epoch": [1, 1, 2], "train_loss": [1.0, 0.5, 0.4], "val_loss": [1.0, 0.9, 0.8]}), "repeated"),
])
def test_bad_tables_give_clear_errors(df, match):
    with pytest.raises(ValueError, match=match):
        diagnose(df)


def test_not_a_dataframe():
    with pytest.raises(ValueError, match="DataFrame"):
        diagnose({"epoch": [1]})
    with pytest.raises(ValueError, match="patience"):
        diagnose(table([0.3, 0.2, 0.1]), patience=0)


def test_on_fixture_run_metrics(fixture_run):
    metrics = runs.load_metrics(fixture_run)
    d = diagnose(metrics)
    assert d.best_epoch == int(metrics.loc[metrics["val_loss"].idxmin(), "epoch"])
    assert d.last_epoch == 3 and len(d.gap) == 3 and "acc_gap" in d.gap.columns
    assert d.verdict
