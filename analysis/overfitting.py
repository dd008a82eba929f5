"""Is the model overfitting? Best epoch, overfitting onset and early-stopping advice, from metrics alone.

Works on any table with columns epoch, train_loss, val_loss (train_acc / val_acc optional): a run's
metrics.csv or a table typed in from a paper. Definitions (epochs are the table's epoch numbers):

    best epoch          the epoch with the lowest validation loss (the earliest if tied).
    overfitting onset   the first epoch e, from the best epoch on, such that for each of the next
                        `patience` epochs i validation loss stays above its value at e by more than
                        `tol` (relative), val_loss[i] > val_loss[e] * (1 + tol), while training loss
                        keeps falling, train_loss[i] < train_loss[i-1]. "Overfitting started after e."
                        Validation loss is noisy, so it is compared with the turning point e;
                        training loss (an epoch average) is smooth, so it must fall every epoch.
                        Rises before the best epoch came back down (a bump), so they are not onsets.
    unstable            validation loss rose like that after the best epoch, but training loss did
                        not keep falling: not overfitting (a learning rate too high, for example).
    early stopping      Keras/Lightning style, min_delta 0: remember the lowest validation loss so
                        far; stop once `patience` epochs in a row brought no new lowest value; keep
                        the weights of the epoch with the lowest value.
    flat                over the last patience + 1 epochs, validation loss moved less than `tol`
                        of its mean (max - min).
    one-epoch spike     an epoch e with a recorded epoch before it (e-1) and after it (e+1, the next
                        rows of the table) whose validation loss jumped by more than SPIKE_RISE (10%),
                        val_loss[e] > val_loss[e-1] * (1 + SPIKE_RISE), and came back at once to about
                        where it was, val_loss[e+1] <= val_loss[e-1] * (1 + tol). One bad epoch, not a
                        trend: not overfitting. A rise that lasts two epochs is no spike (see onset),
                        and neither is a jump at the last epoch (nothing shows yet that it comes back).
    class that dropped  given a per-class accuracy table (index epoch, columns 0..9), the class whose
      most at a spike   accuracy fell most from epoch e-1 to the spike epoch e (none if no class fell).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

REQUIRED = ("epoch", "train_loss", "val_loss")
MIN_EPOCHS = 3     # fewer epochs show no trend at all
SPIKE_RISE = 0.10  # a one-epoch spike rises more than 10% above the epoch before it


@dataclass
class EarlyStop:
    """What early stopping with `patience` would have done on these epochs."""
    patience: int
    stop_epoch: int | None   # the epoch after which training would have stopped; None: it never would have
    keep_epoch: int          # the epoch whose weights to keep (lowest validation loss up to the stop)
    epochs_saved: int        # epochs trained after stop_epoch that early stopping would have skipped


@dataclass
class Spike:
    """A one-epoch spike of validation loss (see the module docstring)."""
    epoch: int                          # the epoch whose validation loss jumped
    before: float                       # validation loss at the epoch before it
    at: float                           # ... at the spike
    after: float                        # ... at the epoch after it
    worst_class: int | None = None      # the class whose accuracy fell most from the epoch before; None: unknown
    class_before: float | None = None   # its accuracy at the epoch before (a fraction)
    class_at: float | None = None       # its accuracy at the spike


@dataclass
class Diagnosis:
    """The result of `diagnose`: numbers for plots and one plain verdict for people."""
    status: str                      # "overfitting", "unstable", "flat", "no-overfitting", "too-early", "too-few-epochs"
    verdict: str                     # one or two plain sentences
    best_epoch: int                  # lowest validation loss
    best_val_loss: float
    last_epoch: int
    overfitting_onset: int | None    # overfitting started after this epoch; None if never
    recommended_stop: EarlyStop
    gap: pd.DataFrame                # per epoch: loss_gap = val - train, acc_gap = train - val (if accuracies given)
    spikes: list[Spike]              # one-epoch spikes of validation loss, in epoch order


def check_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """The metrics sorted by epoch with numeric columns; a ValueError saying what is wrong otherwise."""
    if not isinstance(metrics, pd.DataFrame):
        raise ValueError(f"metrics must be a pandas DataFrame, got {type(metrics).__name__}")
    missing = [c for c in REQUIRED if c not in metrics.columns]
    if missing:
        raise ValueError(f"metrics table is missing column(s) {missing}; it needs {list(REQUIRED)}")
    if metrics.empty:
        raise ValueError("metrics table is empty: no epochs to diagnose")
    cols = [c for c in (*REQUIRED, "train_acc", "val_acc") if c in metrics.columns]
    df = metrics[cols].copy()
    for c in cols:
        df[c] = pd.to_numeric(df[c], errors="coerce")
        bad = ~np.isfinite(df[c].to_numpy(dtype=float))
        if bad.any():
            rows = metrics["epoch"][bad].tolist() if c != "epoch" else list(np.flatnonzero(bad) + 1)
            what = "epoch(s)" if c != "epoch" else "row(s)"
            raise ValueError(f"metrics column {c!r} has missing or non-numeric values (NaN) at {what} {rows}")
    if (df["epoch"] != df["epoch"].round()).any():
        raise ValueError("metrics column 'epoch' must hold whole numbers")
    df["epoch"] = df["epoch"].astype(int)
    dup = df["epoch"][df["epoch"].duplicated()].tolist()
    if dup:
        raise ValueError(f"metrics table has repeated epoch(s) {dup}")
    return df.sort_values("epoch").reset_index(drop=True)


def best_epoch(metrics: pd.DataFrame) -> int:
    """The best epoch: the lowest validation loss, the earliest if tied (ValueError like `check_metrics`)."""
    df = check_metrics(metrics)
    return int(df["epoch"].iloc[int(np.argmin(df["val_loss"].to_numpy(float)))])


def loss_gap(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per epoch: train/val loss and loss_gap = val - train; with accuracies, acc_gap = train - val."""
    df = check_metrics(metrics)
    out = df[["epoch", "train_loss", "val_loss"]].copy()
    out["loss_gap"] = df["val_loss"] - df["train_loss"]
    if "train_acc" in df and "val_acc" in df:
        out["train_acc"], out["val_acc"] = df["train_acc"], df["val_acc"]
        out["acc_gap"] = df["train_acc"] - df["val_acc"]
    return out


