"""The smallest change to an image that makes the model give another answer (a counterfactual).

For an image x in [0,1] and a target class t, we look for the perturbation d of smallest L2 norm
||d|| = sqrt(sum of squared pixel changes) such that x + d stays a valid image (every pixel in [0,1]) and
the model's answer on x + d is t. The radius reported is ||d|| of the image returned, so it is an upper
bound on the true smallest radius: a perturbation of that size exists, and here it is.

Method: a targeted projected-gradient search (PGD, Madry et al. 2018) inside the ball ||d|| <= r, run for
a whole grid of radii at once (one batch): first radii spaced geometrically from a quarter of the
first-order estimate -margin / ||gradient|| up to `max_radius`, then, stage by stage, radii spaced evenly
inside the bracket [largest radius that failed, smallest change found], until the bracket is within `tol`
of the change found (a batched bisection). At radius r each step moves d along the normalised gradient of
the margin  z_t - max_{j != t} z_j  (z: logits), projects back onto the ball and clips x + d to [0,1]; a
radius stops at the first step where the answer is t, and radii at least as large as a change already
found stop too.

Why not Captum's `PGD(norm="L2")` with `MinParamPerturbation`: Captum's PGD takes FGSM steps, which move
along the *sign* of the gradient (the steepest step for L-infinity) and only then project onto the L2 ball,
so its perturbation points along sign(gradient) rather than the gradient. On a linear model that direction
needs about 1/sqrt(2/pi) = 1.25 times the true distance to the decision boundary, outside the 5% a
minimal-L2 answer should meet; and MinParamPerturbation searches one radius at a time, where a batch of
radii costs little more than one on a CPU. The loop below is the same PGD with the L2 steepest step.

A radius the search could not reach says "not found within max_radius", never "impossible": PGD is a
local search, and a model that is not linear may have a smaller perturbation the search missed.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from data.mnist import DataError, default_root, load_raw
from model import runs

MAX_RADIUS = 10.0   # default search limit; an MNIST image's own L2 norm is about 9
MAX_STAGES = 12     # each stage shrinks the bracket at least (grid + 1) / 2 times: a safety stop only


def _frozen_copy(model: nn.Module) -> nn.Module:
    """A private eval-mode copy whose parameters need no gradient (about 3x faster backward passes to the
    input); the caller's model, perhaps shared between threads, is left alone."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def _margin(model: nn.Module, images: torch.Tensor, target: int) -> torch.Tensor:
    """z_t - max_{j != t} z_j for each image (B,): positive exactly when the answer is the target."""
    z = model(images)                                                      # (B,10)
    others = z.clone()
    others[:, target] = float("-inf")
    return z[:, target] - others.max(dim=1).values


