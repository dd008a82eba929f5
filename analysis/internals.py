"""Inside the CNN: kernels, activations stage by stage, what excites a unit, embeddings, weight drift.

Everything here reads a model or a run folder and returns plain arrays / DataFrames. Nothing mutates
the model: no hooks are registered, gradients are taken with `torch.autograd.grad` (so parameters'
`.grad` stay untouched), and a model left in training mode is run through a private eval copy.

The forward pass is walked by `_stages`, which mirrors `model.net.Net.forward` step by step
(normalization, conv, the Identity-or-BatchNorm module, ReLU, pool, flatten, dropout-or-Identity,
fc1, ReLU, fc2), so `activations(model, x)["logits"]` equals `model(x)` exactly.

Slow run-level results have cached wrappers (`*_cached`), stored in `<run>/cache/` by
`analysis.cache`, keyed by everything they depend on (run, epoch, settings).
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from analysis.cache import cached, make_key
from model import runs
from model.net import to_input

STAGES = ("input", "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "fc1", "relu3", "logits", "softmax")
CONV_LAYERS = ("conv1", "conv2")
UNIT_LAYERS = ("conv1", "conv2", "fc1")   # layers whose post-ReLU units `top_activating` ranks
RELU_OF = {"conv1": "relu1", "conv2": "relu2", "fc1": "relu3"}
CACHE_VERSION = "v1"


# ----------------------------------------------------------------------------- the forward walk

def eval_model(model: nn.Module) -> nn.Module:
    """The model itself when in eval mode, else a private eval-mode copy (the caller's model is left alone)."""
    return copy.deepcopy(model).eval() if model.training else model


def _stages(model: nn.Module, x: torch.Tensor, stop: str | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (stage, tensor) along Net.forward, batch dimension kept; stop after stage `stop`.

    BatchNorm variants yield "bn1"/"bn2" between conv and ReLU; seed models (Identity there) do not.
    """
    m = model
    yield "input", x                                        # (B,1,28,28) in [0,1]
    h = (x - m.mean) / m.std                                # normalization (identity for the seed)
    for conv, bn, relu, pool in (("conv1", "bn1", "relu1", "pool1"), ("conv2", "bn2", "relu2", "pool2")):
        h = getattr(m, conv)(h)                             # (B,32,26,26) / (B,64,11,11)
        yield conv, h
        if stop == conv:
            return
        bn_module = getattr(m, bn)
        h = bn_module(h)
        if not isinstance(bn_module, nn.Identity):
            yield bn, h
        h = getattr(m, relu)(h)
        yield relu, h
        if stop == relu:
            return
        h = getattr(m, pool)(h)                             # (B,32,13,13) / (B,64,5,5)
        yield pool, h
        if stop == pool:
            return
    h = m.drop1(m.flatten(h))                               # (B,1600)
    h = m.fc1(h)                                            # (B,fc1_units)
    yield "fc1", h
    if stop == "fc1":
        return
    h = m.relu3(h)
    yield "relu3", h
    if stop == "relu3":
        return
    logits = m.fc2(m.drop2(h))                              # (B,10)
    yield "logits", logits
    yield "softmax", torch.softmax(logits, dim=1)


def _stage(model: nn.Module, x: torch.Tensor, name: str) -> torch.Tensor:
    """The tensor of one stage (batch dimension kept), computing no further than needed."""
    out = None
    for stage, t in _stages(model, x, stop=name):
        if stage == name:
            out = t
    if out is None:
        raise ValueError(f"unknown stage {name!r}; stages are {STAGES}")
    return out


def _batches(images: np.ndarray | torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """uint8 images (N,28,28) as model inputs (B,1,28,28), batch by batch (copies: the source may be read-only)."""
    for start in range(0, len(images), batch_size):
        yield to_input(torch.as_tensor(np.array(images[start:start + batch_size], dtype=np.uint8)))


def _as_input(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A single image as a float tensor (1,1,28,28); accepts (28,28), (1,28,28) or (1,1,28,28)."""
    t = torch.as_tensor(x)
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    t = t.float()
    if t.dim() == 2:
        t = t[None, None]
    elif t.dim() == 3:
        t = t[None]
    if t.shape[:2] != (1, 1) or t.dim() != 4:
        raise ValueError(f"expected one image (1,1,H,W), got shape {tuple(torch.as_tensor(x).shape)}")
    return t


def activations(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every stage of the forward pass for one image, in order, without the batch dimension.

    Args:
        model: a `Net` (eval mode; a model in training mode is run through an eval copy).
        x: one image (1,1,28,28) float in [0,1] (also accepted: (28,28), (1,28,28), uint8).
    Returns:
        {"input": (1,28,28), "conv1": (32,26,26), "relu1", "pool1": (32,13,13), "conv2": (64,11,11),
         "relu2", "pool2": (64,5,5), "fc1": (fc1_units,) before ReLU, "relu3": fc1 after ReLU,
         "logits": (10,), "softmax": (10,)}; BatchNorm variants add "bn1"/"bn2" after each conv.
    """
    model = eval_model(model)
    with torch.no_grad():
        return {name: t[0].detach() for name, t in _stages(model, _as_input(x))}


# ----------------------------------------------------------------------------- kernels

def conv_kernels(run_dir: Path | str, epoch: int, layer: str = "conv1") -> np.ndarray:
    """The conv kernels of a checkpoint: conv1 (32,3,3) (the single input channel squeezed), conv2 (64,32,3,3)."""
    if layer not in CONV_LAYERS:
        raise ValueError(f"layer must be one of {CONV_LAYERS}, got {layer!r}")
    w = runs.load_state_dict(run_dir, epoch)[f"{layer}.weight"].float().numpy()   # (out,in,3,3)
    return w[:, 0] if layer == "conv1" else w


def conv1_input(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """The (28,28) image conv1 actually sees: x itself, or (x - mean) / std for a `normalize=True` model."""
    with torch.no_grad():
        return ((_as_input(x) - model.mean) / model.std)[0, 0].numpy()


def conv1_window(x: torch.Tensor | np.ndarray, kernel: torch.Tensor | np.ndarray, bias: float,
                 row: int, col: int) -> dict:
    """The multiply-and-sum behind one conv1 output pixel: window * kernel, summed, plus bias.

    Args:
        x: the image conv1 sees, (28,28) or (1,1,28,28): `conv1_input(model, x)` (the input
            itself unless the model normalizes).
        kernel: one conv1 kernel, (3,3) or (1,3,3).
        bias: that kernel's bias.
        row, col: the output pixel, 0 <= row, col < 26 (the window is x[row:row+3, col:col+3]).
    Returns:
        {"window": (3,3), "kernel": (3,3), "products": (3,3), "sum": float (products summed),
         "bias": float, "output": float (sum + bias, the conv1 output at (row, col))}; float64.
    """
    img = torch.as_tensor(x).detach().cpu().double().numpy()
    img = img.reshape(img.shape[-2:])                         # (H,W)
    k = torch.as_tensor(kernel).detach().cpu().double().numpy().reshape(3, 3)
    h, w = img.shape
    if not (0 <= row <= h - 3 and 0 <= col <= w - 3):
        raise ValueError(f"(row, col) = ({row}, {col}) outside the {h - 2}x{w - 2} conv1 output")
    window = img[row:row + 3, col:col + 3]
    products = window * k
    total = float(products.sum())
    b = float(bias)
    return {"window": window, "kernel": k, "products": products, "sum": total, "bias": b, "output": total + b}


def conv1_at(model: nn.Module, x: torch.Tensor | np.ndarray, channel: int, row: int, col: int) -> dict:
    """One conv1 unit of a model explained: `conv1_window` on the image conv1 sees, with that kernel and bias.

    Args:
        model: a `Net`.
        x: one image (28,28) (uint8, or float in [0,1]) or (1,1,28,28).
        channel: the conv1 channel (its kernel's number).
        row, col: the unit's position in the channel's 26x26 map.
    Returns:
        `conv1_window`'s dict plus "seen": the (28,28) image conv1 sees (`conv1_input`), float64.
        "output" equals `model.conv1(seen)[0, channel, row, col]`.
    """
    seen = conv1_input(model, x).astype(np.float64)
    weight, bias = model.conv1.weight.detach()[channel, 0], float(model.conv1.bias.detach()[channel])
    return {**conv1_window(seen, weight, bias, row, col), "seen": seen}


def strongest_position(fmap: np.ndarray) -> tuple[int, int]:
    """(row, col) of the largest value of a map (H,W); the first one in reading order on ties."""
    m = np.asarray(fmap)
    r, c = np.unravel_index(int(np.argmax(m)), m.shape)
    return int(r), int(c)


def active_units(values: np.ndarray) -> int:
    """How many units are active (> 0), e.g. of fc1 after its ReLU."""
    return int((np.asarray(values) > 0).sum())


# ----------------------------------------------------------------------------- what excites a unit

def unit_scores(model: nn.Module, images: np.ndarray | torch.Tensor, layer: str = "conv2",
                batch_size: int = 500) -> np.ndarray:
    """Every unit's score on every image: (N, units) float32.

    A conv channel's score is the max of its post-ReLU activation map; an fc1 unit's its post-ReLU value.
    Args:
        images: uint8 (N,28,28).
        layer: "conv1", "conv2" or "fc1".
    """
    if layer not in UNIT_LAYERS:
        raise ValueError(f"layer must be one of {UNIT_LAYERS}, got {layer!r}")
    model = eval_model(model)
    out = []
    with torch.no_grad():
        for x in _batches(images, batch_size):
            a = _stage(model, x, RELU_OF[layer])             # (B,C,H,W) or (B,units)
            out.append((a.flatten(2).amax(dim=2) if a.dim() == 4 else a).numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k highest scores, highest first, ties by lower index."""
    order = np.argsort(-scores, kind="stable")[:k]
    return order.astype(np.int64), scores[order].astype(np.float32)


def top_activating(model: nn.Module, images: np.ndarray | torch.Tensor, layer: str = "conv2",
                   channel: int = 0, k: int = 9, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """The k images that excite one unit most: score = max of the channel's post-ReLU activation map.

    Args:
        images: uint8 (N,28,28).
        layer: "conv1", "conv2" or "fc1" (for fc1, `channel` is the unit and the score its value).
    Returns:
        (indices (k,) int64 into images, scores (k,) float32), highest score first; ties keep the
        lower index first.
    """
    scores = unit_scores(model, images, layer, batch_size)
    return _top_k(scores[:, channel] if len(scores) else np.zeros(0, np.float32), k)


def _blur(x: torch.Tensor) -> torch.Tensor:
    """A 3x3 Gaussian blur (sigma ~0.85) of (1,1,H,W), edges replicated."""
    g = torch.tensor([0.25, 0.5, 0.25])
    kernel = (g[:, None] * g[None, :])[None, None]           # (1,1,3,3), sums to 1
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel)


def _objective(model: nn.Module, x: torch.Tensor, target: tuple[str, int], where: str = "mean") -> torch.Tensor:
    """The scalar to maximize: a class logit, or the pre-ReLU map of a conv channel (its mean, or its
    centre unit when where="center") / an fc1 unit."""
    kind, index = target
    if kind == "class":
        return model(x)[0, index]                            # any classifier: logits (1,C)
    if kind in UNIT_LAYERS:
        relu = RELU_OF[kind]
        # the input of the ReLU (after BatchNorm when present): gives a gradient even where the ReLU is off
        for name, t in _stages(model, x, stop=relu):
            if name == relu:
                break
            h = t
        unit = h[0, index]
        if where == "center" and unit.dim() == 2:           # one spatial position: a localized pattern
            return unit[unit.shape[0] // 2, unit.shape[1] // 2]
        return unit.mean()
    raise ValueError(f"target must be ('class', c) or (layer, channel) with layer in {UNIT_LAYERS}, got {target!r}")


def activation_maximization(model: nn.Module, target: tuple[str, int], steps: int = 200, lr: float = 0.1,
                            l2: float = 1e-3, blur_every: int = 4, seed: int = 0,
                            where: str = "mean") -> np.ndarray:
    """An input image that excites a target, found by gradient ascent on the input.

    Starts from grey 0.5 plus small seeded noise; each step moves the image along Adam's update
    for `objective - l2 * ||x||^2`, clamps it to [0,1], and every `blur_every` steps blurs it a
    little (a simple smoothness prior that keeps the result from being pixel noise).

    Args:
        model: a `Net`; for ("class", c) targets any module returning logits (1,C) will do.
        target: ("class", c) maximizes logit c; ("conv2", ch) / ("conv1", ch) the mean of that
            channel's map before ReLU; ("fc1", unit) that unit before ReLU.
        steps: gradient steps; 0 returns the starting image. Default: 200.
        lr: Adam's step size. Default: 0.1.
        l2: weight of the L2 penalty on the image. Default: 1e-3.
        blur_every: blur every this many steps (0: never). Default: 4.
        seed: seeds the starting noise; the same seed gives the same image. Default: 0.
        where: for conv targets, "mean" maximizes the mean of the channel's whole map (for a
            channel that likes ink this just fills the field with a texture); "center" maximizes
            the one unit in the middle of the map, which gives the pattern in its receptive field
            on a black surround (the L2 penalty darkens the pixels it cannot see). Default: "mean".
    Returns:
        (28,28) float32 in [0,1].
    """
    model = eval_model(model)
    gen = torch.Generator().manual_seed(seed)
    x = (0.5 + 0.05 * torch.randn(1, 1, 28, 28, generator=gen)).clamp(0, 1).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    for step in range(1, steps + 1):
        with torch.enable_grad():                           # works inside a caller's torch.no_grad()
            loss = -_objective(model, x, target, where) + l2 * (x ** 2).sum()
            (grad,) = torch.autograd.grad(loss, x)          # parameters' .grad stay untouched
        x.grad = grad
        opt.step()
        with torch.no_grad():
            if blur_every and step % blur_every == 0:
                x.copy_(_blur(x))
            x.clamp_(0, 1)
    return x.detach()[0, 0].numpy().astype(np.float32)


# ----------------------------------------------------------------------------- embeddings

def embeddings(model: nn.Module, images: np.ndarray | torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """The penultimate representation (fc1 after ReLU) of uint8 images (N,28,28): (N, fc1_units) float32."""
    model = eval_model(model)
    out = []
    with torch.no_grad():
        for x in _batches(images, batch_size):
            out.append(_stage(model, x, "relu3").numpy())   # (B,fc1_units)
    return np.concatenate(out) if out else np.zeros((0, model.fc1.out_features), np.float32)


def project_2d(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Project features (N,D) to (N,2) with sklearn's PCA or t-SNE (after PCA to 50 dims), seeded."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    f = np.asarray(features, dtype=np.float32)
    if f.ndim != 2 or len(f) < 3:
        raise ValueError(f"need a matrix of at least 3 rows, got shape {f.shape}")
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(f).astype(np.float32)
    if method == "tsne":
        if f.shape[1] > 50 and len(f) > 50:
            f = PCA(n_components=50, random_state=seed).fit_transform(f)
        perplexity = min(30.0, (len(f) - 1) / 3)
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
        return tsne.fit_transform(f).astype(np.float32)
    raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")


# ----------------------------------------------------------------------------- weights over training

def weight_norms(run_dir: Path | str) -> pd.DataFrame:
    """The L2 (Frobenius) norm of each layer's weight at every checkpoint: columns epoch, layer, norm."""
    rows = []
    for epoch in runs.checkpoint_epochs(run_dir):
        state = runs.load_state_dict(run_dir, epoch)
        for name, t in state.items():
            if name.endswith(".weight") and t.dim() >= 2:    # conv and linear weights (not BatchNorm scales)
                rows.append({"epoch": epoch, "layer": name[:-len(".weight")],
                             "norm": float(torch.linalg.vector_norm(t.double()))})
    return pd.DataFrame(rows, columns=["epoch", "layer", "norm"])


def kernel_drift(run_dir: Path | str, layer: str = "conv1") -> pd.DataFrame:
    """How far each kernel moves: columns epoch, kernel, from_previous, from_first (L2 distances).

    `from_previous` compares with the previous checkpoint (NaN at the first), `from_first` with the
    first checkpoint (epoch 1 for runs made by the trainer; 0 there).
    """
    epochs = runs.checkpoint_epochs(run_dir)
    rows, first, prev = [], None, None
    for epoch in epochs:
        k = conv_kernels(run_dir, epoch, layer).astype(np.float64)
        k = k.reshape(len(k), -1)                             # (kernels, weights per kernel)
        first = k if first is None else first
        d_prev = np.linalg.norm(k - prev, axis=1) if prev is not None else np.full(len(k), np.nan)
        d_first = np.linalg.norm(k - first, axis=1)
        for f in range(len(k)):
            rows.append({"epoch": epoch, "kernel": f, "from_previous": d_prev[f], "from_first": d_first[f]})
        prev = k
    return pd.DataFrame(rows, columns=["epoch", "kernel", "from_previous", "from_first"])


def mean_drift(drift: pd.DataFrame, column: str = "from_previous") -> pd.Series:
    """The mean over kernels of a `kernel_drift` column at each epoch (epochs where it is NaN left out)."""
    return drift.dropna(subset=[column]).groupby("epoch")[column].mean()


# ----------------------------------------------------------------------------- cached run-level results

def _images(split: str) -> np.ndarray:
    """uint8 images of an official file: "test" (t10k) or "train"."""
    from data.mnist import load_raw
    name = {"test": "t10k-images-idx3-ubyte", "train": "train-images-idx3-ubyte"}[split]
    return load_raw()[name]


def _labels(split: str) -> np.ndarray:
    from data.mnist import load_raw
    name = {"test": "t10k-labels-idx1-ubyte", "train": "train-labels-idx1-ubyte"}[split]
    return load_raw()[name]


def embedding_2d_cached(run_dir: Path | str, epoch: int, method: str = "pca", n: int = 2000,
                        seed: int = 0) -> dict[str, np.ndarray]:
    """2-D map of the first n test images' fc1 embeddings at an epoch, cached in the run folder.

    Returns:
        {"xy": (n,2) float32, "index": (n,) int32 into the official test file, "labels": (n,) uint8}.
    """
    def compute() -> dict[str, np.ndarray]:
        images, labels = _images("test")[:n], _labels("test")[:n]
        xy = project_2d(embeddings(runs.load_model(run_dir, epoch), images), method, seed)
        return {"xy": xy, "index": np.arange(len(images), dtype=np.int32), "labels": labels.astype(np.uint8)}
    key = make_key("embedding2d", CACHE_VERSION, method, epoch=epoch, n=n, seed=seed)
    return cached(run_dir, key, compute, kind="npz")


def activation_maximization_cached(run_dir: Path | str, epoch: int, target: tuple[str, int], steps: int = 200,
                                   lr: float = 0.1, l2: float = 1e-3, blur_every: int = 4,
                                   seed: int = 0, where: str = "mean") -> np.ndarray:
    """`activation_maximization` for a run's checkpoint, cached in the run folder: (28,28) float32."""
    extra = {} if where == "mean" else {"where": where}      # old cache entries stay valid
    key = make_key("actmax", CACHE_VERSION, target[0], target[1], epoch=epoch, steps=steps, lr=lr, l2=l2,
                   blur=blur_every, seed=seed, **extra)
    return cached(run_dir, key, lambda: activation_maximization(
        runs.load_model(run_dir, epoch), target, steps, lr, l2, blur_every, seed, where), kind="npz")


def top_activating_cached(run_dir: Path | str, epoch: int, layer: str = "conv2", channel: int = 0, k: int = 9,
                          n: int = 10000) -> tuple[np.ndarray, np.ndarray]:
    """`top_activating` over the first n official test images, cached: (indices into t10k, scores).

    One pass scores every channel of the layer; the top k of all channels are cached together, so
    browsing channels costs one computation per (epoch, layer, k, n).
    """
    def compute() -> dict[str, np.ndarray]:
        scores = unit_scores(runs.load_model(run_dir, epoch), _images("test")[:n], layer)   # (n, units)
        tops = [_top_k(scores[:, c], k) for c in range(scores.shape[1])]
        return {"indices": np.stack([t[0] for t in tops]), "scores": np.stack([t[1] for t in tops])}
    key = make_key("topact", CACHE_VERSION, layer, epoch=epoch, k=k, n=n)
    out = cached(run_dir, key, compute, kind="npz")
    return out["indices"][channel], out["scores"][channel]
