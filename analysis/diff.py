"""What changed between two (run, epoch) pairs on the same split: example by example.

Terms (for one split, model A = the older or reference pair, model B = the newer or other one):
    answer          the predicted class (argmax of the saved logits); confidence is its softmax probability.
    became right    A's answer was wrong, B's is right.
    became wrong    A's answer was right, B's is wrong.
    changed wrong   both wrong, with different answers (a 4 called 9 by A and 7 by B).
    stayed right    both right.  stayed wrong: both wrong with the same answer.
    churn           (became right + became wrong + changed wrong) / N: the fraction of examples whose answer
                    changed. Two models with equal accuracy can still have a large churn.
    flip matrix     for the examples whose answer changed: how many had each (true class, old answer, new
                    answer). Kept tidy, a DataFrame with columns true, old, new, count (only non-zero rows,
                    most frequent first), rather than a mostly empty (10,10,10) array.
    forgotten at E  right at epoch E-1, wrong at E, right again at E+1: the images behind a one-epoch spike
                    of the validation loss.

Both pairs must have scored the same examples in the same order: their `<split>_index` arrays (rows of
the official MNIST file) must be equal, else `diff` refuses with a ValueError saying how they differ.

`python -m analysis.diff RUN_A:EPOCH RUN_B:EPOCH --split val` prints the diff as JSON;
`python -m analysis.diff --forgotten RUN:EPOCH` the forgotten examples.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import softmax
from model import runs

GROUPS = ("became_right", "became_wrong", "changed_wrong", "stayed_right", "stayed_wrong")
CHANGED = ("became_right", "became_wrong", "changed_wrong")   # the groups whose answer changed
# Each group's positions are sorted by B's confidence, most confident first (the surest new mistakes
# and fixes lead), except stayed_right, least confident first (the close calls that only just held).
LEAST_CONFIDENT_FIRST = ("stayed_right",)


@dataclass
class Diff:
    """Example-level comparison of two (run, epoch) pairs on one split (see the module docstring)."""
    split: str
    n: int                              # examples compared
    counts: dict[str, int]              # group -> examples, for every name in GROUPS
    churn: float                        # fraction in [0, 1]
    flips: pd.DataFrame                 # columns true, old, new, count: examples whose answer changed
    positions: dict[str, np.ndarray]    # group -> (n_group,) positions into the split, in the documented order
    examples: pd.DataFrame              # one row per example: position, index, label, old, new,
                                        # old_confidence, new_confidence, group

    def to_json(self, k: int = 20) -> dict:
        """A JSON-ready summary: counts, churn, the flip matrix as records, the first k positions per group."""
        return {"split": self.split, "n": self.n, "counts": self.counts, "churn": self.churn,
                "flips": [{c: int(v) for c, v in row.items()} for row in self.flips.to_dict("records")],
                "positions": {g: [int(p) for p in self.positions[g][:k]] for g in GROUPS}}


def _softmax(logits: np.ndarray) -> np.ndarray:
    """(N,10) logits of any float dtype -> (N,10) float64 probabilities."""
    return softmax(logits, np.float64)


def compare(logits_a: np.ndarray, logits_b: np.ndarray, labels: np.ndarray, index: np.ndarray | None = None,
            split: str = "val") -> Diff:
    """The diff of two models' logits on the same examples.

    Args:
        logits_a, logits_b: (N,10) logits of the old (A) and new (B) model on the same examples, same order.
        labels: (N,) true classes.
        index: (N,) official rows of the examples (kept in `examples`); default: the positions.
        split: a name carried along for the report. Default: "val".
    Returns:
        a Diff.
    """
    pa, pb = _softmax(logits_a), _softmax(logits_b)                          # (N,10) each
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    old, new = pa.argmax(1), pb.argmax(1)                                   # (N,)
    old_ok, new_ok = old == labels, new == labels
    group = np.select([~old_ok & new_ok, old_ok & ~new_ok, ~old_ok & ~new_ok & (old != new), old_ok & new_ok],
                      list(GROUPS[:4]), default="stayed_wrong")
    examples = pd.DataFrame({
        "position": np.arange(n), "index": np.arange(n) if index is None else np.asarray(index, dtype=np.int64),
        "label": labels, "old": old, "new": new, "old_confidence": pa[np.arange(n), old],
        "new_confidence": pb[np.arange(n), new], "group": group})
    counts = {g: int((group == g).sum()) for g in GROUPS}
    changed = examples[examples["old"] != examples["new"]]
    flips = (changed.groupby(["label", "old", "new"]).size().rename("count").reset_index()
             .rename(columns={"label": "true"}).sort_values(["count", "true", "old", "new"],
                                                             ascending=[False, True, True, True])
             .reset_index(drop=True).astype("int64"))
    positions = {}
    for g in GROUPS:
        rows = examples[examples["group"] == g]
        ascending = g in LEAST_CONFIDENT_FIRST
        rows = rows.sort_values(["new_confidence", "position"], ascending=[ascending, True], kind="stable")
        positions[g] = rows["position"].to_numpy()
    churn = sum(counts[g] for g in CHANGED) / n if n else 0.0
    return Diff(split, n, counts, churn, flips, positions, examples)


def _same_examples(run_a: Path, run_b: Path, split: str, index_a: np.ndarray, index_b: np.ndarray) -> None:
    """ValueError unless both runs scored the same official rows of the same official file, in the same order."""
    file_a = runs.load_config(run_a).data.official_file(split)
    file_b = runs.load_config(run_b).data.official_file(split)

    def describe(file: str, index: np.ndarray) -> str:
        span = f"rows {int(index.min())}..{int(index.max())}" if len(index) else "no rows"
        return f"{len(index)} examples of the official {file} file ({span})"
    if file_a != file_b or index_a.shape != index_b.shape or not np.array_equal(index_a, index_b):
        raise ValueError(
            f"the two runs did not score the same {split} examples: {run_a.name} has "
            f"{describe(file_a, index_a)}, {run_b.name} has {describe(file_b, index_b)}. Compare runs made with "
            "the same split protocol (--split) and the same evaluation subset (--eval-subset).")


def diff(run_a: Path | str, epoch_a: int, run_b: Path | str, epoch_b: int, split: str = "val",
         load_predictions: runs.PredictionsReader = runs.load_predictions) -> Diff:
    """What changed from (run_a, epoch_a) to (run_b, epoch_b) on `split` ("val" or "test").

    Works between epochs of one run and between two runs that scored the same examples (ValueError
    otherwise); RunError when a predictions file is missing or corrupt. `load_predictions` reads a
    predictions file (the dashboard passes its cached reader).
    """
    run_a, run_b = Path(run_a), Path(run_b)
    logits_a, labels_a, index_a = _split(run_a, epoch_a, split, load_predictions)
    logits_b, labels_b, index_b = _split(run_b, epoch_b, split, load_predictions)
    _same_examples(run_a, run_b, split, index_a, index_b)
    if not np.array_equal(labels_a, labels_b):
        raise ValueError(f"the two runs give different labels to the same {split} rows: their data differ")
    return compare(logits_a, logits_b, labels_a, index_a, split)


def _split(run: Path, epoch: int, split: str, load_predictions: runs.PredictionsReader = runs.load_predictions
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits (N,10), labels (N,), official index (N,)) of one run's split at an epoch."""
    if split not in ("val", "test"):
        raise ValueError(f"unknown split {split!r}: choose val or test")
    if epoch not in runs.prediction_epochs(run):
        raise runs.RunError(runs.predictions_path(run, epoch),
                            f"missing: the run has predictions for epochs {runs.prediction_epochs(run)}")
    return runs.split_arrays(load_predictions(run, epoch), split, runs.predictions_path(run, epoch))


