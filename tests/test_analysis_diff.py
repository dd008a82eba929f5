"""analysis.diff: every count, the flip matrix, churn and the forgotten examples of tiny hand-built runs.

Each tiny run is written with model.runs.RunWriter; its logits are one-hot-like (logit s on the answer,
0 elsewhere), so each answer is known by hand and its confidence is e^s / (e^s + 9).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis import diff as d
from model import runs

REPO = Path(__file__).resolve().parent.parent

# position: (true label, old answer, new answer, new answer's logit)
CASE = [(1, 1, 1, 3.0),   # 0 stayed right
        (2, 2, 3, 1.0),   # 1 became wrong   (2: 2 -> 3)
        (3, 5, 3, 1.0),   # 2 became right   (3: 5 -> 3)
        (4, 9, 7, 2.0),   # 3 changed wrong  (4: 9 -> 7)
        (4, 9, 9, 2.0),   # 4 stayed wrong
        (2, 2, 3, 4.0),   # 5 became wrong   (2: 2 -> 3)
        (7, 7, 7, 1.0),   # 6 stayed right, less sure than 0
        (0, 6, 0, 5.0)]   # 7 became right   (0: 6 -> 0)
LABELS = np.array([c[0] for c in CASE])


def conf(s: float) -> float:
    """Softmax probability of a logit s among nine zeros."""
    return np.exp(s) / (np.exp(s) + 9)


def logits(answers, strengths=None) -> np.ndarray:
    """(N,10) float16 logits: `strength` on each answer, 0 elsewhere."""
    strengths = [2.0] * len(answers) if strengths is None else strengths
    z = np.zeros((len(answers), 10), dtype=np.float16)
    z[np.arange(len(answers)), answers] = strengths
    return z


def write_run(runs_dir: Path, name: str, epochs: list[np.ndarray], labels=LABELS, index=None) -> Path:
    """A run folder with one predictions file per epoch (val and test both get the given logits)."""
    index = np.arange(50000, 50000 + len(labels), dtype=np.int32) if index is None else np.asarray(index, np.int32)
    w = runs.RunWriter(runs_dir / name, runs.RunConfig(run_id=name, name=name))
    for e, z in enumerate(epochs, start=1):
        preds = {f"{s}_{k}": v for s in ("val", "test")
                 for k, v in (("logits", z), ("labels", labels.astype(np.uint8)), ("index", index))}
        w.write_epoch(e, {"train_loss": 0.0, "val_loss": 0.0}, {"w": torch.zeros(1)}, preds)
    w.set_status("completed")
    return runs_dir / name


@pytest.fixture()
def tiny(tmp_path) -> Path:
    """Run "tiny": epoch 1 gives the old answers of CASE, epoch 2 the new ones."""
    old = logits([c[1] for c in CASE])
    new = logits([c[2] for c in CASE], [c[3] for c in CASE])
    return write_run(tmp_path, "tiny", [old, new])


def test_counts_churn_flips_and_order_by_hand(tiny):
    r = d.diff(tiny, 1, tiny, 2, split="val")
    assert r.n == 8
    assert r.counts == {"became_right": 2, "became_wrong": 2, "changed_wrong": 1, "stayed_right": 2,
                        "stayed_wrong": 1}
    assert r.churn == pytest.approx(5 / 8)
    assert r.flips.to_dict("records") == [{"true": 2, "old": 2, "new": 3, "count": 2},
                                          {"true": 0, "old": 6, "new": 0, "count": 1},
                                          {"true": 3, "old": 5, "new": 3, "count": 1},
                                          {"true": 4, "old": 9, "new": 7, "count": 1}]
    pos = {g: list(v) for g, v in r.positions.items()}
    assert pos == {"became_right": [7, 2], "became_wrong": [5, 1], "changed_wrong": [3],
                   "stayed_right": [6, 0], "stayed_wrong": [4]}   # surest first; stayed right: least sure first
    ex = r.examples.set_index("position")
    assert list(ex["index"]) == list(range(50000, 50008))
    assert ex.loc[5, "new_confidence"] == pytest.approx(conf(4.0), abs=1e-6)
    assert ex.loc[5, "old_confidence"] == pytest.approx(conf(2.0), abs=1e-6)


def test_between_two_runs_and_the_flip_matrix_sums_to_the_changed(tmp_path):
    a = write_run(tmp_path, "a", [logits([c[1] for c in CASE])])
    b = write_run(tmp_path, "b", [logits([c[2] for c in CASE])])
    r = d.diff(a, 1, b, 1)
    assert r.counts["became_right"] == 2 and r.counts["changed_wrong"] == 1
    assert int(r.flips["count"].sum()) == 5 == sum(r.counts[g] for g in d.CHANGED)
    same = d.diff(a, 1, a, 1)                                             # a model against itself: nothing moves
    assert same.churn == 0.0 and same.flips.empty and same.counts["stayed_right"] == 4


@pytest.mark.parametrize("index, why", [
    (np.arange(8), "official test file"),             # another split protocol: rows 0..7 of the test file
    (np.arange(50000, 50007), "7 examples"),          # another evaluation subset
    (np.arange(50001, 50009), "rows 50001..50008"),   # same size, other rows
])
def test_runs_that_scored_other_examples_are_refused(tmp_path, index, why):
    a = write_run(tmp_path, "a", [logits([c[1] for c in CASE])])
    labels = LABELS[: len(index)]
    b = write_run(tmp_path, "b", [logits([c[2] for c in CASE][: len(index)])], labels=labels, index=index)
    if why == "official test file":                                   # make b a seed-protocol run
        cfg = runs.load_config(b)
        cfg.data.split = "seed"
        runs.atomic_write_json(runs.config_path(b), cfg.to_dict())
    with pytest.raises(ValueError, match="did not score the same val examples") as e:
        d.diff(a, 1, b, 1)
    assert why in str(e.value) and "--eval-subset" in str(e.value)


def test_forgotten_by_hand(tmp_path):
    labels = np.array([1, 2, 3, 4, 5, 6])
    answers = [[1, 2, 5, 4, 5, 0],     # epoch 1
               [7, 3, 3, 4, 6, 6],     # epoch 2
               [1, 3, 3, 4, 5, 6]]     # epoch 3: positions 0 and 4 broke at 2 and came back
    run = write_run(tmp_path, "f", [logits(a, [1.0, 2, 2, 2, 3.0, 2]) for a in answers], labels=labels)
    rows = d.forgotten(run, 2)
    assert rows[["position", "label", "answer"]].values.tolist() == [[4, 5, 6], [0, 1, 7]]   # surest first
    assert rows["confidence"].tolist() == pytest.approx([conf(3.0), conf(1.0)], abs=1e-6)
    assert rows["true_prob"].tolist() == pytest.approx([1 / (np.exp(3.0) + 9), 1 / (np.exp(1.0) + 9)], abs=1e-6)
    for epoch in (1, 3):                                              # no epoch before, or no epoch after
        with pytest.raises(ValueError, match="needs the predictions of epochs"):
            d.forgotten(run, epoch)


def test_agrees_with_the_trainers_accuracies_on_the_fixture_run(fixture_run):
    """Reference: metrics.csv's val_acc, measured by the trainer, gives the right count at either end."""
    r = d.diff(fixture_run, 1, fixture_run, 3)
    acc = runs.load_metrics(fixture_run).set_index("epoch")["val_acc"]
    c = r.counts
    assert sum(c.values()) == r.n == 500
    assert (c["stayed_right"] + c["became_wrong"]) / r.n == pytest.approx(acc[1], abs=2 / 500)
    assert (c["stayed_right"] + c["became_right"]) / r.n == pytest.approx(acc[3], abs=2 / 500)


