"""Small analysis helpers against hand-written references."""
import numpy as np
import pytest

from analysis.curves import ema
from analysis.dataset import class_means
from analysis.errors import row_normalize


def test_ema_equals_tensorboard_debiased_loop():
    values, s = [4.0, 2.0, 3.0, 1.0, 5.0], 0.6
    last, out = 0.0, []
    for i, v in enumerate(values, 1):   # TensorBoard's smoothing, written out
        last = last * s + (1 - s) * v
        out.append(last / (1 - s ** i))
    assert np.allclose(ema(values, s), out)
    assert np.array_equal(ema(values, 0), values)
    with pytest.raises(ValueError):
        ema(values, 1.0)


def test_class_means_by_hand():
    images = np.array([[[0, 2]], [[4, 6]], [[10, 10]]], dtype=np.uint8)   # (3,1,2)
    means = class_means(images, np.array([1, 1, 3]), num_classes=4)
    assert np.array_equal(means, [[[0, 0]], [[2, 4]], [[0, 0]], [[10, 10]]])


def test_row_normalize_by_hand():
    cm = np.array([[3, 1], [0, 0]])
    assert np.array_equal(row_normalize(cm), [[0.75, 0.25], [0, 0]])
