"""Where the model goes wrong: confusion matrices, per-class reports, confident mistakes, suspicious labels.

Everything here works from saved predictions (`predictions/epoch_NNN.npz`, read through
`model.runs.load_predictions`); no model is run. Array functions take:
    probs   (N, 10) float class probabilities (rows sum to 1)
    y_true  (N,)    int labels 0..9
    y_pred  (N,)    int predicted classes 0..9
Run functions take a run folder and read its prediction files.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from model import runs

NUM_CLASSES = 10
SPLITS = ("val", "test")


# ----------------------------------------------------------------------------- array helpers

def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits (N, C) in float32 (stable: the row max is subtracted first)."""
    z = np.asarray(logits, dtype=np.float32)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _labels(y: np.ndarray, num_classes: int, name: str) -> np.ndarray:
    y = np.asarray(y).astype(np.int64, copy=False).ravel()
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name} must hold classes 0..{num_classes - 1}, got values {y.min()}..{y.max()}")
    return y


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Counts (num_classes, num_classes) int64: rows are true classes, columns predicted classes."""
    t, p = _labels(y_true, num_classes, "y_true"), _labels(y_pred, num_classes, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} labels but y_pred {len(p)}")
    return np.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def report_from_confusion(cm: np.ndarray) -> pd.DataFrame:
    """precision, recall, f1, support per class from a confusion matrix; 0 where a ratio is 0/0."""
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)            # true examples of each class
    predicted = cm.sum(axis=0)          # how often each class was predicted
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = support + predicted     # 2tp + fp + fn
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    return pd.DataFrame({"precision": precision, "recall": recall, "f1": f1, "support": support},
                        index=pd.RangeIndex(len(cm), name="class"))


def per_class_report(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = NUM_CLASSES) -> pd.DataFrame:
    """One row per class 0..9: precision, recall, f1, support (a ratio 0/0 counts as 0, like sklearn's
    zero_division=0)."""
    return report_from_confusion(confusion_matrix(y_true, y_pred, num_classes))


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

@lru_cache(maxsize=32)
def _read(path: str, epoch: int, mtime_ns: int, size: int) -> dict[str, np.ndarray]:
    arrays = runs.load_predictions(path, epoch)
    for a in arrays.values():
        a.flags.writeable = False   # shared between callers: nobody may change them
    return arrays


def read_predictions(run_dir: Path | str, epoch: int) -> dict[str, np.ndarray]:
    """`model.runs.load_predictions`, memoised per file version (arrays are read-only)."""
    path = runs.predictions_path(Path(run_dir), epoch)
    try:
        st = path.stat()
    except OSError:
        return runs.load_predictions(run_dir, epoch)   # raises RunError("missing")
    return dict(_read(str(run_dir), epoch, st.st_mtime_ns, st.st_size))


def clear_memo() -> None:
    """Forget memoised prediction files (the benchmark uses this to time cold reads)."""
    _read.cache_clear()


def prediction_epochs(run_dir: Path | str) -> list[int]:
    """Epochs with a predictions file; a RunError when there are none."""
    epochs = runs.prediction_epochs(run_dir)
    if not epochs:
        raise runs.RunError(Path(run_dir) / "predictions", "no prediction files yet")
    return epochs


def split_predictions(run_dir: Path | str, epoch: int, split: str = "val"
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probs (N,10) float32, labels (N,) int64, index (N,) int64) of the val or test set at an epoch.

    `index` is the row in the official MNIST file: see config["data"]["val_source"] for which file
    the val set comes from (classic split: train[50000:]; seed split: the test file).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    p = read_predictions(run_dir, epoch)
    try:
        logits, labels, index = p[f"{split}_logits"], p[f"{split}_labels"], p[f"{split}_index"]
    except KeyError as e:
        raise runs.RunError(runs.predictions_path(Path(run_dir), epoch), f"no {e.args[0]} array") from e
    return softmax(logits), labels.astype(np.int64), index.astype(np.int64)


def confusion_by_epoch(run_dir: Path | str, split: str = "val") -> dict[int, np.ndarray]:
    """{epoch: confusion matrix (10,10)} for every epoch with predictions."""
    out = {}
    for epoch in prediction_epochs(run_dir):
        probs, labels, _ = split_predictions(run_dir, epoch, split)
        out[epoch] = confusion_matrix(labels, probs.argmax(1))
    return out


def per_class_accuracy_by_epoch(run_dir: Path | str, split: str = "val") -> pd.DataFrame:
    """Accuracy (recall) of each class per epoch: index epoch, columns 0..9 and "all" (overall accuracy).

    A class with no examples in the split gets NaN.
    """
    rows = {}
    for epoch, cm in confusion_by_epoch(run_dir, split).items():
        support = cm.sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            acc = np.where(support > 0, np.diag(cm) / support, np.nan)
        rows[epoch] = [*acc, np.trace(cm) / max(cm.sum(), 1)]
    df = pd.DataFrame.from_dict(rows, orient="index", columns=[*range(NUM_CLASSES), "all"])
    df.index.name = "epoch"
    return df


def mistake_confidence_by_epoch(run_dir: Path | str, split: str = "val") -> pd.DataFrame:
    """Per epoch: mean confidence (top probability) on wrong and on right predictions, and counts.

    Columns: epoch, wrong_confidence, right_confidence, n_wrong, n_right (a mean over no example is NaN).
    A model that grows more confident in its mistakes as it trains is a warning sign.
    """
    rows = []
    for epoch in prediction_epochs(run_dir):
        probs, labels, _ = split_predictions(run_dir, epoch, split)
        conf, right = probs.max(1), probs.argmax(1) == labels
        rows.append({"epoch": epoch,
                     "wrong_confidence": float(conf[~right].mean()) if (~right).any() else np.nan,
                     "right_confidence": float(conf[right].mean()) if right.any() else np.nan,
                     "n_wrong": int((~right).sum()), "n_right": int(right.sum())})
    return pd.DataFrame(rows)


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


def suspicious_labels_in_run(run_dir: Path | str, split: str = "val", last: int = 3,
                             threshold: float = 0.9) -> pd.DataFrame:
    """`suspicious_labels` over the last `last` epochs of a run's val or test predictions.

    The `index` column is the row in the official MNIST file (see `split_predictions`).
    """
    epochs = prediction_epochs(run_dir)[-last:]
    loaded = [split_predictions(run_dir, e, split) for e in epochs]
    _, labels, index = loaded[-1]
    return suspicious_labels([p for p, _, _ in loaded], labels, threshold, index=index)


def row_normalize(cm: np.ndarray) -> np.ndarray:
    """Each row of a confusion matrix as shares of its true class (rows with no examples stay 0)."""
    cm = np.asarray(cm, dtype=float)
    support = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, support, out=np.zeros(cm.shape), where=support > 0)
