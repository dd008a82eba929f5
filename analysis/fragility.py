"""How fragile a prediction is: the Fast Gradient Sign Method (FGSM) and the smallest step that flips it.

FGSM (Goodfellow et al., 2015) moves every pixel by epsilon in the direction that increases the
loss of the given label: x' = clip(x + epsilon * sign(d loss / d x), 0, 1). The direction does
not depend on epsilon, so one gradient serves a whole search over epsilon.

Nothing here mutates the model or the inputs: gradients are taken with `torch.autograd.grad`
(parameters' `.grad` stay untouched) and a model in training mode is run through an eval copy.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from analysis.internals import eval_model
from model.net import to_input

EPS_GRID = (0.05, 0.1, 0.2)   # robustness_by_class reports the share flipped at each of these


def _sign_of_gradient(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sign(d CE(model(x), target) / d x), (B,1,28,28); summed loss, so each example has its own gradient."""
    x = inputs.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), torch.as_tensor(target).long(), reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    return grad.sign()


def fgsm(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, epsilon: float | torch.Tensor) -> torch.Tensor:
    """FGSM adversarial inputs: clip(x + epsilon * sign(grad_x CE(model(x), target)), 0, 1).

    Args:
        model: a classifier returning logits (B,C).
        inputs: (B,1,28,28) float in [0,1]; not modified.
        target: (B,) labels whose loss the step increases.
        epsilon: the step size, a float or one per example (B,).
    Returns:
        (B,1,28,28) the perturbed inputs, detached.
    """
    model = eval_model(model)
    direction = _sign_of_gradient(model, inputs, target)
    eps = torch.as_tensor(epsilon, dtype=inputs.dtype).reshape(-1, *([1] * (inputs.dim() - 1)))
    return (inputs.detach() + eps * direction).clamp(0, 1)


def _min_flip_batch(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, eps_max: float,
                    tol: float) -> np.ndarray:
    """Bisection on FGSM's epsilon for every example at once: (B,) float64, NaN where eps_max does not flip.

    "Flipped" means the prediction is no longer the label; examples already misclassified get 0.
    """
    labels = torch.as_tensor(labels).long()
    direction = _sign_of_gradient(model, x, labels)

    def flipped(eps: np.ndarray) -> np.ndarray:
        e = torch.as_tensor(eps, dtype=x.dtype).reshape(-1, 1, 1, 1)
        with torch.no_grad():
            return (model((x + e * direction).clamp(0, 1)).argmax(1) != labels).numpy()

    n = len(x)
    lo, hi = np.zeros(n), np.full(n, float(eps_max))
    wrong_already = flipped(lo)
    never = ~flipped(hi)
    while np.any(hi - lo > tol):
        mid = (lo + hi) / 2
        f = flipped(mid)
        hi = np.where(f, mid, hi)
        lo = np.where(f, lo, mid)
    out = hi.copy()                  # the smallest epsilon found that does flip (within tol)
    out[wrong_already] = 0.0
    out[never & ~wrong_already] = np.nan
    return out


def min_flip_epsilon(model: nn.Module, x: torch.Tensor, label: int, eps_max: float = 0.5,
                     tol: float = 1e-3) -> float | None:
    """The smallest FGSM epsilon that changes the prediction away from `label`, by bisection.

    Bisection assumes that once a step flips the prediction, larger steps do too (true for most
    inputs; where it is not, the result is one flipping epsilon within tol of a boundary).

    Args:
        x: one image (1,1,28,28) float in [0,1].
        label: the class whose loss FGSM increases (the true label, or the clean prediction).
        eps_max: the largest epsilon tried. Default: 0.5.
        tol: bisection stops when the bracket is narrower than this. Default: 1e-3.
    Returns:
        An epsilon in (0, eps_max] that flips the prediction and lies within tol of the smallest
        one; 0.0 when the prediction is already not `label`; None when even eps_max does not flip.
    """
    eps = _min_flip_batch(eval_model(model), x.reshape(1, 1, *x.shape[-2:]), torch.tensor([label]), eps_max, tol)[0]
    return None if np.isnan(eps) else float(eps)


def robustness_by_class(model: nn.Module, images: np.ndarray, labels: np.ndarray, n_per_class: int = 20,
                        seed: int = 0, eps_max: float = 0.5, tol: float = 1e-3,
                        eps_grid: tuple[float, ...] = EPS_GRID) -> pd.DataFrame:
    """Per class, how large an FGSM step its correctly classified examples withstand.

    Draws up to n_per_class examples of each class present (seeded), keeps those the model
    classifies correctly, and finds each one's min-flip epsilon.

    Args:
        images: uint8 (N,28,28); labels: (N,) ints.
    Returns:
        One row per class: class, n (sampled), n_correct, median_eps (median min-flip epsilon over
        the correct ones, counting "never flips by eps_max" as infinite; NaN if that median is
        infinite or nothing was correct), never_flipped (share not flipped at eps_max), and
        flipped_at_<e> for each e in eps_grid (share of correct ones whose prediction FGSM at e changes).
    """
    model = eval_model(model)
    labels = np.asarray(labels).astype(np.int64)
    rng = np.random.default_rng(seed)
    rows = []
    for c in np.unique(labels):
        pool = np.flatnonzero(labels == c)
        idx = np.sort(rng.choice(pool, size=min(n_per_class, len(pool)), replace=False))
        x = to_input(torch.as_tensor(np.array(images[idx], dtype=np.uint8)))        # (n,1,28,28)
        y = torch.as_tensor(labels[idx])
        with torch.no_grad():
            correct = (model(x).argmax(1) == y).numpy()
        row = {"class": int(c), "n": len(idx), "n_correct": int(correct.sum())}
        if correct.any():
            xc, yc = x[correct], y[correct]
            eps = _min_flip_batch(model, xc, yc, eps_max, tol)
            median = float(np.median(np.where(np.isnan(eps), np.inf, eps)))
            row["median_eps"] = median if np.isfinite(median) else np.nan
            row["never_flipped"] = float(np.isnan(eps).mean())
            for e in eps_grid:
                with torch.no_grad():
                    pred = model(fgsm(model, xc, yc, e)).argmax(1)
                row[f"flipped_at_{e:g}"] = float((pred != yc).float().mean())
        else:
            row.update({"median_eps": np.nan, "never_flipped": np.nan, **{f"flipped_at_{e:g}": np.nan for e in eps_grid}})
        rows.append(row)
    return pd.DataFrame(rows)
