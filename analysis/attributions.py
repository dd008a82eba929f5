"""Attribution maps: which pixels pushed the CNN towards a class? Eleven methods on Captum 0.9.

References: Simonyan et al. 2013 (saliency), Sundararajan et al. 2017 (Integrated Gradients),
Smilkov et al. 2017 (SmoothGrad), Lundberg & Lee 2017 (GradientSHAP), Shrikumar et al. 2017
(DeepLift), Zeiler & Fergus 2014 (occlusion, deconvolution), Selvaraju et al. 2017 (Grad-CAM and
Guided Grad-CAM), Springenberg et al. 2015 (Guided Backprop), Adebayo et al. 2018 (sanity checks).

    attr = attribute(model, x, target=7, method="integrated_gradients", steps=50)   # (B,1,28,28)

Every method takes a batch (B,1,28,28) in [0,1] and a target (one int, or one class per image as
a (B,) tensor) and returns a map of the input's shape. Options are checked: an unknown method or
option, or a bad value, raises ValueError naming what is allowed (see `OPTIONS` for the defaults).

Thread safety: Streamlit shares one model between sessions, so a model given here is never
modified and concurrent calls return exactly what sequential calls return.
  * Methods that hook modules (DeepLift, Guided Backprop, Deconvolution, Grad-CAM, Guided Grad-CAM)
    run on a private copy of the model made per call by `private_copy`: new module objects without
    hooks that share the (read-only) weight tensors: about a millisecond, not a 30 MB weight copy.
  * Gradient methods run on the given model through `torch.autograd.grad` on a private clone of
    the input, so nothing shared is written (parameters' `.grad` stay untouched).
  * Random methods (SmoothGrad, GradientSHAP) draw from private generators seeded by `seed`:
    the same call gives the same map, whatever other threads do with the global RNGs. They draw in
    Captum's order, so with equal seeds they equal Captum's NoiseTunnel / GradientShap.
  * A model left in training mode is run through a private eval-mode copy (dropout off).
Saliency and SmoothGrad return |gradient| by default (Captum's Saliency `abs=True`), as in Simonyan
et al.; pass `abs=False` for the signed gradient.

Any model: methods that hook non-linearity modules (DeepLift, Guided Backprop, Deconvolution, Guided
Grad-CAM) need every non-linearity to be a module used once (`analysis.layers.discover(...).hook_methods`;
model.external.modularize makes imported models so). For a model where that fails, `available_methods`
gives the reason and `attribute` raises `MethodUnavailable` instead of returning a silently wrong map.
The model's layers are found once per model object (`analysis.layers.layers_of`).

Grad-CAM's default layer is the model's last conv layer. It is computed on the layer's grid (conv2: 11x11)
and drawn on the input where each unit looks:
unit i of a layer sees the input patch centred on pixel offset + stride * i (`receptive_field`;
conv2 of the seed CNN: 3.5 + 2i), and the map is interpolated linearly between those centres
(`place_on_input`). A plain resize of 11x11 to 28x28 (Captum's `LayerAttribution.interpolate`) would
put unit i at 2.55i + 0.8, up to 3 pixels outward. Guided Grad-CAM multiplies Guided Backprop by this
placed map (Captum's GuidedGradCam resizes instead). Placement needs a chain of layers (no residual addition
or concatenation) made of Conv2d, MaxPool2d, AvgPool2d and pointwise layers up to the target layer; for any
other network (e.g. a ResNet, an adaptive pool) the map falls back to a plain bilinear resize to 28x28.
"""
from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from analysis.layers import Layers, known_layers, layers_of, remember_layers
from model.external import set_eval

# Captum (which imports matplotlib) and scipy are imported where a map is computed, not here: the dashboard's
# server reads METHODS and METHOD_INFO but leaves the maps to its worker processes (about 50 MB less).

METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "gradient_shap",
           "deeplift", "occlusion", "gradcam", "guided_gradcam", "guided_backprop", "deconvolution")
BASELINES = ("black", "blurred", "mean-digit")
DELTA_METHODS = ("integrated_gradients", "deeplift")  # methods with a convergence delta (completeness)
# methods whose Captum implementation hooks non-linearity modules (a F.relu call is invisible to them)
MODULE_HOOK_METHODS = ("deeplift", "guided_backprop", "deconvolution", "guided_gradcam")
CONV_METHODS = ("gradcam", "guided_gradcam")           # need a conv layer (default: the last one)


