"""analysis.errors against hand-computed cases, plain loops and scikit-learn / scipy (it is numpy only), and on
the real fixture run's files read with numpy and the raw MNIST labels."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import errors
from analysis.errors import (cell_examples, classes_getting_worse, confident_mistakes, confusion_by_epoch,
                             confusion_matrix, mistake_confidence_by_epoch, per_class_accuracy_by_epoch,
                             per_class_report, softmax, split_predictions, split_predictions_by_epoch,
                             suspicious_labels, suspicious_labels_in_run, top_classes, top_confusions)
from model import runs

LABELS = list(range(10))


def loop_confusion(y_true, y_pred, n=10):
    """The confusion matrix by a plain loop over examples (the reference: no numpy, no sklearn)."""
    cm = [[0] * n for _ in range(n)]
    for t, p in zip(y_true, y_pred):
        cm[int(t)][int(p)] += 1
    return np.array(cm)


def test_confusion_matrix_by_hand():
    got = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], num_classes=3)
    np.testing.assert_array_equal(got, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert got.dtype == np.int64
    np.testing.assert_array_equal(confusion_matrix([], []), np.zeros((10, 10)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matrix_matches_a_loop(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 8, 400)               # classes 8, 9 never true
    y_pred = rng.choice([0, 1, 2, 3, 5, 9], 400)   # classes 4, 6, 7, 8 never predicted
    got = confusion_matrix(y_true, y_pred)
    assert got.shape == (10, 10)
    np.testing.assert_array_equal(got, loop_confusion(y_true, y_pred))


def test_per_class_report_by_hand():
    # class 0: 2 true, predicted 4 times, 2 right -> precision 1/2, recall 1, f1 2/3
    # class 1: 2 true, predicted once, right once -> precision 1, recall 1/2, f1 2/3
    # class 2: 1 true, never predicted -> 0 / 0 / 0 (zero_division=0); class 3: no examples, never predicted
    got = per_class_report([0, 0, 1, 1, 2], [0, 0, 1, 0, 0], num_classes=4)
    assert list(got.index) == [0, 1, 2, 3] and list(got.columns) == ["precision", "recall", "f1", "support"]
    np.testing.assert_allclose(got["precision"], [0.5, 1, 0, 0])
    np.testing.assert_allclose(got["recall"], [1, 0.5, 0, 0])
    np.testing.assert_allclose(got["f1"], [2 / 3, 2 / 3, 0, 0])
    np.testing.assert_array_equal(got["support"], [2, 2, 1, 0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_class_report_matches_the_definitions(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 8, 300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.choice([0, 1, 2, 9], 300))
    got = per_class_report(y_true, y_pred)
    for c in LABELS:                                 # precision, recall, F1 written out per class
        tp = int(np.sum((y_true == c) & (y_pred == c)))
        predicted, support = int(np.sum(y_pred == c)), int(np.sum(y_true == c))
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        assert got.loc[c].tolist() == pytest.approx([precision, recall, f1, support])


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


def test_softmax_by_hand_and_stable():
    got = softmax(np.array([[0.0, np.log(3.0)], [2.0, 2.0]], dtype=np.float16))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [[0.25, 0.75], [0.5, 0.5]], rtol=1e-3)
    big = softmax(np.array([[1000.0, 0.0, -1000.0]]))
    np.testing.assert_allclose(big, [[1.0, 0.0, 0.0]])


def test_cell_examples_by_hand():
    probs = np.array([[0.7, 0.3], [0.4, 0.6], [0.1, 0.9], [0.45, 0.55], [0.8, 0.2], [0.4, 0.6]])
    y = np.array([0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(cell_examples(probs, y, 0, 1), [2, 1, 3])   # .9, .6, .55
    np.testing.assert_array_equal(cell_examples(probs, y, 1, 0), [4])
    np.testing.assert_array_equal(cell_examples(probs, y, 1, 1), [5])
    assert len(cell_examples(probs, y, 0, 0)) == 1
    assert cell_examples(probs, np.array([1, 1, 1, 1, 1, 0]), 0, 0).tolist() == []


def test_top_classes_by_hand():
    classes, top = top_classes(np.array([0.1, 0.5, 0.1, 0.3]), 3)
    assert classes.tolist() == [1, 3, 0] and top.tolist() == pytest.approx([0.5, 0.3, 0.1])   # tie: lower class
    classes, top = top_classes(np.array([[0.2, 0.8], [0.6, 0.4]]), 1)
    assert classes.tolist() == [[1], [0]] and top.ravel().tolist() == pytest.approx([0.8, 0.6])


def test_per_class_accuracy_and_mistake_confidence_by_hand():
    cms = {2: np.array([[3, 1], [0, 0]]), 1: np.array([[1, 1], [1, 3]])}
    acc = per_class_accuracy_by_epoch(cms)
    assert list(acc.index) == [1, 2] and list(acc.columns) == [0, 1, "all"]
    assert acc.loc[1].tolist() == pytest.approx([0.5, 0.75, 4 / 6])
    assert acc.loc[2, 0] == pytest.approx(0.75) and np.isnan(acc.loc[2, 1]) and acc.loc[2, "all"] == pytest.approx(0.75)
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    mc = mistake_confidence_by_epoch({5: (probs, np.array([0, 0, 0])), 4: (probs, np.array([0, 1, 0]))})
    assert mc["epoch"].tolist() == [4, 5]
    assert mc.iloc[1][["wrong_confidence", "right_confidence", "n_wrong", "n_right"]].tolist() == \
        pytest.approx([0.7, 0.75, 1, 2])
    assert np.isnan(mc.iloc[0]["wrong_confidence"]) and mc.iloc[0]["n_right"] == 3


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
    acc = per_class_accuracy_by_epoch(confusion_by_epoch(split_predictions_by_epoch(fixture_run)))
    assert list(acc.index) == [1, 2, 3] and list(acc.columns) == [*range(10), "all"]
    metrics = pd.read_csv(fixture_run / "metrics.csv")
    # the trainer measured val accuracy from float32 logits; we read float16 ones: allow a flip or two
    np.testing.assert_allclose(acc["all"].to_numpy(), metrics["val_acc"].to_numpy(), atol=0.005)
    # per-class accuracy by hand from the raw file
    with np.load(fixture_run / "predictions" / "epoch_002.npz") as p:
        pred, y = p["val_logits"].astype(np.float32).argmax(1), p["val_labels"]
    for c in range(10):
        assert acc.at[2, c] == pytest.approx((pred[y == c] == c).mean())


def test_mistake_confidence_by_epoch_on_fixture(fixture_run):
    got = mistake_confidence_by_epoch(split_predictions_by_epoch(fixture_run))
    assert got["epoch"].tolist() == [1, 2, 3]
    assert (got["n_wrong"] + got["n_right"] == 500).all()
    with np.load(fixture_run / "predictions" / "epoch_003.npz") as p:
        z, y = p["val_logits"].astype(np.float64), p["val_labels"]
    probs = np.exp(z - z.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    wrong = probs.argmax(1) != y
    assert got.iloc[2]["wrong_confidence"] == pytest.approx(probs.max(1)[wrong].mean(), rel=1e-4)
    assert got.iloc[2]["right_confidence"] == pytest.approx(probs.max(1)[~wrong].mean(), rel=1e-4)


def test_suspicious_labels_in_run_on_fixture(fixture_run):
    by_epoch = split_predictions_by_epoch(fixture_run)
    got = suspicious_labels_in_run(by_epoch, last=2, threshold=0.5)
    assert list(got.columns) == ["position", "index", "label", "predicted", "confidence", "label_prob"]
    assert (got["predicted"] != got["label"]).all() and (got["confidence"] >= 0.5).all()
    assert (got["index"] >= 50000).all()
    expected = suspicious_labels([by_epoch[2][0], by_epoch[3][0]], by_epoch[3][1], 0.5, index=by_epoch[3][2])
    pd.testing.assert_frame_equal(got, expected)


def test_nothing_is_memoised_a_rewritten_file_is_read_again(copy_run):
    run = copy_run()
    before, _, _ = split_predictions(run, 1)
    changed = dict(runs.load_predictions(run, 1))
    changed["val_logits"] = np.zeros_like(changed["val_logits"])
    runs.atomic_save_npz(runs.predictions_path(run, 1), **changed)
    after, _, _ = split_predictions(run, 1)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, 0.1)                                  # uniform over 10 classes
    assert not [n for n in vars(errors) if "memo" in n or n == "_read"]    # no private cache in analysis
    runs.atomic_save_npz(runs.predictions_path(run, 1), foo=np.zeros(1))
    with pytest.raises(runs.RunError, match="epoch_001.npz.*val_logits"):
        split_predictions(run, 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_report_confusion_and_softmax_match_sklearn_and_scipy(seed):
    """The numpy versions equal the libraries they replace (classes that never occur or are never predicted: 0)."""
    import scipy.special
    from sklearn.metrics import confusion_matrix as sk_confusion
    from sklearn.metrics import precision_recall_fscore_support
    rng = np.random.default_rng(seed)
    y_true, y_pred = rng.integers(0, 8, 300), rng.choice([0, 1, 2, 3, 5, 9], 300)
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred), sk_confusion(y_true, y_pred, labels=LABELS))
    want = precision_recall_fscore_support(y_true, y_pred, labels=LABELS, zero_division=0)
    got = per_class_report(y_true, y_pred)
    for column, expected in zip(["precision", "recall", "f1", "support"], want):
        np.testing.assert_allclose(got[column].to_numpy(), expected, rtol=1e-12, atol=0)
    logits = rng.normal(0, 20, (50, 10))
    np.testing.assert_allclose(softmax(logits), scipy.special.softmax(logits.astype(np.float32), axis=-1), rtol=1e-6)
    np.testing.assert_allclose(softmax(logits, np.float64), scipy.special.softmax(logits, axis=1), rtol=1e-12)
