"""Which labels are probably wrong: confident learning (Northcutt et al. 2021) with cleanlab.

cleanlab needs out-of-sample predicted probabilities: for each example, what a model that did not
train on it thinks. Where they come from decides how much to trust the list (`probabilities` says
which kind it used, and the page shows it):
  * val / test: the saved logits of the chosen epoch. Out-of-sample: the model never trained on them.
  * train, with a cross-validation group in the runs folder (`python -m model.sweep --cross-val K`):
    every training image's probabilities from the fold model that held it out. Truly out-of-sample.
  * train, otherwise: the probabilities the trainer recorded for each image in its batch during
    epoch 1 (`train_probs`), before the model had trained on that image. Out-of-sample, but from an
    early, weak model: expect more false alarms among hard but correct images.
Later epochs' in-batch probabilities are in-sample (the model has fitted those labels) and are not used.

`label_issues` returns one row per example, ranked from the most suspicious: the given label, the
model's suggestion (its most probable class), the confidence in that suggestion, cleanlab's label
quality score (`cleanlab.rank.get_label_quality_scores`, self-confidence) and whether
`cleanlab.filter.find_label_issues` (prune by noise rate) flags it.

    python -m analysis.label_issues RUN --split train --k 20 [--csv issues.csv]    # JSON on stdout
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from analysis.errors import softmax
from model import runs

KINDS = {
    "held-out split": "the saved validation/test predictions of this epoch: out-of-sample (never trained on)",
    "cross-validation": "K-fold cross-validation: each training image scored by the fold model that held it out "
                        "(out-of-sample)",
    "epoch 1 in-batch": "epoch 1's in-batch probabilities: each image scored just before the model trained on it "
                        "(out-of-sample, but from an early model: more false alarms among hard images)",
}


def crossval_group(run_dir: Path | str) -> list[Path]:
    """The completed fold runs of a cross-validation group that covers this run's training set, one per fold
    (newest first for each fold); [] when the runs folder has no complete group.

    A group is runs with the same --folds K > 0, --subset and data split; this run itself may be one of them.
    """
    run_dir = Path(run_dir)
    cfg = runs.load_config(run_dir)
    best: dict[int, dict[int, Path]] = {}
    for info in runs.list_runs(run_dir.parent):                  # newest first
        t = info.config.train
        if (t.folds and info.state == "completed" and t.subset == cfg.train.subset
                and info.config.data.split == cfg.data.split):
            best.setdefault(t.folds, {}).setdefault(t.fold, info.path)
    for k, by_fold in sorted(best.items(), key=lambda kv: -kv[0]):
        if len(by_fold) == k:
            return [by_fold[f] for f in range(k)]
    return []


def probabilities(run_dir: Path | str, split: str, epoch: int | None = None,
                  load_predictions: runs.PredictionsReader = runs.load_predictions
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(probs (N,10) float64, labels (N,), official rows (N,), kind) for cleanlab; kind is a key of KINDS.

    RunError when the run holds no probabilities of the needed kind (imported runs have no training records).
    `load_predictions` reads a predictions file (the dashboard passes its cached reader).
    """
    run_dir = Path(run_dir)
    if split in ("val", "test"):
        epoch = epoch or max(runs.prediction_epochs(run_dir))
        logits, labels, rows = runs.split_arrays(load_predictions(run_dir, epoch), split,
                                                 runs.predictions_path(run_dir, epoch))
        return softmax(logits, np.float64), labels.astype(np.int64), rows.astype(np.int64), \
            "held-out split"
    if split != "train":
        raise ValueError(f"split must be train, val or test, got {split!r}")
    group = crossval_group(run_dir)
    if group:
        parts = [load_predictions(r, max(runs.prediction_epochs(r))) for r in group]
        probs = np.concatenate([p["heldout_probs"] for p in parts]).astype(np.float64)
        labels = np.concatenate([p["heldout_labels"] for p in parts]).astype(np.int64)
        rows = np.concatenate([p["heldout_index"] for p in parts]).astype(np.int64)
        order = np.argsort(rows, kind="stable")
        return probs[order] / probs[order].sum(1, keepdims=True), labels[order], rows[order], "cross-validation"
    first = runs.prediction_epochs(run_dir)[:1]
    p = load_predictions(run_dir, first[0]) if first == [1] else {}
    if "train_probs" not in p:
        raise runs.RunError(runs.predictions_path(run_dir, 1),
                            "no training probabilities (train_probs of epoch 1): the run was imported or trained "
                            "before they were saved; train a cross-validation group with "
                            "`python -m model.sweep --cross-val 5` or retrain the run")
    probs = p["train_probs"].astype(np.float64)
    return probs / probs.sum(1, keepdims=True), p["train_labels"].astype(np.int64), \
        p["train_index"].astype(np.int64), "epoch 1 in-batch"


def label_issues(probs: np.ndarray, labels: np.ndarray, rows: np.ndarray | None = None) -> pd.DataFrame:
    """Every example ranked from the most suspicious label: position, official_row, given, suggested,
    confidence (probability of the suggestion), quality (cleanlab's label quality score, low = suspicious),
    issue (flagged by cleanlab.filter.find_label_issues)."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    from cleanlab.filter import find_label_issues   # here: the dashboard's server imports this module for KINDS
    from cleanlab.rank import get_label_quality_scores
    quality = get_label_quality_scores(labels, probs)
    # n_jobs=1: cleanlab would fork a pool, and forking a process that runs threads (Streamlit, torch) can deadlock
    flagged = find_label_issues(labels, probs, filter_by="prune_by_noise_rate", n_jobs=1)
    suggested = probs.argmax(1)
    table = pd.DataFrame({"position": np.arange(len(labels)),
                          "official_row": rows if rows is not None else np.arange(len(labels)),
                          "given": labels, "suggested": suggested, "confidence": probs.max(1),
                          "quality": quality, "issue": flagged})
    return table.sort_values(["quality", "position"], kind="stable").reset_index(drop=True)


def run_label_issues(run_dir: Path | str, split: str = "train", epoch: int | None = None,
                     load_predictions: runs.PredictionsReader = runs.load_predictions) -> tuple[pd.DataFrame, str]:
    """`label_issues` on a run's probabilities of one split: (ranked table, kind of probabilities)."""
    probs, labels, rows, kind = probabilities(run_dir, split, epoch, load_predictions)
    return label_issues(probs, labels, rows), kind


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Rank a split's examples by how likely their label is wrong "
                                            "(cleanlab, confident learning). Prints JSON.")
    p.add_argument("run", help="run id or folder")
    p.add_argument("--split", choices=("train", "val", "test"), default="train")
    p.add_argument("--epoch", type=int, default=None, help="val/test: the epoch's predictions (default: last)")
    p.add_argument("--k", type=int, default=20, help="how many candidates to print")
    p.add_argument("--csv", type=Path, default=None, help="also write the whole ranked table to this CSV file")
    p.add_argument("--runs-dir", default=None, help="runs folder (default: $DIGIT_LENS_RUNS or runs/)")
    args = p.parse_args(argv)
    try:
        run_dir = runs.existing_run(args.run, args.runs_dir)
        table, kind = run_label_issues(run_dir, args.split, args.epoch)
    except (runs.RunError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.csv:
        table.to_csv(args.csv, index=False)
    out = {"run": run_dir.name, "split": args.split, "probabilities": kind, "explained": KINDS[kind],
           "flagged": int(table["issue"].sum()), "examples": len(table),
           "candidates": json.loads(table.head(args.k).to_json(orient="records"))}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
