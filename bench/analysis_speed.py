"""Benchmark: per-epoch diagnostics of a run from its saved files vs re-running every checkpoint.

    python bench/analysis_speed.py [--run RUN_DIR] [--epochs N]

Both ways compute, for every epoch: confusion matrices and per-class reports (val and test),
reliability tables and ECE (val and test); then the overfitting diagnosis (metrics.csv) and
forgetting events and cartography (saved training records). They differ in where the logits come from:
    saved  predictions/epoch_NNN.npz, written by the trainer (what analysis/ does);
    naive  load every checkpoint and run it over the val and test images again.
The naive way reads training records from the saved files too: recomputing them would mean
retraining. When val and test are the same images (the seed split), the naive way runs them once.
Prints both times and their ratio (target: saved at least 20x faster).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python bench/analysis_speed.py`

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from analysis import errors  # noqa: E402
from analysis.calibration import reliability  # noqa: E402
from analysis.dynamics import cartography_table, forgetting_events, forgetting_table, training_dynamics  # noqa: E402
from analysis.overfitting import diagnose  # noqa: E402
from data.mnist import default_root, load_mnist  # noqa: E402
from model import runs  # noqa: E402
from model.net import to_input  # noqa: E402

TARGET = 20.0


def pick_run(runs_dir: Path) -> Path:
    """The run with the most prediction epochs; the newest among equals."""
    listed = runs.list_runs(runs_dir)   # newest first
    if not listed:
        raise SystemExit(f"no runs in {runs_dir}: train one with `python -m model.train --preset quick`")
    return max(listed, key=lambda r: len(runs.prediction_epochs(r.path))).path   # max keeps the first of ties


def diagnostics(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Everything computed per epoch and split from probabilities (N,10) and labels (N,)."""
    pred = probs.argmax(1)
    return {"cm": errors.confusion_matrix(labels, pred), "report": errors.per_class_report(labels, pred),
            "reliability": reliability(probs, labels)}


def run_wide(run_dir: Path) -> dict:
    """The diagnostics that need no logits: overfitting from metrics, forgetting and cartography."""
    d = training_dynamics(run_dir)
    return {"diagnosis": diagnose(runs.load_metrics(run_dir)),
            "forgetting": forgetting_table(d.correct, d.labels), "events": forgetting_events(d.correct),
            "cartography": cartography_table(d.true_prob, d.correct, d.labels, d.index)}


def from_saved(run_dir: Path, epochs: list[int]) -> dict:
    out = {}   # analysis/ keeps no memo: every file is read here, cold
    for e in epochs:
        out[e] = {s: diagnostics(*errors.split_predictions(run_dir, e, s)[:2]) for s in ("val", "test")}
    out["run"] = run_wide(run_dir)
    return out


@torch.no_grad()
def logits_of(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """Logits (N,10) of uint8 images x (N,28,28)."""
    return torch.cat([model(to_input(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]).numpy()


def naive(run_dir: Path, epochs: list[int]) -> dict:
    cfg = runs.load_config(run_dir)
    data = load_mnist(cfg.data.root or default_root(), cfg.data.split)
    n_eval = cfg.train.eval_subset or None
    sets = {"val": (data.val_x[:n_eval], data.val_y[:n_eval].numpy()),
            "test": (data.test_x[:n_eval], data.test_y[:n_eval].numpy())}
    same = data.val_source == "test"
    out = {}
    for e in epochs:
        model = runs.load_model(run_dir, e)
        probs = {"val": errors.softmax(logits_of(model, sets["val"][0]))}
        probs["test"] = probs["val"] if same else errors.softmax(logits_of(model, sets["test"][0]))
        out[e] = {s: diagnostics(probs[s], sets[s][1]) for s in ("val", "test")}
    out["run"] = run_wide(run_dir)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=None,
                   help="run folder (default: the run in runs/ with the most epochs, the newest among equals)")
    p.add_argument("--epochs", type=int, default=0, help="use only the first N epochs, 0 = all (default: 0)")
    args = p.parse_args(argv)
    run_dir = args.run or pick_run(runs.default_runs_dir())
    epochs = sorted(set(runs.prediction_epochs(run_dir)) & set(runs.checkpoint_epochs(run_dir)))
    epochs = epochs[:args.epochs] if args.epochs else epochs
    if not epochs:
        raise SystemExit(f"{run_dir}: no epoch has both a checkpoint and a predictions file")
    probe = runs.load_predictions(run_dir, epochs[0])
    print(f"run {run_dir.name}: epochs {epochs[0]}..{epochs[-1]} ({len(epochs)}), "
          f"{len(probe['val_labels'])} val / {len(probe['test_labels'])} test / {len(probe['train_labels'])} train "
          f"examples, torch threads {torch.get_num_threads()}")

    t0 = time.perf_counter()
    fast = from_saved(run_dir, epochs)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = naive(run_dir, epochs)
    t_slow = time.perf_counter() - t0

    # the two ways must agree (saved logits are float16: a near-tie may flip now and then)
    flips = max(int(np.abs(fast[e][s]["cm"] - slow[e][s]["cm"]).sum()) // 2 for e in epochs for s in ("val", "test"))
    ece_diff = max(abs(fast[e][s]["reliability"].ece - slow[e][s]["reliability"].ece) for e in epochs for s in ("val", "test"))
    print(f"from saved files        : {t_fast:8.2f} s")
    print(f"naive (re-run each ckpt): {t_slow:8.2f} s")
    ratio = t_slow / t_fast
    print(f"speed-up                : {ratio:8.1f}x  (target >= {TARGET:.0f}x: {'met' if ratio >= TARGET else 'NOT met'})")
    print(f"agreement               : at most {flips} prediction(s) differ per epoch and split; "
          f"ECE differs by at most {ece_diff:.2e}")
    print(f"verdict                 : {fast['run']['diagnosis'].verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
