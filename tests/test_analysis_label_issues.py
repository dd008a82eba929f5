"""Label issues with cleanlab: labels flipped on purpose must rank near the top, from each kind of
out-of-sample probabilities (held-out split, K-fold cross-validation, epoch 1 in-batch)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from cleanlab.rank import get_label_quality_scores

from analysis import label_issues as li
from model import runs, train
from tests.flipped import flipped_training_labels

FLIPPED = 12


def _flip(labels: np.ndarray, which: np.ndarray) -> np.ndarray:
    out = labels.copy()
    out[which] = (out[which] + 3) % 10
    return out


def test_flipped_validation_labels_rank_at_the_top(fixture_run):
    probs, labels, rows, kind = li.probabilities(fixture_run, "val")
    assert kind == "held-out split" and probs.shape == (500, 10) and np.allclose(probs.sum(1), 1)
    right = np.flatnonzero((probs.argmax(1) == labels) & (probs.max(1) > 0.9))
    which = right[:: max(1, len(right) // FLIPPED)][:FLIPPED]          # confidently right: now "mislabelled"
    given = _flip(labels, which)
    table = li.label_issues(probs, given, rows)
    # the ranking is cleanlab's label quality score, lowest first, positions kept
    reference = get_label_quality_scores(given, probs)
    assert np.array_equal(table["position"].to_numpy(), np.argsort(reference, kind="stable"))
    assert set(which) <= set(table["position"].head(3 * FLIPPED))      # all flipped among the 36 most suspicious
    flagged = set(table.loc[table["issue"], "position"])
    assert len(set(which) & flagged) >= FLIPPED - 1
    top = table.set_index("position").loc[which]
    assert (top["suggested"].to_numpy() == labels[which]).all()        # it suggests the true label back


@pytest.fixture(scope="module")
def flipped_group(tmp_path_factory, mnist_root):
    """Two fold runs (cross-validation) on 2,000 training images whose first 40 labels are flipped."""
    out = tmp_path_factory.mktemp("cv")
    with flipped_training_labels(40, 3):
        for fold in (0, 1):
            assert train.main(["--epochs", "2", "--subset", "2000", "--eval-subset", "100", "--lr", "0.05",
                               "--momentum", "0.9", "--folds", "2", "--fold", str(fold), "--runs-dir", str(out),
                               "--name", f"cv{fold}"]) == 0
    return out


def test_cross_validation_gives_out_of_sample_probabilities_for_every_training_image(flipped_group):
    a, b = sorted(flipped_group.iterdir())
    assert li.crossval_group(a) == li.crossval_group(b) != []
    probs, labels, rows, kind = li.probabilities(a, "train")
    assert kind == "cross-validation" and np.array_equal(rows, np.arange(2000))   # each image once
    held = runs.load_predictions(a, 2)
    assert np.array_equal(held["heldout_index"], np.arange(0, 2000, 2))           # fold 0: even positions
    assert not set(held["train_index"]) & set(held["heldout_index"])              # never trained on
    table = li.label_issues(probs, labels, rows)
    assert len(set(range(40)) & set(table["official_row"].head(100))) >= 30       # chance: 2 of 40


def test_epoch_one_in_batch_probabilities_are_used_without_a_group(fixture_run, tmp_path):
    probs, labels, rows, kind = li.probabilities(fixture_run, "train")
    assert kind == "epoch 1 in-batch" and probs.shape == (1000, 10)
    saved = runs.load_predictions(fixture_run, 1)
    true_prob = saved["train_true_prob"].astype(np.float64)
    np.testing.assert_allclose(probs[np.arange(1000), labels], true_prob, atol=2e-3)   # the same batch's numbers


def test_imported_runs_say_why_they_have_no_training_probabilities(tmp_path, mnist_root):
    from model_zoo import import_zoo
    run = import_zoo(tmp_path / "runs", "lenet", "class")
    with pytest.raises(runs.RunError, match="cross-val"):
        li.probabilities(run, "train")
    assert li.probabilities(run, "test")[3] == "held-out split"


def test_cli_prints_json_and_writes_csv(fixture_run, tmp_path, capsys):
    csv = tmp_path / "issues.csv"
    assert li.main([fixture_run.name, "--split", "val", "--k", "5", "--csv", str(csv),
                    "--runs-dir", str(fixture_run.parent)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["candidates"]) == 5 and out["probabilities"] == "held-out split" and out["examples"] == 500
    assert len(csv.read_text().splitlines()) == 501
    assert li.main(["nope", "--runs-dir", str(fixture_run.parent)]) == 1
