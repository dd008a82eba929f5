"""Inside the CNN: kernels, activations stage by stage, what excites a unit, embeddings, weight drift.

Works for any network that takes (B,1,28,28) images in [0,1] and returns logits: our `model.net.Net`
or an imported one (model.external.Wrapped, whose layers are named "net.<name>"). Nothing assumes
the names conv1/conv2/fc1: the layers are found by `analysis.layers.discover`, once per model object
(`analysis.layers.layers_of`):
  * stages: every leaf module's output for one image, in forward order (`activations`);
  * unit layers: every conv layer and every linear layer but the final one. A unit's score is the
    max over its map of the layer's output after the non-linearity that follows the layer
    (`activation_of`; BatchNorm in between included), or of the layer's output when none follows;
    activation maximisation climbs the input of that non-linearity (so the gradient never vanishes
    where a ReLU is off). The default layer is the last conv layer;
  * the embedding: what the final Linear layer reads (the penultimate representation).

Nothing mutates the model: hooks only go on a private copy that shares the weights
(`analysis.attributions.private_copy`, in eval mode), gradients are taken with
`torch.autograd.grad` (so parameters' `.grad` stay untouched). Safe on a model shared by threads.

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
from analysis.layers import Layers, conv_at, embedding_of, layer_input_output, layers_of, stages
from model import runs
from model.external import set_eval
from model.net import to_input

# the stages of our own Net (seed variant; BatchNorm variants add "bn1"/"bn2" after each conv)
STAGES = ("input", "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "fc1", "relu3", "fc2", "logits", "softmax")
CACHE_VERSION = "v1"


def eval_model(model: nn.Module) -> nn.Module:
    """The model itself when in eval mode, else a private eval-mode copy (the caller's model is left alone)."""
    return set_eval(copy.deepcopy(model)) if model.training else model


def _work_copy(model: nn.Module) -> nn.Module:
    """A private eval-mode copy sharing the model's weights: hooks go on it, never on the caller's model."""
    from analysis.attributions import private_copy   # attributions imports this module
    return set_eval(private_copy(model))


def unit_layer(model: nn.Module, layer: str | None = None) -> str:
    """The unit layer `layer` names (None: the last conv layer); ValueError listing the valid names."""
    layers = layers_of(model)
    if layer is None:
        if not layers.convs:
            raise ValueError(f"the model has no conv layer; unit layers are {list(layers.unit_layers)}")
        return layers.convs[-1]
    if layer not in layers.unit_layers:
        raise ValueError(f"layer must be one of {list(layers.unit_layers)}, got {layer!r}")
    return layer


class _Stop(Exception):
    """Raised by a hook once the wanted tensors are captured: the rest of the forward pass is not needed."""


def _unit_tensors(work: nn.Module, x: torch.Tensor, layer: str,
                  activation: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(objective, score map) of a unit layer for a batch x, both (B,C,H,W) or (B,units).

    With a non-linearity after the layer: its input (after any BatchNorm) and its output, at its first
    call after the layer's (a module reused earlier is skipped); else the layer's output twice. Hooks
    go on `work`, a private copy; gradients flow when enabled.
    """
    modules = dict(work.named_modules())
    got: dict[str, torch.Tensor] = {}

    def on_layer(m: nn.Module, i: tuple, o: torch.Tensor) -> None:
        if "layer" not in got:
            got["layer"] = o
            if activation is None:
                raise _Stop

    def before_act(m: nn.Module, i: tuple) -> None:
        if "layer" in got and "pre" not in got:
            got["pre"] = i[0].clone()                     # an in-place non-linearity would overwrite it

    def on_act(m: nn.Module, i: tuple, o: torch.Tensor) -> None:
        if "pre" in got:
            got["post"] = o
            raise _Stop

    hooks = [modules[layer].register_forward_hook(on_layer)]
    if activation is not None:
        hooks += [modules[activation].register_forward_pre_hook(before_act),
                  modules[activation].register_forward_hook(on_act)]
    try:
        work(x)
    except _Stop:
        pass
    finally:
        for h in hooks:
            h.remove()
    if activation is None:
        if "layer" not in got:
            raise ValueError(f"layer {layer!r} did not run in a forward pass")
        return got["layer"], got["layer"]
    if "post" not in got:
        raise ValueError(f"{activation!r} did not run after layer {layer!r}")
    return got["pre"], got["post"]


# ----------------------------------------------------------------------------- the forward walk

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

    `analysis.layers.stages` on a private eval-mode copy of the model.
    Args:
        model: any classifier (B,1,28,28) -> (B,10) logits; a model in training mode is run in eval mode.
        x: one image (1,1,28,28) float in [0,1] (also accepted: (28,28), (1,28,28), uint8).
    Returns:
        {"input": (1,28,28), <layer>: its output for each leaf module that changes values, "logits": (10,)
        (exactly model(x)[0]), "softmax": (10,)}. For our Net: "conv1": (32,26,26), "relu1", "pool1":
        (32,13,13), "conv2": (64,11,11), "relu2", "pool2": (64,5,5), "fc1": (fc1_units,) before ReLU,
        "relu3": after it, "fc2": (10,) (STAGES); BatchNorm variants add "bn1"/"bn2" after each conv.
    """
    return stages(_work_copy(model), _as_input(x))


# ----------------------------------------------------------------------------- kernels

def conv_layers(run_dir: Path | str, epoch: int) -> list[str]:
    """The conv layers of a run's model at an epoch, in forward order (e.g. ["conv1", "conv2"])."""
    return list(layers_of(runs.load_model(run_dir, epoch)).convs)


def _conv_weight(model: nn.Module, layer: str | None) -> np.ndarray:
    """The weight (out,in,kh,kw) of a conv layer of the model (None: the first one in forward order)."""
    if layer is None:
        convs = layers_of(model).convs
        if not convs:
            raise ValueError("the model has no conv layer")
        layer = convs[0]
    conv = dict(model.named_modules()).get(layer)
    if not isinstance(conv, nn.Conv2d) or layer == "":
        names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        raise ValueError(f"layer must be a conv layer of the model, one of {names}; got {layer!r}")
    return conv.weight.detach().float().numpy().copy()


def _checkpoint_weight(run_dir: Path | str, epoch: int, layer: str) -> np.ndarray | None:
    """A conv layer's weight (out,in,kh,kw) straight from the checkpoint, or None when no 4-D tensor has its name.

    The checkpoint holds the network's own names: ours ("conv1.weight"), or an imported network's, which
    analysis sees inside model.external.Wrapped as "net.<name>".
    """
    if runs.load_config(run_dir).source is not None:
        if not layer.startswith("net."):
            return None
        layer = layer.removeprefix("net.")
    w = runs.load_state_dict(run_dir, epoch).get(f"{layer}.weight")
    return w.float().numpy() if w is not None and w.dim() == 4 else None


def conv_kernels(run_dir: Path | str, epoch: int, layer: str | None = None,
                 model: nn.Module | None = None) -> np.ndarray:
    """The kernels of one conv layer of a checkpoint (None: the first conv layer in forward order).

    Read from the checkpoint file when the layer is named; the model is loaded only to find the first conv
    layer or a layer the checkpoint names differently (pass `model` if the caller has it loaded).
    Returns:
        (out,kh,kw) when each kernel has one input channel (the axis squeezed; our conv1: (32,3,3)),
        else (out,in,kh,kw) (our conv2: (64,32,3,3)); float32.
    """
    w = _checkpoint_weight(run_dir, epoch, layer) if layer is not None and model is None else None
    if w is None:
        w = _conv_weight(model if model is not None else runs.load_model(run_dir, epoch), layer)   # (out,in,kh,kw)
    return w[:, 0] if w.shape[1] == 1 else w


def conv1_input(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """The image the first conv layer actually sees: x itself, or (x - mean) / std for a normalising model.

    Returns:
        (H,W) for a one-channel input (our Net: (28,28)), else (C,H,W); float32.
    """
    first = _first_conv(model)
    seen, _ = layer_input_output(_work_copy(model), _as_input(x), first)
    seen = seen[0].numpy()                                          # (C,H,W)
    return seen[0] if seen.shape[0] == 1 else seen


def _first_conv(model: nn.Module) -> str:
    convs = layers_of(model).convs
    if not convs:
        raise ValueError("the model has no conv layer")
    return convs[0]


def conv1_window(x: torch.Tensor | np.ndarray, kernel: torch.Tensor | np.ndarray, bias: float,
                 row: int, col: int) -> dict:
    """The multiply-and-sum behind one output pixel of a 3x3 conv without padding: window * kernel, summed, plus bias.

    Args:
        x: the image the conv sees, (28,28) or (1,1,28,28): `conv1_input(model, x)` (the input
            itself unless the model normalizes).
        kernel: one kernel, (3,3) or (1,3,3).
        bias: that kernel's bias.
        row, col: the output pixel, 0 <= row, col < 26 (the window is x[row:row+3, col:col+3]).
    Returns:
        {"window": (3,3), "kernel": (3,3), "products": (3,3), "sum": float (products summed),
         "bias": float, "output": float (sum + bias, the conv output at (row, col))}; float64.
        Any kernel size, padding or stride: `conv_unit`.
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


def conv_unit(model: nn.Module, x: torch.Tensor | np.ndarray, layer: str, channel: int, row: int, col: int) -> dict:
    """One unit of any conv layer computed by hand (`analysis.layers.conv_at`) from the input that layer received.

    Args:
        x: one image (28,28) (uint8, or float in [0,1]) or (1,1,28,28).
        layer: a conv layer of the model (any kernel size, padding, stride, dilation, groups).
        channel, row, col: the unit.
    Returns:
        {"window", "kernel", "products": (C,kh,kw), "sum", "bias", "output": float, "seen": the layer's
        input (C_in,H,W)}, float64; "output" equals the layer's output at (channel, row, col).
    """
    return conv_at(_work_copy(model), _as_input(x), layer, channel, row, col)


def conv1_at(model: nn.Module, x: torch.Tensor | np.ndarray, channel: int, row: int, col: int) -> dict:
    """One unit of the model's first conv layer explained: `conv_unit`, the input-channel axis squeezed.

    Args:
        model: any classifier; for our Net the layer is conv1 (3x3, no padding).
        x: one image (28,28) (uint8, or float in [0,1]) or (1,1,28,28).
        channel: the conv channel (its kernel's number).
        row, col: the unit's position in the channel's map (our conv1: 26x26).
    Returns:
        {"window", "kernel", "products": (kh,kw) for a one-channel input (else (C,kh,kw)), "sum", "bias",
        "output": float, "seen": the image the layer sees, (28,28) for one channel (`conv1_input`)}, float64.
        "output" equals the layer's output at (channel, row, col) (for our Net `model.conv1(seen)`).
    """
    out = conv_unit(model, x, _first_conv(model), channel, row, col)
    if out["window"].shape[0] == 1:
        out.update({k: out[k][0] for k in ("window", "kernel", "products")})
    if out["seen"].shape[0] == 1:
        out["seen"] = out["seen"][0]
    return out


def strongest_position(fmap: np.ndarray) -> tuple[int, int]:
    """(row, col) of the largest value of a map (H,W); the first one in reading order on ties."""
    m = np.asarray(fmap)
    r, c = np.unravel_index(int(np.argmax(m)), m.shape)
    return int(r), int(c)


def active_units(values: np.ndarray) -> int:
    """How many units are active (> 0), e.g. of fc1 after its ReLU."""
    return int((np.asarray(values) > 0).sum())


# ----------------------------------------------------------------------------- what excites a unit

def unit_scores(model: nn.Module, images: np.ndarray | torch.Tensor, layer: str | None = None,
                batch_size: int = 500) -> np.ndarray:
    """Every unit's score on every image: (N, units) float32.

    A conv channel's score is the max of its map after the layer's non-linearity (for our Net: the
    post-ReLU map); a linear unit's its value after it. Without a non-linearity: the layer's output.
    Args:
        images: uint8 (N,28,28).
        layer: one of `layers_of(model).unit_layers` (our Net: "conv1", "conv2", "fc1"); None: the
            last conv layer. Default: None.
    """
    layer = unit_layer(model, layer)
    layers = layers_of(model)
    activation = layers.activation_of.get(layer)
    work = _work_copy(model)
    out = []
    with torch.no_grad():
        for x in _batches(images, batch_size):
            _, a = _unit_tensors(work, x, layer, activation)    # (B,C,H,W) or (B,units)
            out.append((a.flatten(2).amax(dim=2) if a.dim() > 2 else a).numpy())
    if not out:
        return np.zeros((0, layers.get(layer).out_shape[0]), np.float32)
    return np.concatenate(out).astype(np.float32)


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k highest scores, highest first, ties by lower index."""
    order = np.argsort(-scores, kind="stable")[:k]
    return order.astype(np.int64), scores[order].astype(np.float32)


def top_activating(model: nn.Module, images: np.ndarray | torch.Tensor, layer: str | None = None,
                   channel: int = 0, k: int = 9, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """The k images that excite one unit most (score: see `unit_scores`).

    Args:
        images: uint8 (N,28,28).
        layer: a unit layer (for a linear layer, `channel` is the unit); None: the last conv layer.
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


def _objective(work: nn.Module, x: torch.Tensor, target: tuple[str, int], layers: Layers | None,
               where: str = "mean") -> torch.Tensor:
    """The scalar to maximize: a class logit, or a unit layer's channel before its non-linearity (the mean
    of a conv map, or its centre unit when where="center"; a linear unit's value)."""
    kind, index = target
    if kind == "class":
        return work(x)[0, index]                             # any classifier: logits (1,C)
    # the input of the non-linearity (after BatchNorm when present): a gradient even where a ReLU is off
    h, _ = _unit_tensors(work, x, kind, layers.activation_of.get(kind))
    unit = h[0, index]
    if where == "center" and unit.dim() == 2:               # one spatial position: a localized pattern
        return unit[unit.shape[0] // 2, unit.shape[1] // 2]
    return unit.mean()


def _target(model: nn.Module, target: tuple[str | None, int]) -> tuple[tuple[str, int], Layers | None]:
    """The target with its layer resolved (None: the last conv), and the model's layers for a unit target."""
    if not (isinstance(target, (tuple, list)) and len(target) == 2):
        raise ValueError(f"target must be ('class', c) or (layer, channel), got {target!r}")
    if target[0] == "class":
        return ("class", int(target[1])), None
    return (unit_layer(model, target[0]), int(target[1])), layers_of(model)


def activation_maximization(model: nn.Module, target: tuple[str | None, int], steps: int = 200, lr: float = 0.1,
                            l2: float = 1e-3, blur_every: int = 4, seed: int = 0,
                            where: str = "mean") -> np.ndarray:
    """An input image that excites a target, found by gradient ascent on the input.

    Starts from grey 0.5 plus small seeded noise; each step moves the image along Adam's update
    for `objective - l2 * ||x||^2`, clamps it to [0,1], and every `blur_every` steps blurs it a
    little (a simple smoothness prior that keeps the result from being pixel noise).

    Args:
        model: any classifier (B,1,28,28) -> (B,C) logits.
        target: ("class", c) maximizes logit c; (layer, ch) with a unit layer (see `unit_scores`; our
            Net: "conv1", "conv2", "fc1"; None: the last conv layer) the mean of that channel's map
            before its non-linearity (a linear layer: that unit before it).
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
    target, layers = _target(model, target)
    work = _work_copy(model)
    gen = torch.Generator().manual_seed(seed)
    x = (0.5 + 0.05 * torch.randn(1, 1, 28, 28, generator=gen)).clamp(0, 1).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    for step in range(1, steps + 1):
        with torch.enable_grad():                           # works inside a caller's torch.no_grad()
            loss = -_objective(work, x, target, layers, where) + l2 * (x ** 2).sum()
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
    """The penultimate representation of uint8 images (N,28,28): what the final Linear layer reads, (N, features).

    For our Net: fc1 after its ReLU, (N, fc1_units) float32 (`analysis.layers.embedding_of`).
    """
    layers = layers_of(model)
    if layers.final is None:
        raise ValueError("the model has no Linear layer: no penultimate representation to show")
    work = _work_copy(model)
    out = [embedding_of(work, x, layers).numpy() for x in _batches(images, batch_size)]   # (B,features)
    return np.concatenate(out) if out else np.zeros((0, int(np.prod(layers.get(layers.final).in_shape))), np.float32)


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


def kernel_drift(run_dir: Path | str, layer: str | None = None) -> pd.DataFrame:
    """How far each kernel of a conv layer moves: columns epoch, kernel, from_previous, from_first (L2 distances).

    `layer`: any conv layer of the run's model (None: the first one).

    `from_previous` compares with the previous checkpoint (NaN at the first), `from_first` with the
    first checkpoint (epoch 1 for runs made by the trainer; 0 there).
    """
    epochs = runs.checkpoint_epochs(run_dir)
    if layer is None and epochs:
        layer = _first_conv(runs.load_model(run_dir, epochs[0]))   # named once; each epoch then read from its file
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

class _Lazy:
    """A run's model at an epoch, loaded on the first call only (a cache hit needs no model)."""

    def __init__(self, run_dir: Path | str, epoch: int):
        self.run_dir, self.epoch, self.model = run_dir, epoch, None

    def __call__(self) -> nn.Module:
        if self.model is None:
            self.model = runs.load_model(self.run_dir, self.epoch)
        return self.model


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
    """2-D map of the first n test images' embeddings (`embeddings`) at an epoch, cached in the run folder.

    Returns:
        {"xy": (n,2) float32, "index": (n,) int32 into the official test file, "labels": (n,) uint8}.
    """
    def compute() -> dict[str, np.ndarray]:
        images, labels = _images("test")[:n], _labels("test")[:n]
        xy = project_2d(embeddings(runs.load_model(run_dir, epoch), images), method, seed)
        return {"xy": xy, "index": np.arange(len(images), dtype=np.int32), "labels": labels.astype(np.uint8)}
    key = make_key("embedding2d", CACHE_VERSION, method, epoch=epoch, n=n, seed=seed)
    return cached(run_dir, key, compute, kind="npz")


def activation_maximization_cached(run_dir: Path | str, epoch: int, target: tuple[str | None, int], steps: int = 200,
                                   lr: float = 0.1, l2: float = 1e-3, blur_every: int = 4,
                                   seed: int = 0, where: str = "mean") -> np.ndarray:
    """`activation_maximization` for a run's checkpoint, cached in the run folder: (28,28) float32."""
    model = _Lazy(run_dir, epoch)
    if target[0] is None:                                    # the last conv layer, named in the key
        target = (unit_layer(model(), None), target[1])
    extra = {} if where == "mean" else {"where": where}      # old cache entries stay valid
    key = make_key("actmax", CACHE_VERSION, target[0], target[1], epoch=epoch, steps=steps, lr=lr, l2=l2,
                   blur=blur_every, seed=seed, **extra)
    return cached(run_dir, key, lambda: activation_maximization(
        model(), target, steps, lr, l2, blur_every, seed, where), kind="npz")


def top_activating_cached(run_dir: Path | str, epoch: int, layer: str | None = None, channel: int = 0, k: int = 9,
                          n: int = 10000) -> tuple[np.ndarray, np.ndarray]:
    """`top_activating` over the first n official test images, cached: (indices into t10k, scores).

    One pass scores every channel of the layer; the top k of all channels are cached together, so
    browsing channels costs one computation per (epoch, layer, k, n). None: the last conv layer.
    """
    model = _Lazy(run_dir, epoch)
    layer = layer if layer is not None else unit_layer(model(), None)

    def compute() -> dict[str, np.ndarray]:
        scores = unit_scores(model(), _images("test")[:n], layer)   # (n, units)
        tops = [_top_k(scores[:, c], k) for c in range(scores.shape[1])]
        return {"indices": np.stack([t[0] for t in tops]), "scores": np.stack([t[1] for t in tops])}
    key = make_key("topact", CACHE_VERSION, layer, epoch=epoch, k=k, n=n)
    out = cached(run_dir, key, compute, kind="npz")
    return out["indices"][channel], out["scores"][channel]
