"""Benchmark: "why this mistake" on a 10-epoch run: TracIn pass and query, label issues, diff, smallest change.

    python bench/why_speed.py [--run RUN_DIR] [--queries 20]

Default run: the newest completed run with at least 10 checkpoints trained on all 60k images
(`python -m model.train --preset seed`). Each figure is reported with a baseline measured in the same
process, as a ratio (machines here are noisy):
  * TracIn one-time pass over every training image and checkpoint (cold cache, in a temporary cache
    folder), against the same number of plain forward passes (evaluate); target under 3 minutes.
  * One TracIn query with the pass in memory (median over --queries validation images), against one
    forward pass of the same image through every checkpoint; target under 100 ms.
  * Top-10 proponents with the default projection vs the exact (unprojected) scores: mean overlap.
  * cleanlab label issues over the training set (epoch-1 probabilities), against a softmax of the same array.
  * analysis.diff between epochs 6 and 7, and analysis.counterfactual.smallest_change for one image.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python bench/why_speed.py`

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from model import runs  # noqa: E402
from model.net import to_input  # noqa: E402


def pick_run(runs_dir: Path) -> Path | None:
    for info in runs.list_runs(runs_dir):          # newest first
        if info.state == "completed" and len(runs.checkpoint_epochs(info.path)) >= 10 and not info.config.train.subset:
            return info.path
    return None


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=None)
    ap.add_argument("--queries", type=int, default=20)
    args = ap.parse_args()
    run = args.run or pick_run(runs.REPO_ROOT / "runs")
    if run is None:
        print("no completed run with 10 checkpoints on the full training set: "
              "train one with `python -m model.train --preset seed`", file=sys.stderr)
        return 1
    os.environ["DIGIT_LENS_CACHE"] = tempfile.mkdtemp(prefix="why-bench-")   # a cold cache, not the run's
    from analysis import counterfactual, diff, influence, label_issues
    from data.mnist import load_mnist

    epochs = runs.checkpoint_epochs(run)
    images, labels, _ = influence.training_set(run)
    print(f"run {run.name}: {len(epochs)} checkpoints, {len(images)} training images, torch threads "
          f"{torch.get_num_threads()}")

    # ---- baseline: plain forward passes over the training set, once per checkpoint
    model = runs.load_model(run, epochs[-1])

    def forward_all():
        with torch.no_grad():
            for s in range(0, len(images), 1000):
                model(to_input(torch.from_numpy(images[s:s + 1000])))
    _, one_pass = timed(forward_all)
    passes, t_pass = timed(lambda: influence.train_pass(run))
    print(f"TracIn pass: {t_pass:.1f} s for {len(epochs)} checkpoints x {len(images)} images "
          f"(target < 180 s); plain forward passes {len(epochs) * one_pass:.1f} s; ratio {t_pass / (len(epochs) * one_pass):.2f}")

    # ---- queries with everything in memory
    models = {e: runs.load_model(run, e) for e in epochs}
    cfg = runs.load_config(run)
    data = load_mnist(cfg.data.root, cfg.data.split)
    val = data.val_x[:args.queries].numpy()
    times, base = [], []
    for img in val:
        _, t = timed(lambda: influence.influence(run, img, k=10, passes=passes, load_model=lambda r, e: models[e]))
        times.append(t)

        def forwards():
            with torch.no_grad():
                for m in models.values():
                    m(to_input(torch.from_numpy(img[None])))
        base.append(timed(forwards)[1])
    q, b = statistics.median(times), statistics.median(base)
    print(f"TracIn query: median {q * 1000:.0f} ms (target < 100 ms); forward through every checkpoint "
          f"{b * 1000:.0f} ms; ratio {q / b:.1f}")

    # ---- projection quality: exact scores streamed checkpoint by checkpoint (no cache: 1.1 GB each)
    exact = np.zeros((len(val), len(images)), np.float64)
    targets = [int(models[epochs[-1]](to_input(torch.from_numpy(v[None]))).argmax(1)) for v in val]
    lrs = influence.learning_rates(run)
    for e in epochs:
        a_tr, g_tr = influence.factors(models[e], images, labels)
        a_te, g_te = influence.factors(models[e], val, np.array(targets))
        exact += lrs.get(e, 1.0) * ((a_te @ a_tr.T) * (g_te @ g_tr.T)).double().numpy()
        del a_tr, g_tr
    overlaps = []
    for i, img in enumerate(val):
        ours = influence.influence(run, img, k=10, passes=passes, load_model=lambda r, e: models[e])
        overlaps.append(len(set(ours["proponents"]["position"]) & set(np.argsort(-exact[i])[:10])))
    print(f"TracIn top-10 proponents, projection {influence.DEFAULT_DIM} vs exact: mean overlap "
          f"{np.mean(overlaps):.1f} of 10 (min {min(overlaps)}; target >= 8)")

    # ---- label issues, diff, counterfactual
    try:
        probs, lab, rows, kind = label_issues.probabilities(run, "train")
    except runs.RunError as e:                      # a run trained before train_probs were saved
        print(f"(training probabilities unavailable: {e}; using the validation split)")
        probs, lab, rows, kind = label_issues.probabilities(run, "val")
    _, t_soft = timed(lambda: torch.softmax(torch.from_numpy(probs), 1))
    table, t_li = timed(lambda: label_issues.label_issues(probs, lab, rows))
    print(f"label issues ({kind}, {len(lab)} images): {t_li:.2f} s, {int(table['issue'].sum())} flagged; "
          f"softmax of the same array {t_soft * 1000:.1f} ms")
    if len(epochs) >= 7:
        d, t_diff = timed(lambda: diff.diff(run, 6, run, 7, "val"))
        print(f"diff epoch 6 -> 7: {t_diff * 1000:.0f} ms, churn {d.churn:.2%}, counts {d.counts}")
    x = to_input(torch.from_numpy(val[:1]))
    res, t_cf = timed(lambda: counterfactual.smallest_change(models[epochs[-1]], x, (targets[0] + 1) % 10))
    print(f"smallest change to class {(targets[0] + 1) % 10}: {t_cf:.2f} s, radius {res['radius']:.3f}, "
          f"found {res['found']}; one forward+backward {timed(lambda: _grad(models[epochs[-1]], x))[1] * 1000:.1f} ms")
    return 0


def _grad(model: torch.nn.Module, x: torch.Tensor) -> None:
    x = x.clone().requires_grad_(True)
    model(x)[0, 0].backward()


if __name__ == "__main__":
    sys.exit(main())