def _search(model: nn.Module, x: torch.Tensor, target: int, radii: torch.Tensor, starts: torch.Tensor,
            steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Targeted L2 PGD from x, one row per radius, all in one batch.

    Args:
        x: (1,1,28,28) the image; radii: (B,) one radius per row; starts: (B,1,28,28) first perturbations.
    Returns:
        reached (B,) bool; failed (B,) bool (ran every step without reaching; rows stopped early because a
        smaller change was found are neither); deltas (B,1,28,28): the first perturbation that reached the
        target, else the one with the largest margin; margins (B,); and the number of image gradients spent.
    """
    n = len(radii)
    r = radii.view(n, 1, 1, 1)                                              # (B,1,1,1)
    step = 2.5 * r / steps                                                  # enough to cross the ball
    d = starts.clone()                                                      # (B,1,28,28)
    best, best_margin = d.clone(), torch.full((n,), float("-inf"))
    reached, active = torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)
    spent = 0
    for _ in range(steps + 1):
        rows = active.nonzero().flatten()
        if len(rows) == 0:
            break
        with torch.enable_grad():                   # a caller's torch.no_grad() must not stop the search
            di = d[rows].requires_grad_(True)
            margin = _margin(model, x + di, target)                         # (b,)
            (grad,) = torch.autograd.grad(margin.sum(), di)                 # rows are independent
        margin, di, spent = margin.detach(), di.detach(), spent + len(rows)
        better = margin > best_margin[rows]         # a margin > 0 beats every earlier one (all <= 0)
        best[rows[better]], best_margin[rows[better]] = di[better], margin[better]
        reached[rows[margin > 0]] = True
        norms = best.flatten(1).norm(dim=1)                                 # (B,)
        smallest = norms[reached].min() if reached.any() else float("inf")
        active = ~reached & (radii < smallest)      # a larger ball cannot beat a change already found
        g = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        di = di + step[rows] * g
        di = di * (r[rows] / di.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).clamp(max=1.0)   # onto the ball
        d[rows] = (x + di).clamp(0, 1) - x          # a valid image (clipping only shrinks ||d||)
    smallest = best.flatten(1).norm(dim=1)[reached].min() if reached.any() else float("inf")
    failed = ~reached & (radii < smallest)          # never stopped early: the smallest change only shrinks
    return reached, failed, best, best_margin, spent


def smallest_change(model: nn.Module, x: torch.Tensor, target: int, max_radius: float = MAX_RADIUS,
                    steps: int = 20, grid: int = 8, tol: float = 0.01, restarts: int = 0, seed: int = 0) -> dict:
    """The smallest L2 change to x, within pixel range [0,1], that makes the model answer `target`.

    Args:
        model: a classifier taking (B,1,28,28) images in [0,1] and returning logits (B,10); not modified
            (the search runs on a private eval-mode copy).
        x: (1,1,28,28) float image in [0,1]; not modified.
        target: the class the model should answer.
        max_radius: the largest L2 radius searched. Default: 10.0.
        steps: projected-gradient steps per radius. Default: 20.
        grid: radii searched at once in each stage. Default: 8.
        tol: the search stops when the bracket [largest failed radius, change found] is within tol of the
            change found. Default: 0.01.
        restarts: extra searches per radius from random points in the ball (a non-linear model may hide a
            smaller change from a search that starts at x). Default: 0 (no randomness at all).
        seed: seeds the random starts, so results are the same for a seed. Default: 0.
    Returns:
        dict with "found" (bool), "image" (28,28) float32 in [0,1], "difference" (28,28) float32 signed
        (image - x), "radius" (float, the L2 norm of the difference), "probabilities" (10,) float64 on the
        new image, "prediction" (int), "target", "original_prediction", "original_probabilities" (10,),
        "lower" (the largest radius at which the search failed: no proof that none smaller exists),
        "max_radius", "evaluations" (image gradients spent) and "message" (one line). When the target is
        not reached within max_radius, found is False and the image is the best attempt (largest margin).
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image (1,1,28,28), got shape {tuple(x.shape)}")
    model = _frozen_copy(model)
    x = x.detach().float().clamp(0, 1)                                      # (1,1,28,28)
    with torch.no_grad():
        original = torch.softmax(model(x).float(), dim=1)[0]                # (10,)
    if not 0 <= target < original.numel():
        raise ValueError(f"target must be a class in 0..{original.numel() - 1}, got {target}")
    generator = torch.Generator().manual_seed(seed)
    found, delta, lower, evaluations = int(original.argmax()) == target, torch.zeros_like(x), 0.0, 0
    if not found:
        with torch.enable_grad():                                           # first-order distance estimate
            xg = x.clone().requires_grad_(True)
            margin = _margin(model, xg, target)
            (grad,) = torch.autograd.grad(margin.sum(), xg)
        estimate = float(-margin.detach()) / float(grad.norm().clamp_min(1e-12))
        first = min(max(estimate / 4, 1e-3), max_radius)
        radii = torch.tensor(np.geomspace(first, max_radius, grid) if first < max_radius else [max_radius],
                             dtype=torch.float32)
        upper, best_margin = float("inf"), float("-inf")
        for _ in range(MAX_STAGES):
            starts = [torch.zeros(len(radii), *x.shape[1:])]
            for _ in range(restarts):                                       # random points inside each ball
                noise = torch.randn(len(radii), *x.shape[1:], generator=generator)
                noise = noise * (0.5 * radii / noise.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)
                starts.append((x + noise).clamp(0, 1) - x)
            all_radii = radii.repeat(1 + restarts)                          # (grid * (1 + restarts),)
            reached, failed, deltas, margins, spent = _search(model, x, target, all_radii, torch.cat(starts), steps)
            evaluations += spent
            norms = deltas.flatten(1).norm(dim=1)
            if reached.any():
                i = int(torch.where(reached, norms, torch.tensor(float("inf"))).argmin())
                if float(norms[i]) < upper:
                    found, delta, upper = True, deltas[i:i + 1], float(norms[i])
            elif not found and float(margins.max()) > best_margin:          # the best attempt so far
                i = int(margins.argmax())
                delta, best_margin = deltas[i:i + 1], float(margins[i])
            below = failed & (all_radii < upper)
            if below.any():
                lower = max(lower, float(all_radii[below].max()))
            if not found or upper - lower <= tol * upper:
                break
            radii = torch.linspace(lower, upper, grid + 2)[1:-1]
        if not found:
            lower = max_radius
    image = (x + delta).clamp(0, 1)                                         # (1,1,28,28)
    with torch.no_grad():
        probs = torch.softmax(model(image).float(), dim=1)[0].double()      # (10,)
    prediction = int(probs.argmax())
    difference = (image - x)[0, 0]                                          # (28,28)
    radius = float(difference.double().norm())
    if found:
        message = (f"answer {prediction} reached with an L2 change of {radius:.3f}" if radius > 0
                   else f"the model already answers {target}")
    else:
        message = (f"target {target} not reached within radius {max_radius:g}: the best attempt gives it "
                   f"probability {float(probs[target]):.3f} and the model still answers {prediction}")
    return {"found": bool(found), "image": image[0, 0].numpy().astype(np.float32),
            "difference": difference.numpy().astype(np.float32), "radius": radius,
            "probabilities": probs.numpy(), "prediction": prediction, "target": int(target),
            "original_prediction": int(original.argmax()), "original_probabilities": original.double().numpy(),
            "lower": float(lower), "max_radius": float(max_radius), "evaluations": evaluations, "message": message}


# ----------------------------------------------------------------------------- command line

RAW_IMAGES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}   # official file -> raw name


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="The smallest L2 change to a validation or test image that makes a run's model answer a "
                    "target class. Prints JSON.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run", help="run id or folder")
    p.add_argument("--split", choices=["val", "test"], default="val", help="which saved split the image is from")
    p.add_argument("--index", type=int, required=True, help="position of the example in the split's saved arrays")
    p.add_argument("--target", type=int, required=True, help="the class the model should answer")
    p.add_argument("--epoch", type=int, default=None, help="checkpoint to use (default: the last)")
    p.add_argument("--max-radius", type=float, default=MAX_RADIUS, help="largest L2 change searched")
    p.add_argument("--seed", type=int, default=0, help="seed of the random restarts")
    p.add_argument("--restarts", type=int, default=0, help="random restarts per radius")
    p.add_argument("--runs-dir", default=None, help="runs folder (default: $DIGIT_LENS_RUNS or runs/)")
    p.add_argument("--data-root", default=None, help="MNIST root (default: $DIGIT_LENS_DATA or .data/)")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:                 # a usage error is bad input too: exit 1 (--help exits 0)
        return 0 if e.code == 0 else 1
    runs_dir = Path(args.runs_dir) if args.runs_dir else runs.default_runs_dir()
    try:
        run = runs.existing_run(args.run, runs_dir)
        epochs = runs.checkpoint_epochs(run)
        epoch = args.epoch if args.epoch is not None else (epochs[-1] if epochs else None)
        if epoch not in epochs:
            raise runs.RunError(runs.checkpoint_path(run, epoch or 0), f"missing: the run has epochs {epochs}")
        _, labels, index = runs.split_arrays(runs.load_predictions(run, epoch), args.split,
                                             runs.predictions_path(run, epoch))
        if not 0 <= args.index < len(index):
            raise ValueError(f"--index must be in 0..{len(index) - 1} (the run's {args.split} split holds "
                             f"{len(index)} examples), got {args.index}")
        if not 0 <= args.target <= 9:
            raise ValueError(f"--target must be a class in 0..9, got {args.target}")
        file = runs.load_config(run).data.official_file(args.split)
        row = int(index[args.index])
        raw = load_raw(args.data_root or default_root())[RAW_IMAGES[file]]   # (N,28,28) uint8
        x = torch.from_numpy(raw[row].astype(np.float32) / 255.0)[None, None]  # (1,1,28,28)
        model = runs.load_model(run, epoch)
        started = time.perf_counter()
        r = smallest_change(model, x, args.target, args.max_radius, restarts=args.restarts, seed=args.seed)
        seconds = time.perf_counter() - started
    except (ValueError, runs.RunError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"run": run.name, "epoch": epoch, "split": args.split, "index": args.index,
                      "official_file": file, "official_row": row, "label": int(labels[args.index]),
                      "original_prediction": r["original_prediction"], "target": r["target"], "found": r["found"],
                      "radius": r["radius"], "prediction": r["prediction"],
                      "probabilities": [round(float(v), 6) for v in r["probabilities"]],
                      "message": r["message"], "seconds": round(seconds, 3)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
