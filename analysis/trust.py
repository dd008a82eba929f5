"""How far to trust an attribution map: sanity checks and faithfulness scores. Tables, not plots.

    table = randomization_test(model, x, target=7, method="saliency")   # Adebayo et al. 2018
    passed, sentence = sanity_verdict(table)
    curves = deletion_insertion(model, x[:1], attr[:1], target=7)      # Petsiuk et al. 2018 (RISE)
    deletion_summary(curves)  # {"deletion_auc": ..., "random_deletion_auc": ..., ...}
    infidelity_score(model, x, attr, target=7); sensitivity_score(model, x, 7, "saliency")

* Model randomization (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018): the
  layers with weights (every conv and linear layer the model runs, found by `analysis.layers.discover`)
  are re-initialised one after the other from the top (our Net: fc2, fc1, conv2, conv1, cascading)
  and each time the new map is compared with the original one, as in the paper "with and without
  absolute value": the Spearman rank correlation rho of |map| and of the signed map (over the
  pixels non-zero in either map, see `map_rank_correlation`), and SSIM of |map| scaled to [0,1].
  A method whose map stays similar when the weights are random does not explain the model. So
  does one whose map turns into its mirror image (rho near -1, e.g. max - map): the new map is
  still fixed by the original, that is by the input, not by the weights. The verdict therefore
  judges |rho|: it passes only when both |rho| fall below the threshold.
  Randomization uses a private copy and a fixed seed.
* Deletion / insertion: remove the most attributed pixels first (set them to the baseline) and
  watch the target probability fall; insert them first into the baseline and watch it rise. A
  faithful map makes deletion fall faster than deleting pixels in random order (lower AUC).
* Infidelity (Yeh et al. 2019) and max-sensitivity, through Captum's `infidelity` and
  `sensitivity_max`, with perturbations drawn from private seeded generators.
The given model is never modified (see analysis.attributions for thread safety).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from analysis.attributions import attribute, gaussian_blur, private_copy, target_tensor
from analysis.layers import layers_of
from model.external import set_eval

KINDS = {"spearman": True, "spearman_signed": False}   # table column -> correlate |maps| (True) or signed maps


# ----------------------------------------------------------------------------- similarity of maps

def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two arrays (flattened; ties get average ranks); nan if one is constant."""
    a, b = np.ravel(a), np.ravel(b)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:   # scipy would warn and return nan
        return math.nan
    from scipy.stats import spearmanr   # (here, like skimage and captum below: the dashboard's server never needs them)
    return float(spearmanr(a, b).statistic)


def map_rank_correlation(a: np.ndarray, b: np.ndarray, absolute: bool = True) -> float:
    """Spearman correlation of |a| and |b| (or of a and b, absolute=False) over the pixels non-zero in either.

    Pixels zero in both maps carry no ranking and would inflate the correlation of any two maps:
    the seed CNN never sees the last two rows and columns (its second pool drops them), so every
    gradient map is zero there, and input-multiplied maps are zero on the whole black background.
    """
    a, b = np.ravel(a), np.ravel(b)
    if absolute:
        a, b = np.abs(a), np.abs(b)
    keep = (a != 0) | (b != 0)
    return spearman(a[keep], b[keep]) if keep.sum() > 1 else math.nan


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Mean structural similarity of two 2-D images (Wang et al. 2004): scikit-image's defaults.

    `skimage.metrics.structural_similarity`: a uniform 7x7 window, sample (co)variances, K1=0.01,
    K2=0.03, the mean taken away from a 3-pixel border.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or min(a.shape) < 7:
        raise ValueError(f"ssim needs two 2-D images of equal shape >= 7, got {a.shape}, {b.shape}")
    from skimage.metrics import structural_similarity
    return float(structural_similarity(a, b, data_range=data_range))


def _unit_abs(m: np.ndarray) -> np.ndarray:
    """|map| scaled to [0,1] by its maximum (an all-zero map stays zero)."""
    m = np.abs(m)
    top = m.max()
    return m / top if top > 0 else m


# ----------------------------------------------------------------------------- randomization test

def cascade(model: nn.Module) -> tuple[str, ...]:
    """The model's conv and linear layers from the top (output) down: the order Adebayo et al. randomize in.

    Our Net: ("fc2", "fc1", "conv2", "conv1"); an imported model: its own names, e.g. "net.fc2".
    """
    layers = layers_of(model)
    weighted = set(layers.convs + layers.linears)
    return tuple(layer.name for layer in reversed(layers.order) if layer.name in weighted)


