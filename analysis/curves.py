"""Smoothing for noisy training curves."""
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
