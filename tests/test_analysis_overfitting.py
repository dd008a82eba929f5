"""analysis.overfitting on hand-computed curves: the seed's published table, U shapes, edge cases."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.overfitting import SPIKE_RISE, Spike, diagnose, early_stopping, spikes
from model import runs

SEED_TRAIN = [0.909, 0.242, 0.159, 0.119, 0.097, 0.083, 0.074]
SEED_VAL = [0.310, 0.211, 0.122, 0.089, 0.082, 0.068, 0.064]
# our seed-preset run (README, "Reproducing the seed's table"): a one-epoch spike at epoch 7
RUN_VAL = [0.309, 0.182, 0.124, 0.105, 0.087, 0.071, 0.096, 0.063, 0.058, 0.055]
RUN_TRAIN = [0.729, 0.227, 0.151, 0.115, 0.096, 0.082, 0.072, 0.065, 0.059, 0.054]


def table(val, train=None, start=1, **extra):
    train = train if train is not None else list(np.linspace(1.0, 0.1, len(val)))   # always falling
    return pd.DataFrame({"epoch": range(start, start + len(val)), "train_loss": train, "val_loss": val, **extra})


def test_seed_published_table():
    d = diagnose(table(SEED_VAL, SEED_TRAIN))
    assert d.best_epoch == 7 and d.last_epoch == 7 and d.best_val_loss == pytest.approx(0.064)
    assert d.overfitting_onset is None
    assert d.status == "no-overfitting"
    assert d.verdict == ("No overfitting yet: validation loss was still falling at the last epoch (7). "
                         "Training longer may still help.")
    assert d.spikes == []
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
    assert d.verdict == ("Validation loss rose after epoch 3, but training loss did not keep falling either: that "
                         "is not overfitting; training may be unstable (try a lower learning rate). Keep the weights "
                         "of epoch 3 (lowest validation loss, 0.2).")


def test_flat_validation_loss():
    d = diagnose(table([0.5, 0.3, 0.1000, 0.1005, 0.0998]))
    assert d.status == "flat" and d.overfitting_onset is None
    # (max - min) / mean over epochs 3-5 = 0.0007 / 0.1001 < 1%
    assert d.verdict.startswith("Validation loss is flat: it changed by less than 1% over the last 3 epochs "
                                "(epochs 3–5)") and d.verdict.endswith("Keep the weights of epoch 5 (lowest "
                                                                     "validation loss, 0.0998).")


def test_too_few_epochs():
    d = diagnose(table([0.5, 0.4]))
    assert d.status == "too-few-epochs"
    assert d.verdict == "Too few epochs to tell: only 2 epochs recorded, at least 3 are needed to see a trend."
    assert d.best_epoch == 2
    assert diagnose(table([0.5])).status == "too-few-epochs"


def test_too_early_after_one_rise():
    d = diagnose(table([0.5, 0.3, 0.2, 0.25]))
    assert d.status == "too-early" and d.overfitting_onset is None and d.best_epoch == 3
    assert d.verdict.startswith("Too early to tell: validation loss is above its lowest (epoch 3), but has not "
                                "risen for 2 epochs in a row yet.")


def test_temporary_bump_is_not_an_onset():
    # rose after epoch 2 for two epochs, then fell to a new lowest at epoch 6 (the last)
    d = diagnose(table([0.5, 0.3, 0.35, 0.36, 0.2, 0.15]))
    assert d.overfitting_onset is None and d.best_epoch == 6 and d.status == "no-overfitting"
    assert d.verdict.endswith("(Validation loss also rose for a while after epoch 2, then fell again to a new "
                              "lowest at epoch 6: a temporary bump.)")


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
    val = metrics.sort_values("epoch")["val_loss"].to_numpy()
    train = metrics.sort_values("epoch")["train_loss"].to_numpy()
    assert d.best_epoch == int(metrics.loc[metrics["val_loss"].idxmin(), "epoch"])
    assert d.last_epoch == 3 and len(d.gap) == 3 and "acc_gap" in d.gap.columns
    # three epochs, patience 2: an onset needs epochs 2 and 3 both above epoch 1 with training loss falling
    rises = val[1] > val[0] * 1.01 and val[2] > val[0] * 1.01
    if rises and train[1] < train[0] and train[2] < train[1]:
        expected = "overfitting"
    elif rises:
        expected = "unstable"
    elif val.max() - val.min() <= 0.01 * val.mean():
        expected = "flat"
    elif val[2] < val[1]:
        expected = "no-overfitting"
    else:
        expected = "too-early"
    assert d.status == expected
    if expected == "no-overfitting":
        assert d.verdict.startswith("No overfitting yet: validation loss was still falling at the last epoch (3).")
    spiked = val[1] > val[0] * 1.1 and val[2] <= val[0] * 1.01
    assert [s.epoch for s in d.spikes] == ([2] if spiked else [])


# ----------------------------------------------------------------------------- one-epoch spikes

def run_class_accuracy() -> pd.DataFrame:
    """A per-class accuracy table like errors.per_class_accuracy_by_epoch for epochs 1-10: every class
    improves steadily except at epoch 7, where class 5 falls 97.9% -> 89.0% and class 3 98.0% -> 97.0%."""
    acc = pd.DataFrame({c: np.linspace(0.90, 0.99, 10) for c in range(10)}, index=pd.RangeIndex(1, 11, name="epoch"))
    acc.loc[6, 5], acc.loc[7, 5] = 0.979, 0.890
    acc.loc[6, 3], acc.loc[7, 3] = 0.980, 0.970
    acc["all"] = acc[list(range(10))].mean(axis=1)
    return acc


def test_seed_run_spike_at_epoch_7_names_class_5():
    d = diagnose(table(RUN_VAL, RUN_TRAIN), class_accuracy_by_epoch=run_class_accuracy())
    assert d.spikes == [Spike(7, 0.071, 0.096, 0.063, 5, 0.979, 0.890)]
    assert d.status == "no-overfitting" and d.best_epoch == 10
    assert d.verdict == ("No overfitting yet: validation loss was still falling at the last epoch (10). Training "
                         "longer may still help. Validation loss had a one-epoch spike at epoch 7 "
                         "(0.071 → 0.096 → 0.063), not overfitting; class 5 dropped most (97.9% → 89.0%).")
    # without the class table the spike is still named, the class is not
    plain = diagnose(table(RUN_VAL, RUN_TRAIN))
    assert plain.spikes == [Spike(7, 0.071, 0.096, 0.063)]
    assert plain.verdict.endswith("a one-epoch spike at epoch 7 (0.071 → 0.096 → 0.063), not overfitting.")
    assert spikes(table(RUN_VAL, RUN_TRAIN), run_class_accuracy()) == d.spikes


def test_a_steady_two_epoch_rise_is_no_spike():
    # 0.10 -> 0.13 (+30%) -> 0.16: the epoch after does not come back; real overfitting
    d = diagnose(table([0.30, 0.20, 0.10, 0.13, 0.16]))
    assert d.spikes == [] and d.status == "overfitting" and d.overfitting_onset == 3
    assert "spike" not in d.verdict


def test_a_monotone_fall_has_no_spike():
    assert spikes(table([0.5, 0.4, 0.3, 0.25, 0.2, 0.19])) == []


def test_a_wiggle_under_the_threshold_is_no_spike():
    # +9% then back: under SPIKE_RISE; +11% then back: a spike
    assert SPIKE_RISE == 0.10
    assert spikes(table([0.30, 0.100, 0.109, 0.095, 0.09])) == []
    assert [s.epoch for s in spikes(table([0.30, 0.100, 0.111, 0.095, 0.09]))] == [3]


def test_a_spike_that_does_not_come_back_is_no_spike():
    # 0.10 -> 0.13 -> 0.102: 2% above the epoch before the jump, more than tol (1%)
    assert spikes(table([0.3, 0.10, 0.13, 0.102, 0.09])) == []
    assert [s.epoch for s in spikes(table([0.3, 0.10, 0.13, 0.1009, 0.09]))] == [3]


def test_a_jump_at_the_last_epoch_is_no_one_epoch_spike():
    d = diagnose(table([0.3, 0.2, 0.1, 0.15]))
    assert d.spikes == [] and d.status == "too-early"


def test_several_spikes_and_epoch_numbers_from_the_table():
    df = table([0.5, 0.3, 0.4, 0.25, 0.2, 0.3, 0.18]).assign(epoch=[0, 10, 20, 30, 40, 50, 60])
    found = spikes(df)
    assert [(s.epoch, s.before, s.at, s.after) for s in found] == [(20, 0.3, 0.4, 0.25), (50, 0.2, 0.3, 0.18)]
    assert diagnose(df).verdict.endswith("Validation loss had one-epoch spikes at epoch 20 (0.3 → 0.4 → 0.25) and "
                                         "epoch 50 (0.2 → 0.3 → 0.18), not overfitting.")


def test_spike_class_only_when_one_fell_and_both_epochs_are_known():
    acc = run_class_accuracy()
    rising = acc.copy()
    rising.loc[7, [3, 5]] = 0.99                              # no class fell at epoch 7
    assert spikes(table(RUN_VAL, RUN_TRAIN), rising)[0].worst_class is None
    assert spikes(table(RUN_VAL, RUN_TRAIN), acc.drop(index=6))[0].worst_class is None   # epoch 6 missing
    nan5 = acc.copy()
    nan5[5] = np.nan                                          # class 5 absent from the split: class 3 is named
    assert (spikes(table(RUN_VAL, RUN_TRAIN), nan5)[0].worst_class, spikes(table(RUN_VAL, RUN_TRAIN), nan5)[0].class_at) \
        == (3, 0.970)


def test_best_epoch_is_the_lowest_validation_loss_earliest_if_tied():
    from analysis.overfitting import best_epoch
    table = pd.DataFrame({"epoch": [3, 1, 2, 4], "train_loss": [1, 1, 1, 1], "val_loss": [0.2, 0.5, 0.2, 0.3]})
    assert best_epoch(table) == 2                      # epochs 2 and 3 tie at 0.2: the earlier one
    with pytest.raises(ValueError):
        best_epoch(table.assign(val_loss=[0.2, None, 0.1, 0.3]))
