"""Where the model goes wrong: confusion matrices, per-class reports, confident mistakes, suspicious labels.

No model is run and nothing is memoised here: functions take arrays, or read a run's prediction
files through `model.runs` (the one reader of the run format) on every call. The dashboard caches
results in one place (dashboard/cache.py). Array functions take:
    probs   (N, 10) float class probabilities (rows sum to 1)
    y_true  (N,)    int labels 0..9
    y_pred  (N,)    int predicted classes 0..9
Functions over epochs take `{epoch: (probs, labels, ...)}`, as `split_predictions_by_epoch` reads it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from model import runs

NUM_CLASSES = 10
SPLITS = ("val", "test")


# ----------------------------------------------------------------------------- array helpers

def softmax(logits: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Row-wise softmax of logits (N, C) in `dtype` (as `scipy.special.softmax`: the row max is subtracted first)."""
    x = np.asarray(logits, dtype=dtype)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _labels(y: np.ndarray, num_classes: int, name: str) -> np.ndarray:
    y = np.asarray(y).astype(np.int64, copy=False).ravel()
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name} must hold classes 0..{num_classes - 1}, got values {y.min()}..{y.max()}")
    return y


def _pair(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    t, p = _labels(y_true, num_classes, "y_true"), _labels(y_pred, num_classes, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} labels but y_pred {len(p)}")
    return t, p


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Counts (num_classes, num_classes) int64: rows are true classes, columns predicted classes.

    As scikit-learn's `confusion_matrix` with `labels=range(num_classes)` (numpy only: the dashboard's server
    does not import scikit-learn), so classes that never occur still get their row and column; labels outside
    0..num_classes-1 are a ValueError.
    """
    t, p = _pair(y_true, y_pred, num_classes)
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes).astype(np.int64)


def per_class_report(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = NUM_CLASSES) -> pd.DataFrame:
    """One row per class 0..num_classes-1: precision, recall, f1, support.

    As scikit-learn's `precision_recall_fscore_support` with `labels=range(num_classes)` and
    `zero_division=0` (a ratio 0/0 counts as 0), from the confusion matrix.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    hits, predicted, support = np.diag(cm).astype(np.float64), cm.sum(axis=0), cm.sum(axis=1)

    def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.divide(a, b, out=np.zeros(num_classes), where=b > 0)
    return pd.DataFrame({"precision": ratio(hits, predicted), "recall": ratio(hits, support),
                         "f1": ratio(2 * hits, predicted + support), "support": support.astype(np.int64)},
                        index=pd.RangeIndex(num_classes, name="class"))


def top_confusions(cm: np.ndarray, k: int = 10) -> pd.DataFrame:
    """The k largest off-diagonal cells: true, predicted, count, share (of the true class's examples).

    Sorted by count (largest first), ties by true then predicted class; cells with count 0 are left out.
    """
    cm = np.asarray(cm, dtype=np.int64)
    support = cm.sum(axis=1)
    true, pred = np.nonzero(cm * (1 - np.eye(len(cm), dtype=np.int64)))
    df = pd.DataFrame({"true": true, "predicted": pred, "count": cm[true, pred]})
    df["share"] = df["count"] / support[true]
    df = df.sort_values(["count", "true", "predicted"], ascending=[False, True, True], kind="stable")
    return df.head(k).reset_index(drop=True)


def confident_mistakes(probs: np.ndarray, y_true: np.ndarray, k: int | None = None) -> np.ndarray:
    """Positions of the wrong predictions, most confident first (ties: lower position first).

    Args:
        probs: (N, 10) class probabilities.
        y_true: (N,) labels.
        k: keep at most this many. Default: None (all mistakes).
    Returns:
        (M,) int64 positions into probs.
    """
    probs = np.asarray(probs)
    y = _labels(y_true, probs.shape[1], "y_true")
    pred, conf = probs.argmax(1), probs.max(1)
    wrong = np.flatnonzero(pred != y)
    order = wrong[np.argsort(-conf[wrong], kind="stable")]
    return order if k is None else order[:k]


def cell_examples(probs: np.ndarray, y_true: np.ndarray, true_class: int, predicted_class: int) -> np.ndarray:
    """Positions of the examples in one confusion-matrix cell, most confident first.

    Args:
        probs: (N, C) class probabilities; the prediction is the argmax of a row.
        y_true: (N,) labels.
        true_class, predicted_class: the cell (its row and column of `confusion_matrix`).
    Returns:
        (M,) int64 positions with label `true_class` and prediction `predicted_class`, sorted by the
        probability of `predicted_class` (highest first; ties: lower position first). M is the cell's count.
    """
    probs = np.asarray(probs)
    y = _labels(y_true, probs.shape[1], "y_true")
    where = np.flatnonzero((y == true_class) & (probs.argmax(1) == predicted_class))
    return where[np.argsort(-probs[where, predicted_class], kind="stable")].astype(np.int64)


