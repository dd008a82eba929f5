"""Finding examples in a split: filter by true class, predicted class and outcome, in a chosen order.

Definitions (for one split's saved predictions; a position is a row of those arrays):

    predicted class   the class with the highest probability (the first one if tied: numpy argmax).
    outcome           "correct" when the predicted class equals the label, "wrong" otherwise.
    position order    ascending position.
    most confident mistakes
                      only the wrong examples, by the probability of the predicted class, highest
                      first; ties keep the lower position first (analysis.errors.confident_mistakes).
"""
from __future__ import annotations

import numpy as np

from analysis.errors import confident_mistakes

OUTCOMES = ("any", "correct", "wrong")
ORDERS = ("position", "most confident mistakes")


def filter_examples(probs: np.ndarray, labels: np.ndarray, true: int | None = None, predicted: int | None = None,
                    outcome: str = "any", order: str = "position") -> np.ndarray:
    """Positions of the examples that match every filter, in the chosen order.

    Args:
        probs: (N, C) class probabilities (or any scores whose argmax is the prediction).
        labels: (N,) true classes.
        true: keep only examples of this true class. Default: None (any).
        predicted: keep only examples predicted as this class. Default: None (any).
        outcome: "any", "correct" or "wrong". Default: "any".
        order: "position" or "most confident mistakes" (which keeps only wrong examples). Default: "position".
    Returns:
        (M,) int64 positions into probs.
    """
    probs, labels = np.asarray(probs), np.asarray(labels)
    if probs.ndim != 2 or labels.shape != (len(probs),):
        raise ValueError(f"probs must be (N, C) and labels (N,), got {probs.shape} and {labels.shape}")
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    pred = probs.argmax(1)
    keep = np.ones(len(labels), dtype=bool)
    if true is not None:
        keep &= labels == int(true)
    if predicted is not None:
        keep &= pred == int(predicted)
    if outcome != "any":
        keep &= (pred == labels) == (outcome == "correct")
    if order == "most confident mistakes":
        ranked = confident_mistakes(probs, labels)
        return ranked[keep[ranked]].astype(np.int64)
    return np.flatnonzero(keep).astype(np.int64)
