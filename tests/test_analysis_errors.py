"""analysis.errors against sklearn / scipy / hand-computed cases, and on the real fixture run."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.special
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import precision_recall_fscore_support

from analysis import errors
from analysis.errors import (classes_getting_worse, confident_mistakes, confusion_matrix, mistake_confidence_by_epoch,
                             per_class_accuracy_by_epoch, per_class_report, softmax, split_predictions,
                             suspicious_labels, suspicious_labels_in_run, top_confusions)
from model import runs

LABELS = list(range(10))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matrix_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 8, 400)               # classes 8, 9 never true
    y_pred = rng.choice([0, 1, 2, 3, 5, 9], 400)   # classes 4, 6, 7, 8 never predicted
    got = confusion_matrix(y_true, y_pred)
    np.testing.assert_array_equal(got, sk_confusion_matrix(y_true, y_pred, labels=LABELS))
    assert got.shape == (10, 10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_class_report_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 8, 300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.choice([0, 1, 2, 9], 300))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=LABELS, zero_division=0)
    got = per_class_report(y_true, y_pred)
    assert list(got.index) == LABELS and list(got.columns) == ["precision", "recall", "f1", "support"]
    np.testing.assert_allclose(got["precision"], p)
    np.testing.assert_allclose(got["recall"], r)
    np.testing.assert_allclose(got["f1"], f)
    np.testing.assert_array_equal(got["support"], s)


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match="0..9"):
        confusion_matrix([0, 10], [0, 1])
    with pytest.raises(ValueError, match="y_pred"):
        confusion_matrix([0, 1], [0, -1])
    with pytest.raises(ValueError, match="labels"):
        confusion_matrix([0, 1, 2], [0, 1])


def test_top_confusions_hand_built():
    cm = np.zeros((10, 10), dtype=int)
    cm[4, 4], cm[4, 9] = 90, 10      # 10% of the 4s read as 9
    cm[7, 7], cm[7, 1] = 45, 5       # 10% of the 7s read as 1
    cm[3, 3], cm[3, 5] = 30, 20      # 40% of the 3s read as 5
    got = top_confusions(cm, k=2)
    assert got[["true", "predicted", "count"]].values.tolist() == [[3, 5, 20], [4, 9, 10]]
    assert got["share"].tolist() == pytest.approx([0.4, 0.1])
    everything = top_confusions(cm, k=100)
    assert len(everything) == 3        # zero cells and the diagonal are left out
    assert everything.iloc[2][["true", "predicted"]].tolist() == [7, 1]


def test_confident_mistakes_hand_built():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.05, 0.95]])
    y = np.array([0, 0, 1, 1, 0])      # wrong: 1 (conf .8), 2 (conf .6), 4 (conf .95)
    np.testing.assert_array_equal(confident_mistakes(probs, y), [4, 1, 2])
    np.testing.assert_array_equal(confident_mistakes(probs, y, k=2), [4, 1])
    assert len(confident_mistakes(probs, np.array([0, 1, 0, 1, 1]))) == 0


def test_softmax_matches_scipy_and_is_stable():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 5, (50, 10)).astype(np.float16)
    got = softmax(logits)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, scipy.special.softmax(logits.astype(np.float64), axis=1), rtol=1e-5, atol=1e-7)
    big = softmax(np.array([[1000.0, 0.0, -1000.0]]))
    np.testing.assert_allclose(big, [[1.0, 0.0, 0.0]])


def test_suspicious_labels_hand_built():
    # 4 examples, 3 classes (padded to probability rows), 2 epochs
    e1 = np.array([[0.95, 0.03, 0.02],    # 0: label 1, model says 0 with .95 -> suspicious
                   [0.10, 0.85, 0.05],    # 1: label 1, right
                   [0.02, 0.02, 0.96],    # 2: label 0, says 2 in e1 ...
                   [0.05, 0.92, 0.03]])   # 3: label 2, says 1 with .92 in e1 ...
    e2 = np.array([[0.91, 0.05, 0.04],    # 0: still 0 -> listed, mean conf .93
                   [0.05, 0.90, 0.05],
                   [0.97, 0.02, 0.01],    # 2: ... but 0 (its label) in e2 -> not listed
                   [0.02, 0.97, 0.01]])   # 3: still 1 with .97 -> listed, mean conf .945
    y = np.array([1, 1, 0, 2])
    got = suspicious_labels([e1, e2], y, threshold=0.9, index=np.array([100, 101, 102, 103]))
    assert got["position"].tolist() == [3, 0]
    assert got["index"].tolist() == [103, 100]
    assert got["label"].tolist() == [2, 1] and got["predicted"].tolist() == [1, 0]
    assert got["confidence"].tolist() == pytest.approx([0.945, 0.93])
    assert got["label_prob"].tolist() == pytest.approx([0.02, 0.04])
    # a stricter threshold drops example 0 (0.91 in e2)
    assert suspicious_labels([e1, e2], y, threshold=0.92)["position"].tolist() == [3]
    # different wrong classes in different epochs are not a consistent contradiction
    e3 = e2.copy()
    e3[3] = [0.96, 0.02, 0.02]
    assert 3 not in suspicious_labels([e1, e3], y)["position"].tolist()


def test_classes_getting_worse_hand_built():
    acc = pd.DataFrame({0: [0.90, 0.80, 0.85], 1: [0.50, 0.70, 0.60], "all": [0.70, 0.75, 0.72]},
                       index=pd.Index([1, 2, 3], name="epoch"))
    got = classes_getting_worse(acc)
    # epoch 2: overall up (.70 -> .75), class 0 down .10; epoch 3: overall down -> nothing reported
    assert got[["epoch", "class"]].values.tolist() == [[2, 0]]
    assert got["change"].iloc[0] == pytest.approx(-0.10)
    assert got["overall_change"].iloc[0] == pytest.approx(0.05)
    assert classes_getting_worse(acc, min_drop=0.2).empty
    with pytest.raises(ValueError, match="all"):
        classes_getting_worse(acc.drop(columns="all"))


# ----------------------------------------------------------------------------- on the fixture run

def test_split_predictions_on_fixture(fixture_run, mnist_root):
    from data.mnist import load_raw
    raw = load_raw(mnist_root)
    for split, offset, labels_file in (("val", 50000, "train-labels-idx1-ubyte"),
                                       ("test", 0, "t10k-labels-idx1-ubyte")):
        probs, labels, index = split_predictions(fixture_run, 3, split)
        assert probs.shape == (500, 10) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(index, offset + np.arange(500))        # classic split
        np.testing.assert_array_equal(labels, raw[labels_file][index])       # the real MNIST labels
    with pytest.raises(ValueError):
        split_predictions(fixture_run, 3, "train")
    with pytest.raises(runs.RunError):
        split_predictions(fixture_run, 99)


def test_per_class_accuracy_by_epoch_on_fixture(fixture_run):
    acc = per_class_accuracy_by_epoch(fixture_run)
    assert list(acc.index) == [1, 2, 3] and list(acc.columns) == [*range(10), "all"]
    metrics = runs.load_metrics(fixture_run)
    # the trainer measured val accuracy from float32 logits; we read float16 ones: allow a flip or two
    np.testing.assert_allclose(acc["all"].to_numpy(), metrics["val_acc"].to_numpy(), atol=0.005)
    # per-class accuracy by hand from the raw file
    p = runs.load_predictions(fixture_run, 2)
    pred, y = p["val_logits"].astype(np.float32).argmax(1), p["val_labels"]
    for c in range(10):
        assert acc.at[2, c] == pytest.approx((pred[y == c] == c).mean())


def test_mistake_confidence_by_epoch_on_fixture(fixture_run):
    got = mistake_confidence_by_epoch(fixture_run)
    assert got["epoch"].tolist() == [1, 2, 3]
    assert (got["n_wrong"] + got["n_right"] == 500).all()
    p = runs.load_predictions(fixture_run, 3)
    probs = scipy.special.softmax(p["val_logits"].astype(np.float64), axis=1)
    wrong = probs.argmax(1) != p["val_labels"]
    assert got.iloc[2]["wrong_confidence"] == pytest.approx(probs.max(1)[wrong].mean(), rel=1e-4)
    assert got.iloc[2]["right_confidence"] == pytest.approx(probs.max(1)[~wrong].mean(), rel=1e-4)


def test_suspicious_labels_in_run_on_fixture(fixture_run):
    got = suspicious_labels_in_run(fixture_run, last=2, threshold=0.5)
    assert list(got.columns) == ["position", "index", "label", "predicted", "confidence", "label_prob"]
    assert (got["predicted"] != got["label"]).all() and (got["confidence"] >= 0.5).all()
    assert (got["index"] >= 50000).all()


def test_read_predictions_is_read_only_and_sees_new_files(copy_run):
    run = copy_run()
    first = errors.read_predictions(run, 1)
    with pytest.raises(ValueError):
        first["val_logits"][0, 0] = 1.0
    changed = dict(runs.load_predictions(run, 1))
    changed["val_logits"] = np.zeros_like(changed["val_logits"])
    runs.atomic_save_npz(runs.predictions_path(run, 1), **changed)
    assert not errors.read_predictions(run, 1)["val_logits"].any()