def top_classes(probs: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The k most probable classes of each row and their probabilities, highest first (ties: lower class first).

    Args:
        probs: (N, C) or (C,) class probabilities.
        k: how many classes. Default: 3.
    Returns:
        (classes (N, k) int64, probabilities (N, k)); one row without the N axis for a (C,) input.
    """
    p = np.asarray(probs)
    rows = np.atleast_2d(p)
    order = np.argsort(-rows, axis=1, kind="stable")[:, :k].astype(np.int64)
    top = np.take_along_axis(rows, order, axis=1)
    return (order[0], top[0]) if p.ndim == 1 else (order, top)


def suspicious_labels(probs_by_epoch: list[np.ndarray], y_true: np.ndarray, threshold: float = 0.9,
                      index: np.ndarray | None = None) -> pd.DataFrame:
    """Examples whose label the model keeps contradicting with confidence: possibly mislabelled.

    An example is listed when, in every given epoch, the model predicts one and the same other class
    with probability >= threshold.

    Args:
        probs_by_epoch: one (N, 10) probability array per epoch, usually the last few epochs.
        y_true: (N,) labels.
        threshold: the minimum probability of the other class in every epoch. Default: 0.9.
        index: (N,) dataset index of each row (e.g. val_index). Default: None (the row position).
    Returns:
        DataFrame with columns position, index, label, predicted, confidence (mean probability of the
        predicted class over the epochs), label_prob (mean probability given to the label), sorted
        by confidence, most confident first.
    """
    if not probs_by_epoch:
        raise ValueError("suspicious_labels needs at least one epoch of probabilities")
    stack = np.stack([np.asarray(p, dtype=np.float32) for p in probs_by_epoch])   # (E, N, C)
    y = _labels(y_true, stack.shape[2], "y_true")
    if stack.shape[1] != len(y):
        raise ValueError(f"probabilities cover {stack.shape[1]} examples but y_true {len(y)}")
    pred = stack.argmax(2)                                                         # (E, N)
    conf = stack.max(2)                                                            # (E, N)
    keep = (pred != y).all(0) & (pred == pred[0]).all(0) & (conf >= threshold).all(0)
    pos = np.flatnonzero(keep)
    idx = pos if index is None else np.asarray(index)[pos]
    df = pd.DataFrame({"position": pos, "index": idx, "label": y[pos], "predicted": pred[0, pos],
                       "confidence": conf[:, pos].mean(0), "label_prob": stack[:, pos, y[pos]].mean(0)})
    return df.sort_values(["confidence", "position"], ascending=[False, True], kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------- reading runs

def prediction_epochs(run_dir: Path | str) -> list[int]:
    """Epochs with a predictions file; a RunError when there are none."""
    epochs = runs.prediction_epochs(run_dir)
    if not epochs:
        raise runs.RunError(runs.predictions_dir(run_dir), "no prediction files yet")
    return epochs


def split_arrays(predictions: Mapping[str, np.ndarray], split: str = "val", source: Path | str = "the predictions"
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probs (N,10) float32, labels (N,) int64, index (N,) int64) of the val or test set in one epoch's arrays.

    Args:
        predictions: the arrays of one predictions file (`model.runs.load_predictions`).
        split: "val" or "test". Default: "val".
        source: the file the arrays came from, named in the RunError when one is missing.
    `index` is the row in the official MNIST file: `RunConfig.data.official_file(split)` names the file.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    logits, labels, index = runs.split_arrays(predictions, split, source)
    return softmax(logits), np.asarray(labels).astype(np.int64), np.asarray(index).astype(np.int64)


def split_predictions(run_dir: Path | str, epoch: int, split: str = "val"
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`split_arrays` of a run's predictions file at an epoch, read through `model.runs`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split_arrays(runs.load_predictions(run_dir, epoch), split, runs.predictions_path(Path(run_dir), epoch))


def split_predictions_by_epoch(run_dir: Path | str, split: str = "val", epochs: Sequence[int] | None = None
                               ) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{epoch: split_predictions(...)} for the given epochs. Default: every epoch with predictions."""
    return {e: split_predictions(run_dir, e, split) for e in (prediction_epochs(run_dir) if epochs is None else epochs)}


# ----------------------------------------------------------------------------- over epochs
# These take {epoch: (probs, labels, ...)} as split_predictions_by_epoch gives (extra items are ignored).

def confusion_by_epoch(predictions: Mapping[int, Sequence[np.ndarray]]) -> dict[int, np.ndarray]:
    """{epoch: confusion matrix (10,10)} of {epoch: (probs, labels, ...)}."""
    return {int(e): confusion_matrix(p[1], np.asarray(p[0]).argmax(1)) for e, p in predictions.items()}


def per_class_accuracy_by_epoch(confusions: Mapping[int, np.ndarray]) -> pd.DataFrame:
    """Accuracy (recall) of each class per epoch from {epoch: confusion matrix}.

    Returns:
        index epoch (sorted), columns 0..C-1 and "all" (overall accuracy); a class with no examples is NaN.
    """
    rows = {}
    for epoch in sorted(confusions):
        cm = np.asarray(confusions[epoch])
        support = cm.sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            acc = np.where(support > 0, np.diag(cm) / support, np.nan)
        rows[epoch] = [*acc, np.trace(cm) / max(cm.sum(), 1)]
    n = len(next(iter(confusions.values()))) if confusions else NUM_CLASSES
    df = pd.DataFrame.from_dict(rows, orient="index", columns=[*range(n), "all"])
    df.index.name = "epoch"
    return df


def mistake_confidence_by_epoch(predictions: Mapping[int, Sequence[np.ndarray]]) -> pd.DataFrame:
    """Per epoch: mean confidence (top probability) on wrong and on right predictions, and counts.

    Args:
        predictions: {epoch: (probs, labels, ...)}.
    Returns:
        Columns epoch, wrong_confidence, right_confidence, n_wrong, n_right (a mean over no example is NaN),
        sorted by epoch. A model that grows more confident in its mistakes as it trains is a warning sign.
    """
    rows = []
    for epoch in sorted(predictions):
        probs, labels = np.asarray(predictions[epoch][0]), np.asarray(predictions[epoch][1])
        conf, right = probs.max(1), probs.argmax(1) == labels
        rows.append({"epoch": int(epoch),
                     "wrong_confidence": float(conf[~right].mean()) if (~right).any() else np.nan,
                     "right_confidence": float(conf[right].mean()) if right.any() else np.nan,
                     "n_wrong": int((~right).sum()), "n_right": int(right.sum())})
    return pd.DataFrame(rows, columns=["epoch", "wrong_confidence", "right_confidence", "n_wrong", "n_right"])


def classes_getting_worse(acc_by_epoch: pd.DataFrame, min_drop: float = 0.0) -> pd.DataFrame:
    """Classes whose accuracy fell from one epoch to the next while the overall accuracy rose.

    Args:
        acc_by_epoch: a `per_class_accuracy_by_epoch` table (index epoch, columns 0..9 and "all").
        min_drop: report only drops larger than this (accuracy as a fraction). Default: 0.0.
    Returns:
        DataFrame with columns epoch (the later epoch), class, before, after, change (after - before,
        negative), overall_change; sorted by epoch, then largest drop first.
    """
    if "all" not in acc_by_epoch.columns:
        raise ValueError('acc_by_epoch needs an "all" column (overall accuracy), as per_class_accuracy_by_epoch gives')
    df = acc_by_epoch.sort_index()
    classes = [c for c in df.columns if c != "all"]
    rows = []
    for prev, cur in zip(df.index[:-1], df.index[1:]):
        overall = df.at[cur, "all"] - df.at[prev, "all"]
        if not overall > 0:
            continue
        for c in classes:
            before, after = df.at[prev, c], df.at[cur, c]
            if after - before < -min_drop:   # NaN compares False: absent classes are skipped
                rows.append({"epoch": cur, "class": c, "before": before, "after": after,
                             "change": after - before, "overall_change": overall})
    out = pd.DataFrame(rows, columns=["epoch", "class", "before", "after", "change", "overall_change"])
    return out.sort_values(["epoch", "change"], kind="stable").reset_index(drop=True)


def suspicious_labels_in_run(predictions: Mapping[int, Sequence[np.ndarray]], last: int = 3,
                             threshold: float = 0.9) -> pd.DataFrame:
    """`suspicious_labels` over the last `last` epochs of {epoch: (probs, labels, index)}.

    The labels and the `index` column (the row in the official MNIST file) come from the last epoch.
    """
    epochs = sorted(predictions)[-last:]
    if not epochs:
        raise ValueError("suspicious_labels_in_run needs at least one epoch of predictions")
    _, labels, index = predictions[epochs[-1]][:3]
    return suspicious_labels([predictions[e][0] for e in epochs], labels, threshold, index=index)


def row_normalize(cm: np.ndarray) -> np.ndarray:
    """Each row of a confusion matrix as shares of its true class (rows with no examples stay 0)."""
    cm = np.asarray(cm, dtype=float)
    support = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, support, out=np.zeros(cm.shape), where=support > 0)