def test_cli_prints_the_hand_computed_json(tiny, capsys):
    code = d.main([f"{tiny.name}:1", f"{tiny}:2", "--split", "val", "--runs-dir", str(tiny.parent), "--k", "1"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"]["became_wrong"] == 2 and out["churn"] == pytest.approx(0.625)
    assert out["flips"][0] == {"true": 2, "old": 2, "new": 3, "count": 2} and len(out["flips"]) == 4
    assert out["positions"] == {"became_right": [7], "became_wrong": [5], "changed_wrong": [3],
                                "stayed_right": [6], "stayed_wrong": [4]}
    assert out["a"] == {"run": "tiny", "epoch": 1} and out["b"] == {"run": "tiny", "epoch": 2}


def test_cli_forgotten(tmp_path, capsys):
    labels = np.array([1, 2])
    write_run(tmp_path, "f", [logits(a) for a in ([1, 2], [7, 2], [1, 2])], labels=labels)
    assert d.main(["--forgotten", "f:2", "--runs-dir", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["count"] == 1 and out["examples"][0]["position"] == 0 and out["examples"][0]["answer"] == 7


@pytest.mark.parametrize("argv, message", [
    (["nope:1", "tiny:2"], "no such run"),
    (["../tiny:1", "tiny:2"], "not a run of the runs folder"),
    (["tiny:1", "tiny:9"], "epoch_009.npz: missing"),
    (["tiny", "tiny:2"], "is not RUN:EPOCH"),
    (["tiny:x", "tiny:2"], "is not RUN:EPOCH"),
    (["tiny:1"], "expected two RUN:EPOCH pairs"),
    (["--forgotten", "tiny:1"], "needs the predictions of epochs 0, 1 and 2"),
    (["tiny:1", "tiny:2", "--split", "train"], "invalid choice"),
])
def test_cli_bad_input_exits_1_with_a_message(tiny, capsys, argv, message):
    assert d.main(argv + ["--runs-dir", str(tiny.parent)]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_as_a_module_exits_1_without_a_traceback(tiny):
    p = subprocess.run([sys.executable, "-m", "analysis.diff", "tiny:1", "ghost:2", "--runs-dir", str(tiny.parent)],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "error:" in p.stderr and "Traceback" not in p.stderr and p.stdout == ""
