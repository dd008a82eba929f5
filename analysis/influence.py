"""Which training images taught the model this answer: TracIn over the run's checkpoints, on the last layer.

TracIn (Pruthi et al. 2020) scores a training example z by how much the training steps on z lowered
the loss of a test example z', summed over the saved checkpoints, each weighted by its learning rate.
On the final Linear layer (W, the bias left out, as Captum's TracInCPFast does) the gradient of the
cross-entropy is an outer product, so the score factorises:

    score(z, z') = sum over epochs e of  lr_e * (a_e(z) . a_e(z')) * (g_e(z) . g_e(z'))

where a = the input of the final Linear layer (the penultimate activations, analysis.layers) and
g = dLoss/dlogits = softmax(logits) - onehot(label) (10 numbers). For the test example the label is
the class being explained (default: the predicted one), so a positive score marks a **proponent**
(training on it pushed the model towards that class) and a negative one an **opponent**.

A one-time pass over the training set per checkpoint (`train_pass`) stores a R (a random Gaussian
projection R to `dim` numbers, Johnson-Lindenstrauss: inner products kept up to about 1/sqrt(dim)
relative error; no projection when the layer is that narrow already) and g, in float16, in the run's
cache folder; a query is then one matrix-vector product per checkpoint. With the default dim = 128 the
top-10 proponents of the seed run agree with the exact scores on about 9 of 10 (bench/influence_speed.py).

Self-influence, sum_e lr_e * |a_e(z)|^2 * |g_e(z)|^2, is exact (no projection): a training image
that keeps a large gradient on itself is one the model could not fit, which is how mislabelled or
atypical images show.

    python -m analysis.influence RUN --split val --index 115 --k 8         # JSON on stdout
    python -m analysis.influence RUN --self --k 20                          # the highest self-influence

Learning rates come from metrics.csv (the lr of each epoch); runs without one (imported) weight every
checkpoint 1.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from analysis.attributions import private_copy
from analysis.cache import cached, make_key
from analysis.layers import layers_of
from model import runs
from model.external import set_eval
from model.net import to_input

DEFAULT_DIM = 128     # projection size of the penultimate activations
CACHE_VERSION = "v1"
BATCH = 1000


# ----------------------------------------------------------------------------- the factors of one checkpoint

def factors(model: nn.Module, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
            batch_size: int = BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """The two factors of the last-layer gradient for every example.

    Args:
        images: uint8 (N,28,28); labels: (N,) the class each loss is taken for.
    Returns:
        (a (N,d) float32 the input of the final Linear layer, g (N,10) float32 softmax - onehot(label)).
    """
    name = _final_layer(model)
    model = set_eval(private_copy(model))                  # the hook goes on a private copy, never a shared model
    final = dict(model.named_modules())[name]
    captured: list[torch.Tensor] = []
    hook = final.register_forward_hook(lambda m, inputs, out: captured.append(inputs[0].detach().flatten(1)))
    images, labels = torch.as_tensor(np.array(images)), torch.as_tensor(np.array(labels)).long()   # copies: may be read-only
    grads = []
    try:
        with torch.no_grad():
            for s in range(0, len(images), batch_size):
                logits = model(to_input(images[s:s + batch_size]))                     # (B,10)
                grads.append(torch.softmax(logits, 1) - nn.functional.one_hot(labels[s:s + batch_size], 10))
    finally:
        hook.remove()
    d = captured[0].shape[1] if captured else 0
    return (torch.cat(captured) if captured else torch.zeros(0, d)), (torch.cat(grads) if grads else torch.zeros(0, 10))


def _final_layer(model: nn.Module) -> str:
    final = layers_of(model).final
    if final is None:
        raise ValueError("the model has no final Linear layer: TracIn on the last layer needs one")
    return final


@lru_cache(maxsize=8)
def projection(d: int, dim: int | None, seed: int = 0) -> torch.Tensor | None:
    """A (d, dim) Gaussian matrix scaled by 1/sqrt(dim) (inner products kept in expectation), or None when
    d <= dim or dim is None (no projection needed)."""
    if dim is None or d <= dim:
        return None
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(d, dim, generator=gen) / math.sqrt(dim)


# ----------------------------------------------------------------------------- the run's training set

def training_set(run_dir: Path | str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 (N,28,28), labels (N,), official train-file rows (N,)) the run trained on (read-only arrays)."""
    return _training_set(str(Path(run_dir).resolve()))


