"""Descriptive statistics of the data: class means, class counts, and which official rows a split holds."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from model.config import DataConfig


def class_means(images: np.ndarray, labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """The mean image of each class.

    Args:
        images: (N,28,28) uint8 or float; labels: (N,) ints in [0, num_classes).
    Returns:
        (num_classes,28,28) float64; a class with no examples is all zeros.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    counts = np.bincount(labels, minlength=num_classes)[:, None, None]        # (C,1,1)
    sums = np.zeros((num_classes,) + images.shape[1:])                        # (C,28,28)
    for c in range(num_classes):   # one class at a time: never a float64 copy of all images (376 MB for MNIST)
        sums[c] = images[labels == c].sum(axis=0, dtype=np.float64)
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)


def class_counts(labels_by_split: Mapping[str, np.ndarray], num_classes: int = 10) -> pd.DataFrame:
    """How many examples of each class each split holds.

    Args:
        labels_by_split: {split name: (N,) int labels in [0, num_classes)}.
    Returns:
        int64 DataFrame, index "class" 0..num_classes-1, one column per split (in the given order).
    """
    counts = {name: np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes)[:num_classes]
              for name, y in labels_by_split.items()}
    return pd.DataFrame(counts, index=pd.RangeIndex(num_classes, name="class"), dtype=np.int64)


def split_rows(data: DataConfig, file_sizes: Mapping[str, int]) -> dict[str, tuple[str, int, int]]:
    """Which rows of the official files each part of a data protocol holds.

    A part starts at `data.first_row(part)` of `data.official_file(part)` and ends where the next part
    taken from the same file starts, or at the end of the file.

    Args:
        data: the run's DataConfig (its split protocol).
        file_sizes: rows of each official file, {"train": 60000, "test": 10000}.
    Returns:
        {"train" | "val" | "test": (official file, first row, end row (exclusive))}.
    """
    parts = ("train", "val", "test")
    starts = {p: (data.official_file(p), data.first_row(p)) for p in parts}
    out = {}
    for p, (file, start) in starts.items():
        later = [s for f, s in starts.values() if f == file and s > start]
        out[p] = (file, start, min(later, default=int(file_sizes[file])))
    return out