def _reinit(module: nn.Module, g: torch.Generator) -> None:
    """Redraw a layer's weight and bias uniformly in +-1/sqrt(fan_in) (PyTorch's default scale)."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"layer {module.__class__.__name__} has no weight to randomize")
    fan_in = int(np.prod(weight.shape[1:])) if weight.dim() > 1 else weight.numel()
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        for p in module.parameters(recurse=False):
            p.uniform_(-bound, bound, generator=g)     # the same draws as (rand * 2 - 1) * bound, in one pass


def randomization_test(model: nn.Module, inputs: torch.Tensor, target: int | torch.Tensor, method: str,
                       layers: tuple[str, ...] | None = None, weight_seed: int = 0,
                       **options: Any) -> pd.DataFrame:
    """Cascading model-parameter randomization (Adebayo et al. 2018) for one attribution method.

    Args:
        inputs: float (B,1,28,28); target: one class or one per image.
        layers: layers to randomize, top first, cumulatively. Default: `cascade(model)`, every conv and
            linear layer from the top.
        weight_seed: seed of the new random weights. Default: 0.
        **options: passed to `attribute` (e.g. steps for integrated_gradients).
    Returns:
        One row per stage: stage (0 = nothing randomized: the map recomputed on the original model),
        layer (randomized at this stage), randomized ("fc2+fc1", ...), spearman (mean over the images
        of `map_rank_correlation` of |map| with the original), spearman_signed (the same on the signed
        maps), spearman_strength and spearman_signed_strength (mean over the images of |rho|: what
        `sanity_verdict` judges; with one image simply |spearman|), ssim (mean SSIM of |map| scaled
        to [0,1]) and ssim_min (the least similar image).
    """
    modules = dict(model.named_modules())
    layers = cascade(model) if layers is None else tuple(layers)
    missing = [n for n in layers if n not in modules or n == ""]
    if missing:
        raise ValueError(f"layers {missing} are not modules of the model")
    original = attribute(model, inputs, target, method, **options).numpy()       # (B,1,28,28)
    work = set_eval(private_copy(model, share_weights=False))   # its weights will change
    g = torch.Generator().manual_seed(weight_seed)
    rows, done = [], []
    for stage, layer in enumerate(("none",) + layers):
        if layer != "none":
            _reinit(dict(work.named_modules())[layer], g)
            done.append(layer)
        maps = attribute(work, inputs, target, method, **options).numpy()
        row = {"stage": stage, "layer": layer, "randomized": "+".join(done) or "none"}
        for col, absolute in KINDS.items():
            rho = np.array([map_rank_correlation(o, m, absolute) for o, m in zip(original, maps)])
            row[col], row[f"{col}_strength"] = float(np.mean(rho)), float(np.mean(np.abs(rho)))
        sim = [ssim(_unit_abs(o[0]), _unit_abs(m[0])) for o, m in zip(original, maps)]
        rows.append({**row, "ssim": float(np.mean(sim)), "ssim_min": float(np.min(sim))})
    return pd.DataFrame(rows)


def randomization_test_cached(run_dir, epoch: int, image: np.ndarray, method: str, target: int,
                              weight_seed: int = 0, model: nn.Module | None = None, **options: Any) -> pd.DataFrame:
    """`randomization_test` of a run's checkpoint on one image, cached in the run folder.

    Args:
        image: float (28,28) in [0,1]; its bytes' hash is part of the cache key.
        model: the checkpoint's model if the caller has it loaded already (it is not modified);
            default: load it from the run.
        **options: plain (hashable) options for `attribute`.
    Returns:
        The table of `randomization_test`.
    """
    import hashlib

    from analysis.cache import cached, make_key
    from model.runs import load_model

    image = np.ascontiguousarray(image, dtype=np.float32).reshape(28, 28)
    digest = hashlib.sha1(image.tobytes()).hexdigest()[:12]
    key = make_key("randomization", "v2", method, epoch=int(epoch), target=int(target), image=digest,
                   seed=int(weight_seed), **{k: options[k] for k in sorted(options)})

    def compute() -> pd.DataFrame:
        x = torch.from_numpy(image)[None, None]                                   # (1,1,28,28)
        net = model if model is not None else load_model(run_dir, epoch)
        return randomization_test(net, x, int(target), method,
                                  weight_seed=weight_seed, **options)
    return cached(run_dir, key, compute, kind="parquet-or-csv")


_KIND_NAMES = {"spearman": "|map|", "spearman_signed": "signed map"}


def sanity_verdict(table: pd.DataFrame, threshold: float = 0.5) -> tuple[bool, str]:
    """Did the maps change when the model was randomized? (passed, one sentence).

    Passed when, with every listed layer randomized, the mean |rho| of both rank correlations with
    the original map (of |map| and of the signed map, columns spearman_strength and
    spearman_signed_strength) is below `threshold`. Failed when either stays at or above it: a map
    strongly anti-correlated with the original (rho near -1) still follows the input. The sentence
    names the number that decided: the larger |rho|.
    """
    stages = table[table["stage"] > 0]
    if stages.empty:
        return False, "No layer was randomized, so the check says nothing."
    last = stages.iloc[-1]
    strength = {col: float(last[f"{col}_strength"]) for col in KINDS}
    if any(math.isnan(v) for v in strength.values()):
        return False, "The maps were constant, so their change could not be measured."
    decider = max(KINDS, key=lambda col: strength[col])          # the |map| one when tied
    other = next(col for col in KINDS if col != decider)

    def rhos(row: pd.Series) -> str:
        return (f"{float(row[decider]):+.2f} on the {_KIND_NAMES[decider]} "
                f"(|rho| {float(row[f'{decider}_strength']):.2f}, which decided) and "
                f"{float(row[other]):+.2f} on the {_KIND_NAMES[other]}")

    if strength[decider] < threshold:
        below = (stages[[f"{col}_strength" for col in KINDS]] < threshold).all(axis=1)
        first = stages[below].iloc[0]["randomized"]
        since = "" if first == last["randomized"] else f" Both were already below it with {first} randomized."
        return True, (f"Passed: the map depends on the weights: with {last['randomized']} randomized its rank "
                      f"correlation with the original is {rhos(last)}; |rho| {strength[decider]:.2f} is below the "
                      f"threshold {threshold}.{since}")
    anti = (" A strong negative correlation counts too: the new map is still fixed by the original, that is by "
            "the input." if float(last[decider]) < 0 else "")
    return False, (f"Failed: with {last['randomized']} randomized the map's rank correlation with the original is "
                   f"still {rhos(last)}; |rho| {strength[decider]:.2f} is at or above the threshold {threshold} "
                   f"(SSIM {float(last['ssim']):.2f}), so it shows the input more than what the model learned."
                   f"{anti}")


# ----------------------------------------------------------------------------- deletion / insertion

def _probabilities(model: nn.Module, x: torch.Tensor, target: int, chunk: int = 256) -> np.ndarray:
    """Softmax probability of `target` for each image of x (N,1,28,28)."""
    m = set_eval(private_copy(model)) if model.training else model
    with torch.no_grad():
        out = [torch.softmax(m(x[i:i + chunk]), dim=1)[:, target] for i in range(0, x.shape[0], chunk)]
    return torch.cat(out).numpy().astype(np.float64)


def _deletion_batch(x: torch.Tensor, base: torch.Tensor, order: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """For each count k, x with its first k pixels in `order` replaced by the baseline's (K,1,28,28)."""
    flat_x, flat_b = x.reshape(-1), base.reshape(-1)           # (784,)
    out = flat_x.repeat(len(counts), 1)                        # (K,784)
    for row, k in enumerate(counts):
        idx = order[:k]
        out[row, idx] = flat_b[idx]
    return out.view((len(counts),) + tuple(x.shape))