def forgotten(run: Path | str, epoch: int, split: str = "val",
              load_predictions: runs.PredictionsReader = runs.load_predictions) -> pd.DataFrame:
    """The examples right at epoch-1, wrong at `epoch` and right again at epoch+1, with the wrong answer.

    Returns:
        DataFrame, one row per forgotten example, most confident wrong answer first: position (into the
        split), index (official row), label, answer (the wrong answer at `epoch`), confidence (its
        probability), true_prob (the true class's probability at `epoch`).
    """
    run = Path(run)
    have = runs.prediction_epochs(run)
    if epoch - 1 not in have or epoch + 1 not in have:
        raise ValueError(f"forgotten at epoch {epoch} needs the predictions of epochs {epoch - 1}, {epoch} and "
                         f"{epoch + 1}; {run.name} has epochs {have}")
    (before, labels, index), (at, _, _), (after, _, _) = (_split(run, e, split, load_predictions)
                                                          for e in (epoch - 1, epoch, epoch + 1))
    right_before = compare(before, at, labels, index, split)
    was = right_before.examples
    right_after = np.asarray(after, dtype=np.float64).argmax(1) == labels
    rows = was[was["group"].eq("became_wrong").to_numpy() & right_after]
    probs = _softmax(at)[rows["position"].to_numpy()]                      # (n_forgotten,10)
    out = pd.DataFrame({"position": rows["position"].to_numpy(), "index": rows["index"].to_numpy(),
                        "label": rows["label"].to_numpy(), "answer": rows["new"].to_numpy(),
                        "confidence": rows["new_confidence"].to_numpy(),
                        "true_prob": probs[np.arange(len(rows)), rows["label"].to_numpy()]})
    return out.sort_values(["confidence", "position"], ascending=[False, True]).reset_index(drop=True)


