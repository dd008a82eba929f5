"""Descriptive statistics of the images themselves."""
from __future__ import annotations

import numpy as np


def class_means(images: np.ndarray, labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """The mean image of each class.

    Args:
        images: (N,28,28) uint8 or float; labels: (N,) ints in [0, num_classes).
    Returns:
        (num_classes,28,28) float64; a class with no examples is all zeros.
    """
    images = np.asarray(images, dtype=np.float64)
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=num_classes)[:, None, None]        # (C,1,1)
    sums = np.zeros((num_classes,) + images.shape[1:])
    np.add.at(sums, labels, images)                                            # (C,28,28)
    return np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
