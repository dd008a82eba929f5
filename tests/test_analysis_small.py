"""Small analysis helpers against hand-written references."""
import numpy as np
import pandas as pd
import pytest

from analysis.curves import ema, run_summary
from analysis.dataset import class_counts, class_means, split_rows
from analysis.errors import row_normalize
from model.config import DataConfig


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


def test_class_counts_by_hand():
    got = class_counts({"train": np.array([0, 1, 1, 9]), "val": np.array([2])}, num_classes=10)
    assert list(got.columns) == ["train", "val"] and got.index.name == "class"
    assert got["train"].tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0, 1]
    assert got["val"].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]


def test_split_rows_of_both_protocols():
    sizes = {"train": 60000, "test": 10000}
    assert split_rows(DataConfig("classic"), sizes) == {
        "train": ("train", 0, 50000), "val": ("train", 50000, 60000), "test": ("test", 0, 10000)}
    assert split_rows(DataConfig("seed"), sizes) == {
        "train": ("train", 0, 60000), "val": ("test", 0, 10000), "test": ("test", 0, 10000)}


def test_run_summary_by_hand():
    metrics = pd.DataFrame({"epoch": [1, 2, 3], "val_loss": [0.5, 0.3, 0.4], "val_acc": [0.80, 0.90, 0.95],
                            "test_acc": [0.79, 0.88, 0.93], "epoch_seconds": [10.0, 20.0, 30.5]})
    got = run_summary(metrics, 2)
    assert got == {"epochs_done": 3, "best_epoch": 2, "val_acc": 0.90, "test_acc": 0.88, "top_val_acc": 0.95,
                   "seconds": 60.5}
    bare = run_summary(metrics[["epoch", "val_loss"]], 7)     # no accuracies, a best epoch not in the table
    assert bare["epochs_done"] == 3 and bare["best_epoch"] is None
    assert all(np.isnan(bare[k]) for k in ("val_acc", "test_acc", "top_val_acc", "seconds"))
    assert run_summary(metrics.iloc[:0], None)["epochs_done"] == 0
