"""Training dynamics: which training examples the model forgets, and a map of easy and hard examples.

Reads `train_true_prob` and `train_correct` from every epoch's predictions file. These are seen
*during* training, in the example's own batch (model in train mode, weights still moving within
the epoch), exactly as the two references below record them.

References:
    Toneva et al. 2019, "An Empirical Study of Example Forgetting during Deep Neural Network
    Learning": a forgetting event is an example going from right to wrong between two epochs.
    Swayamdipta et al. 2020, "Dataset Cartography": per example, confidence = mean true-class
    probability over epochs, variability = its standard deviation, correctness = fraction of epochs
    right. The paper reads regions off the map (easy-to-learn: high confidence, low variability;
    hard-to-learn: low confidence, low variability; ambiguous: high variability). We use fixed
    thresholds rather than the paper's rank-based top-33% selections, because on MNIST almost every
    example is easy and a fixed share per region would mislabel most "ambiguous" ones:
        ambiguous      variability >= 0.2
        easy           otherwise, confidence >= 0.5
        hard-to-learn  otherwise (confidence < 0.5)
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis.errors import NUM_CLASSES, prediction_epochs
from model import runs

AMBIGUOUS_VARIABILITY = 0.2   # variability at or above this: ambiguous
EASY_CONFIDENCE = 0.5         # below the variability threshold: easy at or above this confidence, else hard-to-learn
REGIONS = ("easy", "ambiguous", "hard-to-learn")


class Dynamics(NamedTuple):
    """Per-epoch training records of a run, rows in epoch order, columns in train_index order."""
    true_prob: np.ndarray   # (E, N) float32 probability of the true class, seen in its batch
    correct: np.ndarray     # (E, N) bool, right in its batch
    labels: np.ndarray      # (N,) int64
    index: np.ndarray       # (N,) int64 row in the official training file


def training_dynamics(run_dir: Path | str) -> Dynamics:
    """Stack train_true_prob and train_correct of every epoch with predictions: (E, N) each.

    Raises:
        RunError: no predictions, no training records (e.g. an imported checkpoint), or epochs that
            cover different training examples.
    """
    return dynamics_of(run_dir, {e: runs.load_predictions(run_dir, e) for e in prediction_epochs(run_dir)})


def dynamics_of(run_dir: Path | str, predictions_by_epoch: dict[int, dict[str, np.ndarray]]) -> Dynamics:
    """`training_dynamics` from predictions already read: {epoch: the arrays of its predictions file}.

    `run_dir` only names the files in errors.
    """
    probs, correct, labels, index = [], [], None, None
    if not predictions_by_epoch:
        raise runs.RunError(runs.predictions_dir(run_dir), "no prediction files yet")
    for epoch in sorted(predictions_by_epoch):
        p = predictions_by_epoch[epoch]
        path = runs.predictions_path(Path(run_dir), epoch)
        if "train_true_prob" not in p or "train_correct" not in p or "train_index" not in p:
            raise runs.RunError(path, "no training records (train_true_prob / train_correct): "
                                      "runs imported from a checkpoint have none")
        order = np.argsort(p["train_index"], kind="stable")
        idx = p["train_index"][order].astype(np.int64)
        if index is None:
            index, labels = idx, p["train_labels"][order].astype(np.int64)
        elif not np.array_equal(idx, index):
            raise runs.RunError(path, "its training examples differ from the first epoch's")
        probs.append(p["train_true_prob"][order].astype(np.float32))
        correct.append(p["train_correct"][order].astype(bool))
    return Dynamics(np.stack(probs), np.stack(correct), labels, index)


def forgetting_events(correct_by_epoch: np.ndarray) -> np.ndarray:
    """Per example, how many times it went from right to wrong between consecutive epochs.

    Args:
        correct_by_epoch: (E, N) bool, row t = right at epoch t.
    Returns:
        (N,) int64 counts of forgetting events.
    """
    c = np.asarray(correct_by_epoch, dtype=bool)
    if c.ndim != 2:
        raise ValueError(f"correct_by_epoch must be (epochs, examples), got shape {c.shape}")
    return (c[:-1] & ~c[1:]).sum(0).astype(np.int64)


def forgetting_table(correct_by_epoch: np.ndarray, labels: np.ndarray,
                     num_classes: int = NUM_CLASSES) -> pd.DataFrame:
    """Per class: examples, events (total), mean_events, forgotten_share (forgotten at least once),
    never_learned (never right in any epoch)."""
    c = np.asarray(correct_by_epoch, dtype=bool)
    y = np.asarray(labels).astype(np.int64)
    events = forgetting_events(c)
    n = np.bincount(y, minlength=num_classes)
    total = np.bincount(y, weights=events, minlength=num_classes)
    forgotten = np.bincount(y, weights=events > 0, minlength=num_classes)
    never = np.bincount(y, weights=~c.any(0), minlength=num_classes)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = pd.DataFrame({"examples": n, "events": total.astype(np.int64), "mean_events": total / n,
                           "forgotten_share": forgotten / n, "never_learned": never.astype(np.int64)},
                          index=pd.RangeIndex(num_classes, name="class"))
    return df


def forgetting_by_class(run_dir: Path | str) -> pd.DataFrame:
    """`forgetting_table` of a run's training examples."""
    d = training_dynamics(run_dir)
    return forgetting_table(d.correct, d.labels)


def most_forgotten(run_dir: Path | str, k: int = 20) -> pd.DataFrame:
    """The k training examples with the most forgetting events: index, label, events, last_correct.

    Sorted by events (most first), ties by index; examples never forgotten are left out.
    """
    return most_forgotten_of(training_dynamics(run_dir), k)


def most_forgotten_of(d: Dynamics, k: int = 20) -> pd.DataFrame:
    """`most_forgotten` of dynamics already stacked."""
    events = forgetting_events(d.correct)
    pos = np.flatnonzero(events > 0)
    pos = pos[np.lexsort((d.index[pos], -events[pos]))][:k]
    return pd.DataFrame({"index": d.index[pos], "label": d.labels[pos], "events": events[pos],
                         "last_correct": d.correct[-1, pos]})


def cartography_table(true_prob: np.ndarray, correct: np.ndarray, labels: np.ndarray, index: np.ndarray,
                      ambiguous_variability: float = AMBIGUOUS_VARIABILITY,
                      easy_confidence: float = EASY_CONFIDENCE) -> pd.DataFrame:
    """Dataset cartography from (E, N) arrays: index, label, confidence, variability, correctness, region.

    variability is the population standard deviation over epochs (numpy's default, ddof=0, as in
    the paper's code). Thresholds: see the module docstring.
    """
    p = np.asarray(true_prob, dtype=np.float64)              # (E, N)
    c = np.asarray(correct, dtype=bool)                      # (E, N)
    if p.shape != c.shape or p.ndim != 2:
        raise ValueError(f"true_prob and correct must both be (epochs, examples); got {p.shape} and {c.shape}")
    confidence, variability = p.mean(0), p.std(0)
    region = np.where(variability >= ambiguous_variability, "ambiguous",
                      np.where(confidence >= easy_confidence, "easy", "hard-to-learn"))
    return pd.DataFrame({"index": np.asarray(index), "label": np.asarray(labels), "confidence": confidence,
                         "variability": variability, "correctness": c.mean(0), "region": region})


def cartography(run_dir: Path | str) -> pd.DataFrame:
    """`cartography_table` of a run's training examples, one row per example (in index order)."""
    d = training_dynamics(run_dir)
    return cartography_table(d.true_prob, d.correct, d.labels, d.index)