class MethodUnavailable(ValueError):
    """The method cannot explain this model; the message says why (see `available_methods`)."""


@dataclass(frozen=True)
class MethodInfo:
    name: str            # display name
    signed: bool         # True: positive and negative evidence; False: a non-negative map
    fails_sanity: bool   # known to fail Adebayo et al.'s model randomization test
    uses_hooks: bool     # hooks modules, so runs on a private copy of the model
    explanation: str     # one sentence for the dashboard


METHOD_INFO: dict[str, MethodInfo] = {
    "saliency": MethodInfo(
        "Saliency", False, False, False,
        "How much the class score changes when each pixel changes a little (|gradient|)."),
    "input_x_gradient": MethodInfo(
        "Input × Gradient", True, False, False,
        "The gradient times the pixel value: a first-order estimate of each pixel's contribution."),
    "integrated_gradients": MethodInfo(
        "Integrated Gradients", True, False, False,
        "Gradients averaged along a straight path from a baseline image to the input, times the "
        "difference; the map sums to the score change from baseline to input."),
    "smoothgrad": MethodInfo(
        "SmoothGrad", False, False, False,
        "Saliency averaged over noisy copies of the input, which removes speckle from the map."),
    "gradient_shap": MethodInfo(
        "GradientSHAP", True, False, False,
        "Integrated Gradients in expectation over random baselines, noise and path points "
        "(approximate SHAP values)."),
    "deeplift": MethodInfo(
        "DeepLift", True, False, True,
        "Compares each neuron's activation with its activation on a baseline image and propagates "
        "those differences back to the pixels."),
    "occlusion": MethodInfo(
        "Occlusion", True, False, False,
        "How much the class score drops when a small square patch around each pixel is blacked out."),
    "gradcam": MethodInfo(
        "Grad-CAM", False, False, True,
        "Which regions of a convolutional layer's feature maps support the class, each unit drawn at "
        "the centre of the input patch it sees (coarse, non-negative)."),
    "guided_gradcam": MethodInfo(
        "Guided Grad-CAM", True, True, True,
        "Grad-CAM multiplied by Guided Backprop; sharp, but Adebayo et al. found it barely changes "
        "when the weights are randomized, so it may show the input more than the model."),
    "guided_backprop": MethodInfo(
        "Guided Backprop", True, True, True,
        "The gradient with only positive signals let back through each ReLU; looks like an edge "
        "detector and barely changes when the weights are randomized."),
    "deconvolution": MethodInfo(
        "Deconvolution", True, False, True,
        "Runs the network backwards keeping only positive signals at each ReLU, as in Zeiler & Fergus."),
}

# Allowed options per method and their defaults.
_BASELINE_OPTIONS = {"baseline": "black", "mean_image": None, "blur_sigma": 3.0}
OPTIONS: dict[str, dict[str, Any]] = {
    "saliency": {"abs": True},
    "input_x_gradient": {},
    "integrated_gradients": {"steps": 50, **_BASELINE_OPTIONS, "internal_batch_size": 512},
    "smoothgrad": {"noise_std": 0.15, "samples": 25, "abs": True, "seed": 0, "internal_batch_size": 512},
    "gradient_shap": {"baselines": "black", "mean_image": None, "noise_std": 0.09, "samples": 20,
                      "seed": 0, "internal_batch_size": 512},
    "deeplift": dict(_BASELINE_OPTIONS),
    "occlusion": {"window": 4, "stride": 2, "internal_batch_size": 64},
    "gradcam": {"layer": None},            # None: the model's last conv layer
    "guided_gradcam": {"layer": None},
    "guided_backprop": {},
    "deconvolution": {},
}


# ----------------------------------------------------------------------------- checking arguments

