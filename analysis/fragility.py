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
    with torch.enable_grad():                               # works inside a caller's torch.no_grad()
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


def _flip_test(model: nn.Module, x: torch.Tensor, labels: torch.Tensor):
    """A function eps (B,) -> (B,) bool: does FGSM at eps move each prediction away from its label?

    One gradient serves every epsilon: FGSM's direction does not depend on it.
    """
    direction = _sign_of_gradient(model, x, labels)

    def flipped(eps: np.ndarray) -> np.ndarray:
        e = torch.tensor(np.broadcast_to(eps, (len(x),)), dtype=x.dtype).reshape(-1, 1, 1, 1)   # (B,1,1,1)
        with torch.no_grad():
            return (model((x + e * direction).clamp(0, 1)).argmax(1) != labels).numpy()
    return flipped


def _bisect(flipped, n: int, eps_max: float, tol: float) -> np.ndarray:
    """Bisection on epsilon for n examples at once: (n,) float64, NaN where eps_max does not flip.

    Returns the upper end of each final bracket (an epsilon that flips); 0 where eps 0 flips already.
    """
    lo, hi = np.zeros(n), np.full(n, float(eps_max))
    wrong_already = flipped(lo)
    never = ~flipped(hi)
    while np.any(hi - lo > tol):
        mid = (lo + hi) / 2
        f = flipped(mid)
        hi = np.where(f, mid, hi)
        lo = np.where(f, lo, mid)
    out = hi.copy()
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
    x = x.reshape(1, 1, *x.shape[-2:])                       # (1,1,28,28)
    eps = _bisect(_flip_test(eval_model(model), x, torch.tensor([label])), 1, eps_max, tol)[0]
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
    classes = np.unique(labels)
    picks = [np.sort(rng.choice(np.flatnonzero(labels == c), size=min(n_per_class, int((labels == c).sum())),
                                replace=False)) for c in classes]
    idx = np.concatenate(picks)
    x = to_input(torch.as_tensor(np.array(images[idx], dtype=np.uint8)))              # (n,1,28,28)
    y = torch.as_tensor(labels[idx])
    with torch.no_grad():
        correct = (model(x).argmax(1) == y).numpy()
    # one gradient and one bisection for all correct examples together, then grouped by class
    eps = np.full(len(idx), np.nan)
    at = {e: np.zeros(len(idx), bool) for e in eps_grid}
    if correct.any():
        flipped = _flip_test(model, x[correct], y[correct])
        eps[correct] = _bisect(flipped, int(correct.sum()), eps_max, tol)
        for e in eps_grid:
            at[e][correct] = flipped(np.array(e))
    rows = []
    for c in classes:
        mine = labels[idx] == c
        ok = mine & correct
        row = {"class": int(c), "n": int(mine.sum()), "n_correct": int(ok.sum())}
        if ok.any():
            median = float(np.median(np.where(np.isnan(eps[ok]), np.inf, eps[ok])))
            row["median_eps"] = median if np.isfinite(median) else np.nan
            row["never_flipped"] = float(np.isnan(eps[ok]).mean())
            row.update({f"flipped_at_{e:g}": float(at[e][ok].mean()) for e in eps_grid})
        else:
            row.update({"median_eps": np.nan, "never_flipped": np.nan,
                        **{f"flipped_at_{e:g}": np.nan for e in eps_grid}})
        rows.append(row)
    return pd.DataFrame(rows)