def deletion_insertion(model: nn.Module, input: torch.Tensor, attribution: torch.Tensor, target: int,
                       steps: int = 28, baseline: str = "black", random_seeds: int = 5,
                       blur_sigma: float = 3.0) -> pd.DataFrame:
    """Deletion and insertion curves of one image for one attribution map.

    Args:
        input: float (1,1,28,28) (or (1,28,28)); attribution: its map, same number of pixels.
        steps: the curves have steps+1 points, removing round(fraction * pixels) pixels at each.
        baseline: what a removed pixel becomes: "black" (0) or "blurred" (the blurred input).
        random_seeds: how many random pixel orders the random-deletion baseline averages.
    Returns:
        Columns fraction (0..1), deletion (target probability with the most attributed pixels removed
        first; ties in index order), insertion (the same pixels put first into the baseline image),
        random_deletion (pixels removed in random order, mean over the seeds).
    """
    x = input.detach().float().reshape(1, 1, 28, 28)[0]                     # (1,28,28)
    a = torch.as_tensor(attribution).detach().float().reshape(-1)           # (784,)
    if a.numel() != x.numel():
        raise ValueError(f"attribution has {a.numel()} values, the input {x.numel()} pixels")
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise ValueError(f"target must be one class index, got {target!r}")
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if baseline == "black":
        base = torch.zeros_like(x)
    elif baseline == "blurred":
        base = gaussian_blur(x.unsqueeze(0), blur_sigma)[0]
    else:
        raise ValueError(f"baseline must be 'black' or 'blurred', got {baseline!r}")
    n = x.numel()
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = [int(round(f * n)) for f in fractions]
    order = torch.argsort(a, descending=True, stable=True)                  # most attributed first
    deletion = _probabilities(model, _deletion_batch(x, base, order, counts), int(target))
    insertion = _probabilities(model, _deletion_batch(base, x, order, counts), int(target))
    randoms = []
    for seed in range(int(random_seeds)):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        randoms.append(_probabilities(model, _deletion_batch(x, base, perm, counts), int(target)))
    return pd.DataFrame({"fraction": fractions, "deletion": deletion, "insertion": insertion,
                         "random_deletion": np.mean(randoms, axis=0) if randoms else np.nan})