# ----------------------------------------------------------------------------- command line

def _run_epoch(text: str, runs_dir: Path) -> tuple[Path, int]:
    """"RUN:EPOCH" -> (run folder, epoch); ValueError or RunError with a message that says what is wrong."""
    run, sep, epoch = text.rpartition(":")
    if not sep or not run or not epoch.strip().isdigit() or int(epoch) < 1:
        raise ValueError(f"{text!r} is not RUN:EPOCH (a run id or folder, a colon, an epoch number >= 1)")
    return runs.existing_run(run, runs_dir), int(epoch)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="What changed between two (run, epoch) pairs on one split, example by example; or, with "
                    "--forgotten, the examples one epoch broke and the next fixed. Prints JSON.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("pairs", nargs="*", metavar="RUN:EPOCH", help="the old and the new (run, epoch): two of them")
    p.add_argument("--forgotten", metavar="RUN:EPOCH", default=None,
                   help="list the examples right at EPOCH-1, wrong at EPOCH, right at EPOCH+1 instead")
    p.add_argument("--split", choices=["val", "test"], default="val", help="which saved predictions to compare")
    p.add_argument("--k", type=int, default=20, help="positions to print per group")
    p.add_argument("--runs-dir", default=None, help="runs folder (default: $DIGIT_LENS_RUNS or runs/)")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:                 # a usage error is bad input too: exit 1 (--help exits 0)
        return 0 if e.code == 0 else 1
    runs_dir = Path(args.runs_dir) if args.runs_dir else runs.default_runs_dir()
    try:
        if args.forgotten is not None:
            if args.pairs:
                raise ValueError("give either two RUN:EPOCH pairs or --forgotten RUN:EPOCH, not both")
            run, epoch = _run_epoch(args.forgotten, runs_dir)
            rows = forgotten(run, epoch, args.split)
            out = {"run": run.name, "epoch": epoch, "split": args.split, "count": len(rows),
                   "examples": [{k: (float(v) if isinstance(v, float) else int(v)) for k, v in r.items()}
                                for r in rows.head(args.k).to_dict("records")]}
        else:
            if len(args.pairs) != 2:
                raise ValueError(f"expected two RUN:EPOCH pairs (old, new), got {len(args.pairs)}")
            (run_a, epoch_a), (run_b, epoch_b) = (_run_epoch(t, runs_dir) for t in args.pairs)
            out = {"a": {"run": run_a.name, "epoch": epoch_a}, "b": {"run": run_b.name, "epoch": epoch_b},
                   **diff(run_a, epoch_a, run_b, epoch_b, args.split).to_json(args.k)}
    except (ValueError, runs.RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