def _options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """The method's defaults updated with `options`; ValueError for an unknown method or option."""
    if method not in OPTIONS:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {METHODS}")
    unknown = sorted(set(options) - set(OPTIONS[method]))
    if unknown:
        allowed = ", ".join(OPTIONS[method]) or "none"
        raise ValueError(f"unknown option(s) {unknown} for {method!r}; allowed: {allowed}")
    return {**OPTIONS[method], **options}


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def _check_inputs(inputs: torch.Tensor) -> torch.Tensor:
    """A private float copy of the batch (B,C,H,W), detached from any graph."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4 or not inputs.is_floating_point():
        raise ValueError("inputs must be a float tensor of shape (B,1,28,28); "
                         "use model.net.to_input for uint8 images")
    if inputs.shape[0] == 0:
        raise ValueError("inputs is an empty batch")
    return inputs.detach().clone()


def target_tensor(target: int | torch.Tensor | np.ndarray | list, batch: int) -> torch.Tensor:
    """One class index per image as a (B,) int64 tensor."""
    if isinstance(target, (bool, np.bool_)):
        raise ValueError(f"target must be a class index, got {target!r}")
    if isinstance(target, (int, np.integer)):
        t = torch.full((batch,), int(target), dtype=torch.long)
    else:
        t = torch.as_tensor(np.asarray(target) if isinstance(target, list) else target)
        if t.is_floating_point() or t.dtype == torch.bool:
            raise ValueError(f"target must hold integer class indices, got dtype {t.dtype}")
        t = t.reshape(-1).long() if t.dim() == 0 else t.long()
        if t.numel() == 1:
            t = t.reshape(1).expand(batch).clone()
        if t.shape != (batch,):
            raise ValueError(f"target must be one int or one class per image ({batch}), got shape "
                             f"{tuple(t.shape)}")
    if (t < 0).any():
        raise ValueError(f"target classes must be >= 0, got {t.tolist()}")
    return t


# ----------------------------------------------------------------------------- the model copy

_HOOK_DICT_NAMES = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                    "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
                    "_forward_pre_hooks_with_kwargs", "_state_dict_hooks", "_state_dict_pre_hooks",
                    "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")


def private_copy(model: nn.Module, share_weights: bool = True) -> nn.Module:
    """New module objects without hooks; by default they share the model's parameter and buffer tensors.

    Captum may hook and annotate the copy freely; shared weights are only read. Pass
    share_weights=False for a copy whose weights may be changed (the randomization test).
    """
    memo: dict[int, Any] = {}
    if share_weights:
        memo.update({id(t): t for t in itertools.chain(model.parameters(), model.buffers())})
    for m in model.modules():  # hooks other code put on the shared model are not carried over
        for name in _HOOK_DICT_NAMES:
            d = getattr(m, name, None)
            if isinstance(d, dict):
                memo[id(d)] = type(d)()
    work = copy.deepcopy(model, memo)
    known = known_layers(model)
    if known is not None:           # the same modules: no second trace
        remember_layers(work, known)
    return work


def _model_for(model: nn.Module, method: str) -> nn.Module:
    """The model itself for hook-free methods in eval mode, else a private copy (in eval mode)."""
    if METHOD_INFO[method].uses_hooks or model.training:
        return set_eval(private_copy(model))
    return model


def _layer(model: nn.Module, name: Any) -> nn.Module:
    modules = dict(model.named_modules())
    if not isinstance(name, str) or name not in modules or name == "":
        convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
        raise ValueError(f"layer must name a module of the model, e.g. one of {convs}; got {name!r}")
    return modules[name]


# ----------------------------------------------------------------------------- which methods fit the model

def _unavailable(layers: Layers, method: str, layer_given: bool = False) -> str | None:
    """Why `method` cannot explain a model with these layers, or None."""
    if method in MODULE_HOOK_METHODS and not layers.hook_methods:
        why = layers.note or "its non-linearities are not one module per use"
        return f"{METHOD_INFO[method].name} is unavailable for this model: {why}"
    if method in CONV_METHODS and not layers.convs and not layer_given:
        return f"{METHOD_INFO[method].name} is unavailable for this model: it has no Conv2d layer"
    return None


def available_methods(model: nn.Module) -> dict[str, str | None]:
    """Every method of METHODS -> None when it can explain the model, else the reason it cannot.

    DeepLift, Guided Backprop, Deconvolution and Guided Grad-CAM hook non-linearity modules: they are
    unavailable when some non-linearity is a function call or a module used twice (`hook_methods`).
    Grad-CAM needs a conv layer.
    """
    layers = layers_of(model)
    return {method: _unavailable(layers, method) for method in METHODS}


def _check_available(model: nn.Module, method: str, o: dict[str, Any]) -> Layers:
    """The model's layers; MethodUnavailable when the method cannot explain the model."""
    layers = layers_of(model)
    reason = _unavailable(layers, method, layer_given=o.get("layer") is not None)
    if reason:
        raise MethodUnavailable(reason)
    return layers


