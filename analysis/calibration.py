"""Does the model's confidence mean what it says? Reliability diagrams and expected calibration error.

Reference: Guo et al. 2017, "On Calibration of Modern Neural Networks". The confidence of a
prediction is its top class probability. Confidences are put in `bins` equal-width bins
(lower, upper], the first bin also holding 0. For each bin:
    confidence = mean confidence, accuracy = fraction of right predictions,
    gap = confidence - accuracy   (> 0: overconfident, < 0: underconfident).
ECE = sum over bins of (count / N) * |gap|: 0 for a perfectly calibrated model.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis.errors import prediction_epochs, split_predictions


class Reliability(NamedTuple):
    """A reliability table and its ECE; unpacks as `table, ece = reliability(...)`."""
    table: pd.DataFrame   # one row per bin: bin_lower, bin_upper, count, confidence, accuracy, gap (NaN if empty)
    ece: float            # expected calibration error, in [0, 1]


def reliability(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> Reliability:
    """The reliability table and expected calibration error of predictions.

    Args:
        probs: (N, C) class probabilities.
        y_true: (N,) labels.
        bins: the number of equal-width confidence bins. Default: 15.
    Returns:
        Reliability(table, ece); empty bins have count 0 and NaN confidence, accuracy and gap.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true).astype(np.int64).ravel()
    if probs.ndim != 2 or len(probs) != len(y):
        raise ValueError(f"probs must be (N, C) with N = len(y_true); got {probs.shape} and {len(y)} labels")
    if len(y) == 0:
        raise ValueError("reliability needs at least one prediction")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    conf = probs.max(1)                                                   # (N,)
    right = (probs.argmax(1) == y).astype(np.float64)                     # (N,)
    edges = np.linspace(0.0, 1.0, bins + 1)
    b = np.searchsorted(edges[1:-1], conf, side="left")                  # bin (lower, upper] of each prediction
    count = np.bincount(b, minlength=bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_conf = np.bincount(b, weights=conf, minlength=bins) / count
        acc = np.bincount(b, weights=right, minlength=bins) / count
    gap = mean_conf - acc
    table = pd.DataFrame({"bin_lower": edges[:-1], "bin_upper": edges[1:], "count": count,
                          "confidence": mean_conf, "accuracy": acc, "gap": gap})
    ece = float(np.nansum(count / len(y) * np.abs(gap)))
    return Reliability(table, ece)


def calibration_by_epoch(run_dir: Path | str, split: str = "val", bins: int = 15) -> pd.DataFrame:
    """Per epoch: ece, confidence (mean top probability), accuracy, overconfidence (confidence - accuracy).

    Columns: epoch, ece, confidence, accuracy, overconfidence.
    """
    rows = []
    for epoch in prediction_epochs(run_dir):
        probs, labels, _ = split_predictions(run_dir, epoch, split)
        _, ece = reliability(probs, labels, bins)
        confidence = float(probs.max(1).mean())
        accuracy = float((probs.argmax(1) == labels).mean())
        rows.append({"epoch": epoch, "ece": ece, "confidence": confidence, "accuracy": accuracy,
                     "overconfidence": confidence - accuracy})
    return pd.DataFrame(rows)
