"""Training curves: smoothing for noisy curves, and the summary of a run's metrics table."""
from __future__ import annotations

import numpy as np
import pandas as pd


def ema(values, smoothing: float) -> np.ndarray:
    """Exponential moving average with TensorBoard's debiasing (pandas `ewm(adjust=True)`).

    Args:
        values: a 1-D series of numbers, e.g. the training loss per logged step.
        smoothing: 0 (no smoothing) to just under 1 (very smooth); the weight of the past.
    Returns:
        float array of the same length.
    """
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    values = pd.Series(np.asarray(values, dtype=float))
    return values.to_numpy() if smoothing == 0 else values.ewm(alpha=1 - smoothing).mean().to_numpy()


def run_summary(metrics: pd.DataFrame, best_epoch: int | None) -> dict:
    """The numbers of one run's row in a runs table, from its metrics.csv table.

    Args:
        metrics: one row per finished epoch (columns epoch, and val_acc, test_acc, epoch_seconds when recorded).
        best_epoch: the epoch to report accuracies at (the dashboard passes the lowest-validation-loss
            epoch of analysis.overfitting.diagnose); None: no accuracies at best.
    Returns:
        {"epochs_done": finished epochs, "best_epoch", "val_acc" and "test_acc" at the best epoch,
        "top_val_acc": the highest val_acc of any epoch, "seconds": the summed epoch_seconds}; a number
        that cannot be had (column missing, best epoch not in the table, no epochs) is NaN.
    """
    def column(name: str) -> pd.Series:
        return pd.to_numeric(metrics[name], errors="coerce") if name in metrics else pd.Series(np.nan, metrics.index)

    at_best = metrics["epoch"] == best_epoch if best_epoch is not None else pd.Series(False, metrics.index)
    at = {name: float(column(name)[at_best].iloc[0]) if at_best.any() else np.nan for name in ("val_acc", "test_acc")}
    seconds = column("epoch_seconds")
    return {"epochs_done": int(len(metrics)), "best_epoch": best_epoch if at_best.any() else None, **at,
            "top_val_acc": float(column("val_acc").max()) if len(metrics) else np.nan,
            "seconds": float(seconds.sum()) if len(metrics) and seconds.notna().any() else np.nan}