# ----------------------------------------------------------------------------- baselines

@lru_cache(maxsize=1)
def _official_mean_digit() -> torch.Tensor:
    from data.mnist import load_raw  # imported here: only this default needs the data files
    images = load_raw()["train-images-idx3-ubyte"]            # (60000,28,28) uint8
    return torch.from_numpy(images.mean(axis=0, dtype=np.float64) / 255.0).float().unsqueeze(0)


def mean_digit(mean_image: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """The "mean-digit" baseline (1,28,28) in [0,1]: `mean_image` if given, else the mean of the
    60k official MNIST training images (read once from the prepared data)."""
    if mean_image is None:
        try:
            return _official_mean_digit().clone()
        except Exception as e:  # data.mnist.DataError, missing files
            raise ValueError(f"baseline 'mean-digit' needs the mean_image option or prepared MNIST ({e})") from e
    m = torch.as_tensor(mean_image, dtype=torch.float32)
    if m.numel() != 28 * 28:
        raise ValueError(f"mean_image must hold 28x28 values, got shape {tuple(m.shape)}")
    return m.reshape(1, 28, 28).clone()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of a batch (B,C,H,W) with zero padding (MNIST's background is black).

    scipy.ndimage.gaussian_filter over the two image axes, its kernel truncated at 3 sigma (at
    least one pixel each side).
    """
    from scipy.ndimage import gaussian_filter
    radius = max(1, math.ceil(3 * sigma))
    out = gaussian_filter(x.detach().cpu().numpy(), sigma, mode="constant", cval=0.0, radius=radius, axes=(-2, -1))
    return torch.from_numpy(out).to(x.dtype)


def make_baseline(inputs: torch.Tensor, kind: str | torch.Tensor = "black",
                  mean_image: torch.Tensor | None = None, blur_sigma: float = 3.0) -> torch.Tensor:
    """The reference image(s) for IG / DeepLift, shaped like inputs (B,1,28,28).

    Args:
        kind: "black" (zeros), "blurred" (each input Gaussian-blurred with `blur_sigma`),
            "mean-digit" (see `mean_digit`), or a tensor broadcastable to the inputs.
    """
    if isinstance(kind, torch.Tensor):
        try:
            return torch.broadcast_to(kind.detach().to(inputs.dtype), inputs.shape).clone()
        except RuntimeError as e:
            raise ValueError(f"baseline tensor of shape {tuple(kind.shape)} does not fit inputs "
                             f"{tuple(inputs.shape)}") from e
    if kind == "black":
        return torch.zeros_like(inputs)
    if kind == "blurred":
        sigma = _non_negative("blur_sigma", blur_sigma)
        if sigma == 0:
            raise ValueError("blur_sigma must be > 0")
        return gaussian_blur(inputs, sigma)
    if kind == "mean-digit":
        return mean_digit(mean_image).to(inputs.dtype).expand_as(inputs).clone()
    raise ValueError(f"unknown baseline {kind!r}; choose one of {BASELINES} or pass a tensor")


def _baseline_distribution(spec: Any, mean_image: torch.Tensor | None) -> torch.Tensor:
    """GradientSHAP's reference images (K,1,28,28) from names ("black", "mean-digit") or a tensor."""
    if isinstance(spec, torch.Tensor):
        if spec.dim() != 4 or spec.shape[1:] != (1, 28, 28):
            raise ValueError(f"baselines tensor must be (K,1,28,28), got {tuple(spec.shape)}")
        return spec.detach().float()
    names = [spec] if isinstance(spec, str) else list(spec)
    refs = []
    for name in names:
        if name == "black":
            refs.append(torch.zeros(1, 28, 28))
        elif name == "mean-digit":
            refs.append(mean_digit(mean_image))
        else:
            raise ValueError(f"gradient_shap baselines are names from ('black', 'mean-digit') or a "
                             f"(K,1,28,28) tensor, got {name!r}")
    if not refs:
        raise ValueError("gradient_shap needs at least one baseline")
    return torch.stack(refs)


# ----------------------------------------------------------------------------- where a unit looks

@dataclass(frozen=True)
class ReceptiveField:
    """Where the units of a layer look in the input, per axis (rows, cols); pixel k's centre is at k."""
    offset: tuple[float, float]   # input coordinate of unit 0's receptive-field centre
    stride: tuple[int, int]       # the jump: input pixels between the centres of neighbouring units
    size: tuple[int, int]         # receptive-field size in input pixels (padding included)


# Layers that act on each position alone: they move no receptive field.
_POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Identity,
              nn.Dropout, nn.Dropout2d, nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def receptive_field(layers: Sequence[nn.Module]) -> ReceptiveField:
    """The receptive field of the last of `layers` (given in forward order, from the input on).

    Walks Conv2d, MaxPool2d and AvgPool2d (kernel_size, stride, padding, dilation) with the usual
    recursion per axis: k_eff = dilation*(kernel-1)+1, offset += ((k_eff-1)/2 - padding)*jump,
    size += (k_eff-1)*jump, jump *= stride. Pointwise layers (ReLU, BatchNorm, Dropout, Identity...)
    change nothing; any other layer raises ValueError (its geometry is unknown).
    Seed CNN: conv1 offset 1, stride 1, size 3; conv2 offset 3.5, stride 2, size 8.
    """
    offset, jump, size = [0.0, 0.0], [1, 1], [1, 1]
    for m in layers:
        if isinstance(m, _POINTWISE):
            continue
        if not isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            raise ValueError(f"cannot place a receptive field through a {type(m).__name__} layer; "
                             "known: Conv2d, MaxPool2d, AvgPool2d and pointwise layers")
        k, s = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size)
        d = _pair(getattr(m, "dilation", 1))
        if isinstance(m.padding, str):        # Conv2d "valid" or "same" (stride 1): PyTorch pads total//2 first
            p = (0, 0) if m.padding == "valid" else tuple((d[i] * (k[i] - 1)) // 2 for i in range(2))
        else:
            p = _pair(m.padding)
        for i in range(2):
            k_eff = d[i] * (k[i] - 1) + 1
            offset[i] += ((k_eff - 1) / 2 - p[i]) * jump[i]
            size[i] += (k_eff - 1) * jump[i]
            jump[i] *= s[i]
    return ReceptiveField((offset[0], offset[1]), (jump[0], jump[1]), (size[0], size[1]))


class _Reached(Exception):
    """Raised by `forward_layers`' hook once the layer ran: the rest of the forward is not needed."""


def forward_layers(model: nn.Module, layer: str, input_shape: tuple[int, ...] = (1, 28, 28)) -> list[nn.Module]:
    """The model's leaf modules in the order one forward pass runs them, up to and including `layer`.

    Traced with forward hooks on a private copy (a zero image, stopped right after `layer`), so
    registration order does not matter. Branches (residual blocks) are not modelled: the walk is a chain.
    """
    work = set_eval(private_copy(model))
    target = _layer(work, layer)
    order: list[nn.Module] = []

    def reached(m: nn.Module, i: Any, o: Any) -> None:
        raise _Reached

    hooks = [m.register_forward_hook(lambda m, i, o: order.append(m)) for m in work.modules()
             if not list(m.children())]
    hooks.append(target.register_forward_hook(reached))       # after the leaf hooks: target is appended first
    try:
        with torch.no_grad():
            work(torch.zeros((1,) + tuple(input_shape)))
    except _Reached:
        return order
    finally:
        for h in hooks:
            h.remove()
    raise ValueError(f"layer {layer!r} did not run in a forward pass")


def place_on_input(layer_map: torch.Tensor, rf: ReceptiveField,
                   size: tuple[int, int] = (28, 28)) -> torch.Tensor:
    """A layer's map (B,C,h,w) on the input grid (B,C,H,W): each unit's value at its receptive field's centre.

    Input pixel p reads the map at unit coordinate u = (p - offset) / stride, linearly interpolated
    between the two nearest units and clamped to the first / last unit at the edges (bilinear, as
    scipy.ndimage.map_coordinates(order=1, mode="nearest")). Done with torch's grid_sample, batched.
    """
    b, c, h, w = layer_map.shape
    axes = []
    for n, count, off, jump in ((size[0], h, rf.offset[0], rf.stride[0]), (size[1], w, rf.offset[1], rf.stride[1])):
        u = (torch.arange(n, dtype=torch.float64) - off) / jump                     # (n,) unit coordinates
        # grid_sample with align_corners=True: -1 is unit 0's centre, +1 unit count-1's
        axes.append((2 * u / (count - 1) - 1) if count > 1 else torch.zeros(n, dtype=torch.float64))
    rows, cols = torch.meshgrid(axes[0], axes[1], indexing="ij")                     # (H,W) each
    grid = torch.stack([cols, rows], dim=-1).expand(b, -1, -1, -1)                   # (B,H,W,2): x, y
    # in float64, so units at equal distances get equal weights (float32 grids round them apart)
    out = F.grid_sample(layer_map.double(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(layer_map.dtype)


# ----------------------------------------------------------------------------- the methods

def _gradients(model: nn.Module, x: torch.Tensor, target: torch.Tensor, chunk: int) -> torch.Tensor:
    """d score[target] / d input for each row of x (N,1,28,28), `chunk` rows per forward."""
    from captum.attr import Saliency
    sal = Saliency(model)
    parts = [sal.attribute(x[i:i + chunk].requires_grad_(), target=target[i:i + chunk], abs=False)
             for i in range(0, x.shape[0], chunk)]
    return torch.cat(parts)


def _smoothgrad(model: nn.Module, x: torch.Tensor, t: torch.Tensor, o: dict) -> torch.Tensor:
    """NoiseTunnel(Saliency, nt_type="smoothgrad") with a private generator (same draws as Captum)."""
    n, std = _positive_int("samples", o["samples"]), _non_negative("noise_std", o["noise_std"])
    g = torch.Generator().manual_seed(int(o["seed"]))
    b = x.shape[0]
    expanded = (b * n,) + tuple(x.shape[1:])
    noisy = x.repeat_interleave(n, dim=0) + torch.normal(0.0, torch.full(expanded, std), generator=g)
    grads = _gradients(model, noisy, t.repeat_interleave(n), _positive_int("internal_batch_size",
                                                                           o["internal_batch_size"]))
    if o["abs"]:
        grads = grads.abs()
    return grads.view((b, n) + tuple(x.shape[1:])).sum(dim=1) * 1 / n     # (B,1,28,28)


def _gradient_shap(model: nn.Module, x: torch.Tensor, t: torch.Tensor, o: dict) -> torch.Tensor:
    """Captum's GradientShap (multiply_by_inputs=True) with private generators, same draw order."""
    n, std = _positive_int("samples", o["samples"]), _non_negative("noise_std", o["noise_std"])
    refs = _baseline_distribution(o["baselines"], o["mean_image"]).to(x.dtype)   # (K,1,28,28)
    rs, g = np.random.RandomState(int(o["seed"])), torch.Generator().manual_seed(int(o["seed"]))
    b = x.shape[0]
    expanded = (b * n,) + tuple(x.shape[1:])
    base = refs[rs.choice(refs.shape[0], n * b).tolist()]                         # (B*n,1,28,28)
    noisy = x.repeat_interleave(n, dim=0) + torch.normal(0.0, torch.full(expanded, std), generator=g)
    alpha = torch.tensor(rs.uniform(0.0, 1.0, b * n), dtype=x.dtype).view(-1, 1, 1, 1)
    points = alpha * noisy + (1.0 - alpha) * base                                # on the paths
    grads = _gradients(model, points, t.repeat_interleave(n), _positive_int("internal_batch_size",
                                                                            o["internal_batch_size"]))
    attr = (noisy - base) * grads
    return attr.view((b, n) + tuple(x.shape[1:])).sum(dim=1) * 1 / n      # (B,1,28,28)


def gradcam_placement(model: nn.Module, layer: str, layers: Layers,
                      input_shape: tuple[int, ...] = (1, 28, 28)) -> ReceptiveField | None:
    """The receptive field Grad-CAM places `layer`'s units with, or None when the map is resized instead.

    None when the network is no chain (`layers.chain` False: a residual addition or concatenation) or a
    layer before the target has no known geometry (anything but Conv2d, MaxPool2d, AvgPool2d, pointwise).
    """
    if not layers.chain:
        return None
    try:
        return receptive_field(forward_layers(model, layer, input_shape))
    except ValueError:
        return None


def _gradcam(model: nn.Module, x: torch.Tensor, t: torch.Tensor, o: dict, layers: Layers) -> torch.Tensor:
    """Grad-CAM of the layer (B,1,h,w), each unit's value placed at its receptive field's centre (B,1,28,28);
    resized bilinearly where no receptive field can be placed (`gradcam_placement`)."""
    from captum.attr import LayerGradCam
    name = o["layer"] if o["layer"] is not None else layers.convs[-1]
    layer = _layer(model, name)
    cam = LayerGradCam(model, layer).attribute(x, target=t, relu_attributions=True).detach()   # (B,1,h,w)
    rf = gradcam_placement(model, name, layers, tuple(x.shape[1:]))
    if rf is None:
        return F.interpolate(cam, size=tuple(x.shape[2:]), mode="bilinear", align_corners=False)
    return place_on_input(cam, rf, tuple(x.shape[2:]))


def _guided_gradcam(model: nn.Module, x: torch.Tensor, t: torch.Tensor, o: dict, layers: Layers) -> torch.Tensor:
    """Guided Backprop times the placed Grad-CAM: Captum's GuidedGradCam without its bilinear resize."""
    from captum.attr import GuidedBackprop
    cam = _gradcam(model, x.detach(), t, o, layers)                                # (B,1,28,28)
    return GuidedBackprop(model).attribute(x, target=t) * cam


_GRAD_ON_INPUT = ("saliency", "input_x_gradient", "deeplift", "guided_gradcam", "guided_backprop",
                  "deconvolution")


def _run(model: nn.Module, x: torch.Tensor, t: torch.Tensor, method: str, o: dict,
         delta: bool, layers: Layers) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Dispatch to Captum; x is a private clone, model is the shared model or a private copy, layers the
    shared model's (`layers_of`)."""
    from captum.attr import (Deconvolution, DeepLift, GuidedBackprop, InputXGradient, IntegratedGradients,
                             Occlusion, Saliency)
    if method in _GRAD_ON_INPUT:  # Captum would set requires_grad itself, with a warning
        x = x.requires_grad_()
    if method == "saliency":
        return Saliency(model).attribute(x, target=t, abs=bool(o["abs"]))
    if method == "input_x_gradient":
        return InputXGradient(model).attribute(x, target=t)
    if method in ("integrated_gradients", "deeplift"):
        base = make_baseline(x.detach(), o["baseline"], o["mean_image"], o["blur_sigma"])
        if method == "deeplift":
            return DeepLift(model).attribute(x, baselines=base, target=t, return_convergence_delta=delta)
        return IntegratedGradients(model).attribute(
            x, baselines=base, target=t, n_steps=_positive_int("steps", o["steps"]),
            internal_batch_size=_positive_int("internal_batch_size", o["internal_batch_size"]),
            return_convergence_delta=delta)
    if method == "smoothgrad":
        return _smoothgrad(model, x, t, o)
    if method == "gradient_shap":
        return _gradient_shap(model, x, t, o)
    if method == "occlusion":
        w, s = _positive_int("window", o["window"]), _positive_int("stride", o["stride"])
        if w > min(x.shape[2:]):
            raise ValueError(f"window must be at most {min(x.shape[2:])}, got {w}")
        return Occlusion(model).attribute(
            x, sliding_window_shapes=(x.shape[1], w, w), strides=(x.shape[1], s, s), baselines=0.0,
            target=t, perturbations_per_eval=_positive_int("internal_batch_size", o["internal_batch_size"]))
    if method == "gradcam":
        return _gradcam(model, x, t, o, layers)
    if method == "guided_gradcam":
        return _guided_gradcam(model, x, t, o, layers)
    if method == "guided_backprop":
        return GuidedBackprop(model).attribute(x, target=t)
    if method == "deconvolution":
        return Deconvolution(model).attribute(x, target=t)
    raise ValueError(f"unknown attribution method {method!r}; choose one of {METHODS}")


# ----------------------------------------------------------------------------- public API

def attribute(model: nn.Module, inputs: torch.Tensor, target: int | torch.Tensor, method: str,
              **options: Any) -> torch.Tensor:
    """The attribution map of `method` for each image of a batch, towards its target class.

    Args:
        model: a classifier (B,1,28,28) -> (B,classes) logits; it is never modified.
        inputs: float (B,1,28,28) in [0,1].
        target: one class for all images, or a (B,) tensor with one class per image.
        method: one of METHODS.
        **options: see OPTIONS[method] (e.g. steps=50, baseline="black" for integrated_gradients).
    Returns:
        A detached float tensor (B,1,28,28).
    Raises:
        MethodUnavailable (a ValueError) when the method cannot explain this model (`available_methods`).
    """
    o = _options(method, options)
    x = _check_inputs(inputs)                                              # (B,1,28,28) private
    t = target_tensor(target, x.shape[0])                                       # (B,)
    layers = _check_available(model, method, o)
    attr = _run(_model_for(model, method), x, t, method, o, delta=False, layers=layers)
    return attr.detach()


def attribute_with_delta(model: nn.Module, inputs: torch.Tensor, target: int | torch.Tensor,
                         method: str = "integrated_gradients",
                         **options: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """`attribute` plus Captum's convergence delta per image (B,): sum(map) - (f(x) - f(baseline)).

    Only for the methods in DELTA_METHODS (integrated_gradients, deeplift). A delta near 0 means
    the map accounts for the whole change of the target score from the baseline to the input.
    """
    if method not in DELTA_METHODS:
        raise ValueError(f"convergence delta is defined for {DELTA_METHODS}, not {method!r}")
    o = _options(method, options)
    x = _check_inputs(inputs)
    t = target_tensor(target, x.shape[0])
    layers = _check_available(model, method, o)
    attr, delta = _run(_model_for(model, method), x, t, method, o, delta=True, layers=layers)
    return attr.detach(), delta.detach()


def class_mean_attribution(model: nn.Module, images: torch.Tensor, method: str, target: int,
                           batch_size: int = 64, **options: Any) -> torch.Tensor:
    """The mean map (1,28,28) of `method` over N images, all explained towards class `target`.

    Args:
        images: float (N,1,28,28) in [0,1], or uint8 (N,28,28) as stored in MNIST.
        batch_size: images per `attribute` call. Default: 64.
    Returns:
        The signed mean of the N maps (for magnitude methods, the mean magnitude).
    """
    if isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.dim() == 3:
        images = images.unsqueeze(1).float() / 255.0                       # (N,1,28,28)
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[0] == 0:
        raise ValueError("images must be a non-empty (N,1,28,28) float or (N,28,28) uint8 tensor")
    batch_size = _positive_int("batch_size", batch_size)
    total = torch.zeros(images.shape[1:], dtype=torch.float64)            # (1,28,28)
    for i in range(0, images.shape[0], batch_size):
        total += attribute(model, images[i:i + batch_size], target, method, **options).double().sum(dim=0)
    return (total / images.shape[0]).float()


def class_mean_attribution_cached(run_dir: Path | str, epoch: int, digit: int, method: str,
                                  n: int = 100, model: nn.Module | None = None, **options: Any) -> np.ndarray:
    """`class_mean_attribution` of a run's checkpoint over the first n test images of `digit`.

    `model` is the checkpoint's model if the caller has it loaded (default: load it from the run).

    Cached in `<run>/cache/` (analysis.cache), keyed by method, epoch, digit, n and the options.
    Tensor-valued options (a custom baseline) cannot be cached: call `class_mean_attribution`.
    Returns:
        float32 array (28,28).
    """
    from analysis.cache import cached, make_key
    from data.mnist import load_raw
    from model.runs import load_model

    o = _options(method, options)
    if any(isinstance(v, (torch.Tensor, np.ndarray)) for v in o.values()):
        raise ValueError("tensor-valued options cannot be cached; call class_mean_attribution")
    n = _positive_int("n", n)
    key = make_key("class_mean_attr", "v2", method, epoch=int(epoch), cls=int(digit), n=n,
                   **{k: o[k] for k in sorted(o)})

    def compute() -> np.ndarray:
        raw = load_raw()
        labels = raw["t10k-labels-idx1-ubyte"]
        idx = np.flatnonzero(labels == int(digit))[:n]
        if len(idx) == 0:
            raise ValueError(f"no test images of class {digit!r}")
        images = torch.from_numpy(raw["t10k-images-idx3-ubyte"][idx].copy())    # (n,28,28) uint8
        net = model if model is not None else load_model(run_dir, epoch)
        mean = class_mean_attribution(net, images, method, int(digit), **options)
        return mean[0].numpy().astype(np.float32)

    return cached(run_dir, key, compute, kind="npz")