def early_stopping(val_loss: np.ndarray, epochs: np.ndarray, patience: int = 2) -> EarlyStop:
    """Where early stopping (stop after `patience` epochs without a new lowest val loss) would stop."""
    best_i, waited = 0, 0
    for i in range(1, len(val_loss)):
        if val_loss[i] < val_loss[best_i]:
            best_i, waited = i, 0
        else:
            waited += 1
            if waited >= patience:
                return EarlyStop(patience, int(epochs[i]), int(epochs[best_i]), int(epochs[-1] - epochs[i]))
    return EarlyStop(patience, None, int(epochs[best_i]), 0)


def _first_rise(val: np.ndarray, train: np.ndarray, patience: int, tol: float, train_falls: bool,
                start: int = 0) -> int | None:
    """Position of the first epoch >= start after which val stays above it for `patience` epochs."""
    for e in range(start, len(val) - patience):
        window = range(e + 1, e + patience + 1)
        if all(val[i] > val[e] * (1 + tol) for i in window):
            if not train_falls or all(train[i] < train[i - 1] for i in window):
                return e
    return None


def _worst_class(class_accuracy: pd.DataFrame | None, before: int, at: int) -> tuple[int, float, float] | None:
    """(class, accuracy before, accuracy at) of the class whose accuracy fell most from `before` to `at`."""
    if class_accuracy is None or before not in class_accuracy.index or at not in class_accuracy.index:
        return None
    classes = [c for c in class_accuracy.columns if c != "all"]
    change = (class_accuracy.loc[at, classes] - class_accuracy.loc[before, classes]).astype(float).dropna()
    if change.empty or change.min() >= 0:
        return None
    c = change.idxmin()                                       # the first such class when tied
    return int(c), float(class_accuracy.loc[before, c]), float(class_accuracy.loc[at, c])


def spikes(metrics: pd.DataFrame, class_accuracy: pd.DataFrame | None = None, tol: float = 0.01,
           rise: float = SPIKE_RISE) -> list[Spike]:
    """The one-epoch spikes of validation loss (defined in the module docstring), in epoch order.

    Args:
        metrics: columns epoch, train_loss, val_loss, one row per epoch.
        class_accuracy: optional per-class accuracy per epoch (index epoch, columns 0..9, "all"
            ignored), as `analysis.errors.per_class_accuracy_by_epoch`; names the class that dropped most.
        tol: how far above the epoch before the spike the next epoch may stay. Default: 0.01 (1%).
        rise: the relative jump that makes a spike. Default: SPIKE_RISE (10%).
    """
    df = check_metrics(metrics)
    epochs, val = df["epoch"].to_numpy(), df["val_loss"].to_numpy(float)
    out = []
    for k in range(1, len(val) - 1):
        if val[k] > val[k - 1] * (1 + rise) and val[k + 1] <= val[k - 1] * (1 + tol):
            spike = Spike(int(epochs[k]), float(val[k - 1]), float(val[k]), float(val[k + 1]))
            worst = _worst_class(class_accuracy, int(epochs[k - 1]), int(epochs[k]))
            if worst is not None:
                spike.worst_class, spike.class_before, spike.class_at = worst
            out.append(spike)
    return out