@lru_cache(maxsize=4)
def _training_set(run_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from data.mnist import load_mnist
    cfg = runs.load_config(run_dir)
    data = load_mnist(cfg.data.root, cfg.data.split)
    n = cfg.train.subset or len(data.train_x)
    out = data.train_x[:n].numpy(), data.train_y[:n].numpy(), np.arange(n, dtype=np.int64)
    for a in out:
        a.flags.writeable = False
    return out


def learning_rates(run_dir: Path | str, metrics: pd.DataFrame | None = None) -> dict[int, float]:
    """epoch -> the learning rate of that epoch (1.0 where metrics.csv has none, e.g. imported runs).

    `metrics`: the run's metrics.csv when the caller has read it already."""
    m = metrics if metrics is not None else runs.load_metrics(run_dir)
    lr = m["lr"] if "lr" in m.columns else pd.Series(np.nan, index=m.index)
    return {int(e): (float(v) if np.isfinite(v) else 1.0) for e, v in zip(m["epoch"], lr)}


def checkpoint_pass(run_dir: Path | str, epoch: int, dim: int | None = DEFAULT_DIM, seed: int = 0,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """One checkpoint's factors over the whole training set, cached in the run's cache folder.

    Returns:
        {"acts": (N,k) float16 a R (float32 a itself when not projected), "grads": (N,10) float16,
         "self": (N,) float32 |a|^2 |g|^2 (exact)}.
    """
    def compute() -> dict[str, np.ndarray]:
        model = runs.load_model(run_dir, epoch)
        images, labels, _ = training_set(run_dir)
        acts, grads, selfs, proj = [], [], [], None
        for s in range(0, len(images), BATCH * 5):
            a, g = factors(model, images[s:s + BATCH * 5], labels[s:s + BATCH * 5])
            if s == 0:
                proj = projection(a.shape[1], dim, seed)
            selfs.append(((a * a).sum(1) * (g * g).sum(1)).numpy().astype(np.float32))
            acts.append((a @ proj).numpy().astype(np.float16) if proj is not None else a.numpy())
            grads.append(g.numpy().astype(np.float16))
            if progress:
                progress(min(s + BATCH * 5, len(images)), len(images))
        return {"acts": np.concatenate(acts), "grads": np.concatenate(grads), "self": np.concatenate(selfs)}
    return cached(run_dir, _key(epoch, dim, seed), compute, kind="npz")


def _key(epoch: int, dim: int | None, seed: int) -> str:
    return make_key("tracin", CACHE_VERSION, epoch=epoch, dim=dim or 0, seed=seed)


def pass_ready(run_dir: Path | str, dim: int | None = DEFAULT_DIM, seed: int = 0) -> bool:
    """True when `checkpoint_pass` of every checkpoint is on disk (a query then takes no training-set pass)."""
    from analysis.cache import cache_path
    epochs = runs.checkpoint_epochs(run_dir)
    return bool(epochs) and all(cache_path(run_dir, _key(e, dim, seed), "npz").exists() for e in epochs)


def train_pass(run_dir: Path | str, epochs: list[int] | None = None, dim: int | None = DEFAULT_DIM, seed: int = 0,
               progress: Callable[[int, int], None] | None = None, lrs: dict[int, float] | None = None
               ) -> list[tuple[int, float, dict[str, np.ndarray]]]:
    """`checkpoint_pass` for every checkpoint (default: all of the run's): [(epoch, lr, factors)].

    `progress(done, total)` counts training images over all checkpoints (for a progress bar); `lrs`: the
    run's `learning_rates` when the caller has them.
    """
    epochs = epochs if epochs is not None else runs.checkpoint_epochs(run_dir)
    lrs = lrs if lrs is not None else learning_rates(run_dir)
    n = len(training_set(run_dir)[1])
    out = []
    for i, epoch in enumerate(epochs):
        step = (lambda done, total, i=i: progress(i * n + done, len(epochs) * n)) if progress else None
        out.append((epoch, lrs.get(epoch, 1.0), checkpoint_pass(run_dir, epoch, dim, seed, step)))
    return out


# ----------------------------------------------------------------------------- queries

def scores(run_dir: Path | str, image: np.ndarray, target: int | None = None, epoch: int | None = None,
           dim: int | None = DEFAULT_DIM, seed: int = 0, passes: list | None = None,
           load_model: Callable[[Path | str, int], nn.Module] = runs.load_model) -> tuple[np.ndarray, int]:
    """TracIn score of every training example for one image: ((N,) float32, the class explained).

    Args:
        image: (28,28) uint8, or float in [0,1].
        target: the class whose loss the test gradient is taken for (default: the prediction at `epoch`).
        epoch: sum over checkpoints 1..epoch (default: all).
        passes: `train_pass`'s result, when the caller holds it already (the dashboard keeps it in memory).
        load_model: how to get a checkpoint's model (the dashboard passes its cached loader).
    """
    img = np.asarray(image)
    img = img if img.dtype == np.uint8 else np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    last = epoch or max(runs.checkpoint_epochs(run_dir))
    passes = passes if passes is not None else train_pass(run_dir, [e for e in runs.checkpoint_epochs(run_dir)
                                                                    if e <= last], dim, seed)
    if target is None:
        with torch.no_grad():
            target = int(load_model(run_dir, last)(to_input(torch.as_tensor(img[None]))).argmax(1))
    total = None
    for e, lr, f in passes:
        if e > last:
            continue
        a, g = factors(load_model(run_dir, e), img[None], np.array([target]))          # (1,d), (1,10)
        proj = projection(a.shape[1], dim, seed)
        a = a @ proj if proj is not None else a                                          # (1,k)
        acts, grads = torch.from_numpy(f["acts"]), torch.from_numpy(f["grads"])        # (N,k), (N,10)
        part = lr * (acts @ a[0].to(acts.dtype)).float() * (grads @ g[0].to(grads.dtype)).float()   # (N,)
        total = part if total is None else total + part
    if total is None:
        raise ValueError(f"no checkpoint at or before epoch {last}")
    return total.numpy().astype(np.float32), int(target)


def top_examples(values: np.ndarray, k: int, run_dir: Path | str) -> pd.DataFrame:
    """The k largest values as a table: position (in the training set), official_row, label, score."""
    _, labels, rows = training_set(run_dir)
    order = np.argsort(-values, kind="stable")[:k]
    return pd.DataFrame({"position": order, "official_row": rows[order], "label": labels[order].astype(int),
                         "score": values[order].astype(float)})


def influence(run_dir: Path | str, image: np.ndarray, target: int | None = None, epoch: int | None = None,
              k: int = 8, dim: int | None = DEFAULT_DIM, seed: int = 0, passes: list | None = None,
              load_model: Callable[[Path | str, int], nn.Module] = runs.load_model) -> dict:
    """The k strongest proponents and opponents of one image's answer (see the module docstring).

    Returns:
        {"target": class explained, "proponents": DataFrame (highest score first), "opponents": DataFrame
         (most negative first, scores negative)}.
    """
    values, target = scores(run_dir, image, target, epoch, dim, seed, passes, load_model)
    opp = top_examples(-values, k, run_dir)
    opp["score"] = -opp["score"]
    return {"target": target, "proponents": top_examples(values, k, run_dir), "opponents": opp}


def self_influence(run_dir: Path | str, epoch: int | None = None, dim: int | None = DEFAULT_DIM, seed: int = 0,
                   passes: list | None = None) -> np.ndarray:
    """Every training example's TracIn score on itself, summed over checkpoints 1..epoch: (N,) float32 (exact)."""
    last = epoch or max(runs.checkpoint_epochs(run_dir))
    passes = passes if passes is not None else train_pass(run_dir, [e for e in runs.checkpoint_epochs(run_dir)
                                                                    if e <= last], dim, seed)
    return sum(lr * f["self"] for e, lr, f in passes if e <= last).astype(np.float32)


# ----------------------------------------------------------------------------- command line

def _example(run_dir: Path, split: str, index: int, epoch: int) -> np.ndarray:
    """The image of example `index` (position in the split) of a run's val/test split."""
    from data.mnist import load_mnist
    cfg = runs.load_config(run_dir)
    data = load_mnist(cfg.data.root, cfg.data.split)
    images = data.val_x if split == "val" else data.test_x
    if not 0 <= index < len(images):
        raise ValueError(f"--index must be in 0..{len(images) - 1} for the {split} split")
    return images[index].numpy()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="TracIn: the training images that pushed a prediction towards its class "
                                            "(proponents) and against it (opponents), or self-influence. Prints JSON.")
    p.add_argument("run", help="run id or folder")
    p.add_argument("--split", choices=("val", "test"), default="val")
    p.add_argument("--index", type=int, default=None, help="the example's position in the split")
    p.add_argument("--target", type=int, default=None, help="class to explain (default: the prediction)")
    p.add_argument("--epoch", type=int, default=None, help="use checkpoints up to this epoch (default: all)")
    p.add_argument("--k", type=int, default=8, help="how many proponents and opponents")
    p.add_argument("--dim", type=int, default=DEFAULT_DIM, help="random projection size of the activations (0: none)")
    p.add_argument("--self", dest="self_influence", action="store_true", help="rank training images by self-influence")
    p.add_argument("--runs-dir", default=None, help="runs folder (default: $DIGIT_LENS_RUNS or runs/)")
    args = p.parse_args(argv)
    from tqdm import tqdm
    try:
        run_dir = runs.existing_run(args.run, args.runs_dir)
        dim = args.dim or None
        with tqdm(total=1, unit="image", file=sys.stderr, desc="training-set pass (cached)") as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()
            passes = train_pass(run_dir, None, dim, 0, progress)
        if args.self_influence:
            values = self_influence(run_dir, args.epoch, dim, passes=passes)
            out = {"run": run_dir.name, "self_influence": top_examples(values, args.k, run_dir).to_dict("records")}
        else:
            if args.index is None:
                p.error("give --index (an example of --split) or --self")
            image = _example(run_dir, args.split, args.index, args.epoch)
            res = influence(run_dir, image, args.target, args.epoch, args.k, dim, passes=passes)
            out = {"run": run_dir.name, "split": args.split, "index": args.index, "target": res["target"],
                   "proponents": res["proponents"].to_dict("records"), "opponents": res["opponents"].to_dict("records")}
    except (runs.RunError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=1, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