def curve_auc(fractions: np.ndarray | pd.Series, values: np.ndarray | pd.Series) -> float:
    """Area under a curve by the trapezoid rule."""
    return float(np.trapezoid(np.asarray(values, dtype=np.float64), np.asarray(fractions, dtype=np.float64)))


def deletion_summary(table: pd.DataFrame) -> dict[str, float | bool]:
    """AUCs of a `deletion_insertion` table and whether deletion beats random order (lower AUC)."""
    f = table["fraction"]
    out: dict[str, float | bool] = {
        "deletion_auc": curve_auc(f, table["deletion"]),
        "insertion_auc": curve_auc(f, table["insertion"]),
        "random_deletion_auc": curve_auc(f, table["random_deletion"]),
    }
    out["deletion_gain"] = out["random_deletion_auc"] - out["deletion_auc"]   # > 0: better than random
    out["better_than_random"] = bool(out["deletion_gain"] > 0)
    return out


# ----------------------------------------------------------------------------- Captum metrics

def infidelity_score(model: nn.Module, inputs: torch.Tensor, attribution: torch.Tensor,
                     target: int | torch.Tensor, noise_std: float = 0.003, perturbations: int = 10,
                     perturb_seed: int = 0, normalize: bool = True) -> torch.Tensor:
    """Captum's `infidelity` (Yeh et al. 2019) with Gaussian input perturbations; lower is better.

    Args:
        noise_std: standard deviation of the perturbation I (the score compares I . map with
            f(x) - f(x - I) on the target logit). Default: 0.003.
        perturbations: perturbed copies per image. Default: 10.
        normalize: scale the map optimally first, so maps of different scale compare. Default: True.
    Returns:
        float tensor (B,).
    """
    from captum.metrics import infidelity
    x = inputs.detach().float()
    t = target_tensor(target, x.shape[0])
    g = torch.Generator().manual_seed(perturb_seed)

    def perturb(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.normal(0.0, float(noise_std), batch.shape, generator=g)
        return noise, batch - noise

    m = set_eval(private_copy(model)) if model.training else model
    return infidelity(m, perturb, x, attribution.detach().float(), target=t, n_perturb_samples=int(perturbations),
                      normalize=normalize).detach()


def sensitivity_score(model: nn.Module, inputs: torch.Tensor, target: int | torch.Tensor, method: str,
                      radius: float = 0.02, perturbations: int = 10, perturb_seed: int = 0,
                      **options: Any) -> torch.Tensor:
    """Captum's `sensitivity_max`: the largest relative change of the map under uniform input noise.

    Args:
        radius: the noise is uniform in [-radius, radius] per pixel. Default: 0.02.
        perturbations: perturbed copies per image. Default: 10.
        perturb_seed: seed of the noise (attribution options such as `seed` go to the method).
        **options: passed to `attribute`.
    Returns:
        float tensor (B,): max over samples of ||map(x+e) - map(x)|| / ||map(x)||; lower is steadier.
    """
    from captum.metrics import sensitivity_max
    x = inputs.detach().float()
    t = target_tensor(target, x.shape[0])
    g = torch.Generator().manual_seed(perturb_seed)

    def perturb(batch: torch.Tensor, perturb_radius: float) -> torch.Tensor:
        return batch + (torch.rand(batch.shape, generator=g) * 2 - 1) * perturb_radius

    def explain(batch: torch.Tensor | tuple[torch.Tensor, ...], target: torch.Tensor) -> tuple[torch.Tensor]:
        batch = batch[0] if isinstance(batch, tuple) else batch
        return (attribute(model, batch, target, method, **options),)   # Captum iterates over a tuple

    return sensitivity_max(explain, x, perturb_func=perturb, perturb_radius=float(radius),
                           n_perturb_samples=int(perturbations), target=t).detach()