def _spike_text(found: list[Spike]) -> str:
    """One sentence naming the spikes, e.g. "... a one-epoch spike at epoch 7 (0.071 → 0.096 → 0.063), ..."."""
    def losses(s: Spike) -> str:
        return f"{s.before:.3g} → {s.at:.3g} → {s.after:.3g}"

    def drop(s: Spike) -> str:
        return f"class {s.worst_class} dropped most ({s.class_before:.1%} → {s.class_at:.1%})"

    if len(found) == 1:
        s = found[0]
        named = f"; {drop(s)}" if s.worst_class is not None else ""
        return f"Validation loss had a one-epoch spike at epoch {s.epoch} ({losses(s)}), not overfitting{named}."
    each = [f"epoch {s.epoch} ({losses(s)}" + (f"; {drop(s)})" if s.worst_class is not None else ")") for s in found]
    return f"Validation loss had one-epoch spikes at {', '.join(each[:-1])} and {each[-1]}, not overfitting."


def diagnose(metrics: pd.DataFrame, patience: int = 2, tol: float = 0.01,
             class_accuracy_by_epoch: pd.DataFrame | None = None) -> Diagnosis:
    """Best epoch, overfitting onset, early-stopping advice and a plain verdict from a metrics table.

    Args:
        metrics: columns epoch, train_loss, val_loss (train_acc, val_acc optional), one row per epoch.
        patience: epochs of rising validation loss before we call it overfitting, and the patience
            of the early-stopping advice. Default: 2.
        tol: relative change of validation loss treated as noise ("flat"). Default: 0.01 (1%).
        class_accuracy_by_epoch: optional per-class accuracy per epoch, as
            `analysis.errors.per_class_accuracy_by_epoch` (see `spikes`), to name the class that dropped
            most at a spike.
    Returns:
        A Diagnosis.
    Raises:
        ValueError: missing columns, an empty table, NaN values or repeated epochs.
    """
    if patience < 1:
        raise ValueError(f"patience must be at least 1, got {patience}")
    df = check_metrics(metrics)
    epochs = df["epoch"].to_numpy()
    val, train = df["val_loss"].to_numpy(float), df["train_loss"].to_numpy(float)
    n, last = len(df), int(epochs[-1])
    best = best_epoch(df)
    b = int(np.flatnonzero(epochs == best)[0])          # its position in the table
    best_loss = float(val[b])
    stop = early_stopping(val, epochs, patience)
    onset_i = _first_rise(val, train, patience, tol, train_falls=True, start=b)
    onset = None if onset_i is None else int(epochs[onset_i])
    rise_i = _first_rise(val, train, patience, tol, train_falls=False, start=b)
    bump_i = _first_rise(val, train, patience, tol, train_falls=False)
    tail = val[-(patience + 1):]
    flat = n >= patience + 1 and (tail.max() - tail.min()) <= tol * tail.mean()
    keep = f"Keep the weights of epoch {best} (lowest validation loss, {best_loss:.3g})."

    if n < MIN_EPOCHS:
        status = "too-few-epochs"
        verdict = (f"Too few epochs to tell: only {n} epoch{'s' if n > 1 else ''} recorded, "
                   f"at least {MIN_EPOCHS} are needed to see a trend.")
    elif onset is not None:
        status = "overfitting"
        stop_text = (f" Early stopping (patience {patience}) would have stopped at epoch {stop.stop_epoch}."
                     if stop.stop_epoch is not None else "")
        verdict = (f"Overfitting started after epoch {onset}: validation loss kept rising while training loss "
                   f"kept falling. {keep}{stop_text}")
    elif rise_i is not None:
        status = "unstable"
        verdict = (f"Validation loss rose after epoch {int(epochs[rise_i])}, but training loss did not keep falling "
                   f"either: that is not overfitting; training may be unstable (try a lower learning rate). {keep}")
    elif flat:
        status = "flat"
        verdict = (f"Validation loss is flat: it changed by less than {tol:.0%} over the last {patience + 1} epochs "
                   f"(epochs {int(epochs[-patience - 1])}–{last}), so more epochs are unlikely to help. {keep}")
    elif val[-1] < val[-2]:
        status = "no-overfitting"
        verdict = (f"No overfitting yet: validation loss was still falling at the last epoch ({last}). "
                   f"Training longer may still help.")
    else:
        status = "too-early"
        verdict = (f"Too early to tell: validation loss is above its lowest (epoch {best}), but has not risen for "
                   f"{patience} epochs in a row yet. Train a few more epochs to see whether it keeps rising. {keep}")
    if bump_i is not None and bump_i < b and n >= MIN_EPOCHS:
        verdict += (f" (Validation loss also rose for a while after epoch {int(epochs[bump_i])}, then fell again "
                    f"to a new lowest at epoch {best}: a temporary bump.)")
    found = spikes(df, class_accuracy_by_epoch, tol)
    if found and n >= MIN_EPOCHS:
        verdict += " " + _spike_text(found)
    return Diagnosis(status, verdict, best, best_loss, last, onset, stop, loss_gap(df), found)
