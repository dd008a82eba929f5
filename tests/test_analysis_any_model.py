"""analysis/ on networks that are not our Net (tests/zoo), against references: plain Captum on hand-written
modules, forward hooks, torch.nn.functional, scipy placement with hand-computed receptive fields, brute force."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn as nn
import torch.nn.functional as F
from captum.attr import DeepLift, LayerAttribution, LayerGradCam

from analysis import attributions as A
from analysis import internals, trust
from model import runs
from model.external import ModelError, Wrapped, modularize
from model.net import Net, NetConfig
from model_zoo import MODELS, zoo_model

MEAN, STD = MODELS["pytorch_examples"][2]


def analysed(stem: str, seed: int = 0) -> nn.Module:
    """A zoo network as digit-lens analyses it: one module per non-linearity, inside Wrapped (eval mode)."""
    net, stripped, _ = modularize(zoo_model(stem, seed))
    assert stripped == (stem == "pytorch_examples")                    # its final log_softmax: logits now
    return Wrapped(net, MODELS[stem][2], "logits").eval()


def smallres(seed: int = 0) -> nn.Module:
    """SmallRes with non-trivial batch-norm statistics, so BatchNorm really changes values."""
    model = analysed("resnetish", seed)
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return model


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    """(n,1,28,28) floats in [0,1]: a dark background with a bright random blob, like a digit."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 28, 28, generator=g) * 0.2
    x[:, :, 6:22, 9:19] += 0.8 * torch.rand(n, 1, 16, 10, generator=g)
    return x.clamp(0, 1)


def hooked(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Reference: (input, output) of named modules of a fresh copy, captured by forward hooks while it runs x."""
    work = copy.deepcopy(model).eval()
    modules = dict(work.named_modules())
    got, handles = {}, []

    def keep(name: str, i: tuple, o: torch.Tensor) -> None:          # returns None: the output is left alone
        got.setdefault(name, (i[0].detach(), o.detach()))

    for name in names:
        handles.append(modules[name].register_forward_hook(lambda m, i, o, name=name: keep(name, i, o)))
    with torch.no_grad():
        work(x)
    for h in handles:
        h.remove()
    return got


# ----------------------------------------------------------------------------- DeepLift after modularize

class ExamplesWithModules(nn.Module):
    """pytorch/examples' Net written by hand with one nn.ReLU / nn.MaxPool2d module per use, logits out."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(1, 32, 3, 1), nn.ReLU()
        self.conv2, self.relu2, self.pool = nn.Conv2d(32, 64, 3, 1), nn.ReLU(), nn.MaxPool2d(2)
        self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1, self.relu3, self.fc2 = nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - MEAN) / STD
        x = self.dropout1(self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x))))))
        return self.fc2(self.dropout2(self.relu3(self.fc1(torch.flatten(x, 1)))))


class ExamplesFunctional(ExamplesWithModules):
    """The same network calling F.relu / F.max_pool2d: what Captum's DeepLift would see without modularize."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - MEAN) / STD
        x = self.dropout1(F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2))
        return self.fc2(self.dropout2(F.relu(self.fc1(torch.flatten(x, 1)))))


def test_deeplift_on_the_modularized_pytorch_examples_net_equals_captum_on_hand_written_modules():
    raw = zoo_model("pytorch_examples", seed=3)
    model = analysed("pytorch_examples", seed=3)
    reference = ExamplesWithModules()
    reference.load_state_dict(raw.state_dict())
    reference.eval()
    x, t = images(2, seed=1), torch.tensor([3, 7])
    with torch.no_grad():                                              # the same network: logits agree
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)
    ref = DeepLift(reference).attribute(x.clone().requires_grad_(), baselines=torch.zeros_like(x), target=t).detach()
    ours = A.attribute(model, x, t, "deeplift", baseline="black")
    assert ref.abs().max() > 1e-3
    torch.testing.assert_close(ours, ref, atol=1e-5 * float(ref.abs().max()), rtol=1e-4)
    # the comparison can fail: DeepLift on the F.relu version (hooks see no ReLU) gives another map
    functional = ExamplesFunctional()
    functional.load_state_dict(raw.state_dict())
    wrong = DeepLift(functional.eval()).attribute(x.clone().requires_grad_(), baselines=torch.zeros_like(x),
                                                  target=t).detach()
    assert not torch.allclose(wrong, ref, atol=1e-3 * float(ref.abs().max()), rtol=1e-2)


class Untraceable(nn.Module):
    """F.relu plus data-dependent control flow: torch.fx cannot trace it, so F.relu stays a function call."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 26 * 26, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x))
        if x.sum() > 0:
            h = h * 2.0
        return self.fc(h.flatten(1))


def test_an_untraceable_model_reports_hooking_methods_unavailable_and_the_rest_work():
    with pytest.raises(ModelError):
        modularize(Untraceable())
    model = Wrapped(Untraceable(), None, "logits").eval()
    available = A.available_methods(model)
    assert set(available) == set(A.METHODS)
    hooking = {"deeplift", "guided_backprop", "deconvolution", "guided_gradcam"}
    for method in hooking:
        assert isinstance(available[method], str) and "unavailable" in available[method], method
    assert all(available[m] is None for m in set(A.METHODS) - hooking)
    x = images(2, seed=2)
    for method in hooking:
        with pytest.raises(A.MethodUnavailable, match="unavailable"):
            A.attribute(model, x, 1, method)
    with pytest.raises(ValueError):                                    # MethodUnavailable is a ValueError
        A.attribute_with_delta(model, x, 1, "deeplift")
    # saliency against plain autograd on the model
    xg = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(model(xg)[:, 1].sum(), xg)
    torch.testing.assert_close(A.attribute(model, x, 1, "saliency"), grad.abs())
    for method in ("integrated_gradients", "occlusion", "gradcam"):
        out = A.attribute(model, x, 1, method)
        assert out.shape == (2, 1, 28, 28) and torch.isfinite(out).all() and out.abs().sum() > 0, method
    assert all(v is None for v in A.available_methods(analysed("lenet")).values())


# ----------------------------------------------------------------------------- stages and conv units

@pytest.mark.parametrize("stem", ["lenet", "resnetish"])
def test_activations_of_zoo_models_equal_hooks_and_logits(stem):
    model = smallres() if stem == "resnetish" else analysed(stem)
    x = images(1, seed=4)
    acts = internals.activations(model, x)
    with torch.no_grad():
        assert torch.equal(acts["logits"], model(x)[0])
    torch.testing.assert_close(acts["softmax"], torch.softmax(model(x)[0].detach(), 0))
    leaves = [n for n, m in model.named_modules() if n and not list(m.children())
              and not isinstance(m, (nn.Flatten, nn.Dropout))]
    ref = hooked(model, x, leaves)
    assert [k for k in acts if k not in ("input", "logits", "softmax")] == [n for n in leaves if n in ref]
    for name in ref:
        assert torch.equal(acts[name], ref[name][1][0]), name


# (layer, channel, row, col); border units read padding zeros
LENET_UNITS = [("net.0", 0, 0, 0), ("net.0", 5, 27, 27), ("net.0", 3, 0, 27), ("net.0", 2, 14, 9),
               ("net.3", 7, 0, 9), ("net.3", 15, 5, 5)]
SMALLRES_UNITS = [("net.down", 0, 0, 0), ("net.down", 31, 13, 13), ("net.down", 7, 0, 13), ("net.down", 12, 6, 5),
                  ("net.stem", 4, 27, 0)]


@pytest.mark.parametrize("stem, layer, channel, row, col",
                         [("lenet", *u) for u in LENET_UNITS] + [("resnetish", *u) for u in SMALLRES_UNITS])
def test_conv_unit_equals_the_layer_output(stem, layer, channel, row, col):
    model = smallres() if stem == "resnetish" else analysed(stem)
    x = images(1, seed=6)
    seen, out = hooked(model, x, [layer])[layer]
    unit = internals.conv_unit(model, x, layer, channel, row, col)
    assert unit["output"] == pytest.approx(out[0, channel, row, col].item(), abs=1e-5)
    np.testing.assert_allclose(unit["seen"], seen[0].double().numpy(), rtol=1e-6, atol=1e-7)
    conv = dict(model.named_modules())[layer]
    np.testing.assert_allclose(unit["kernel"], conv.weight[channel].detach().double().numpy())
    # the window by hand: rows stride*row - padding ... of the zero-padded input
    (s, _), (p, _), (k, _) = conv.stride, conv.padding, conv.kernel_size
    padded = np.pad(seen[0].double().numpy(), ((0, 0), (p, p), (p, p)))
    np.testing.assert_array_equal(unit["window"], padded[:, s * row:s * row + k, s * col:s * col + k])
    if row == 0 and p:
        assert (unit["window"][:, :p] == 0).all()                     # the padding rows


def test_conv1_at_of_lenet_is_its_first_conv_with_the_channel_axis_squeezed():
    model, x = analysed("lenet"), images(1, seed=7)
    seen, out = hooked(model, x, ["net.0"])["net.0"]
    unit = internals.conv1_at(model, x, 4, 0, 27)
    assert unit["kernel"].shape == (5, 5) and unit["window"].shape == (5, 5) and unit["seen"].shape == (28, 28)
    assert unit["output"] == pytest.approx(out[0, 4, 0, 27].item(), abs=1e-5)
    np.testing.assert_allclose(unit["seen"], x[0, 0].double().numpy(), rtol=1e-6)  # LeNet: no normalisation
    np.testing.assert_allclose(unit["kernel"], model.net.get_submodule("0").weight[4, 0].detach().double().numpy())


# ----------------------------------------------------------------------------- Grad-CAM placement

def place_by_scipy(cam: np.ndarray, offset: float, stride: float, size: int = 28) -> np.ndarray:
    """Reference placement of one (h,w) map: sample unit coordinate (pixel - offset)/stride, linear, clamped."""
    u = (np.arange(size) - offset) / stride
    rows, cols = np.meshgrid(u, u, indexing="ij")
    return scipy.ndimage.map_coordinates(cam, [rows, cols], order=1, mode="nearest")


def test_gradcam_on_lenet_is_placed_with_the_hand_computed_receptive_field():
    # conv 5 pad 2: offset 0, stride 1, size 5; avgpool 2: offset 0.5, stride 2, size 6;
    # conv 5 (no padding): offset 0.5 + 2*2 = 4.5, stride 2, size 6 + 4*2 = 14
    model = analysed("lenet")
    rf1 = A.receptive_field(A.forward_layers(model, "net.0"))
    rf2 = A.receptive_field(A.forward_layers(model, "net.3"))
    assert (rf1.offset, rf1.stride, rf1.size) == ((0.0, 0.0), (1, 1), (5, 5))
    assert (rf2.offset, rf2.stride, rf2.size) == ((4.5, 4.5), (2, 2), (14, 14))
    assert A.gradcam_placement(model, "net.3", internals.layers_of(model)) == rf2
    x, t = images(2, seed=8), torch.tensor([2, 9])
    fresh = copy.deepcopy(model)
    cam = LayerGradCam(fresh, fresh.net.get_submodule("3")).attribute(x, target=t, relu_attributions=True)
    cam = cam.detach()                                                   # (2,1,10,10)
    assert cam.shape == (2, 1, 10, 10) and cam.sum() > 0
    ref = np.stack([place_by_scipy(c[0], 4.5, 2.0) for c in cam.double().numpy()])[:, None]
    out = A.attribute(model, x, t, "gradcam")                            # default: the last conv, net.3
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-6, rtol=1e-4)


def test_gradcam_on_a_residual_network_falls_back_to_a_resize():
    model = smallres()
    layers = internals.layers_of(model)
    assert not layers.chain and layers.convs[-1] == "net.down"
    assert A.gradcam_placement(model, "net.down", layers) is None
    x, t = images(2, seed=9), torch.tensor([0, 5])
    fresh = copy.deepcopy(model)
    cam = LayerGradCam(fresh, fresh.net.down).attribute(x, target=t, relu_attributions=True)       # (2,1,14,14)
    ref = LayerAttribution.interpolate(cam, (28, 28), interpolate_mode="bilinear").detach()
    out = A.attribute(model, x, t, "gradcam")
    assert out.shape == (2, 1, 28, 28)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------- embeddings and top units

def test_embeddings_of_smallres_are_the_input_of_its_fc():
    model = smallres(1)
    imgs = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    emb = internals.embeddings(model, imgs, batch_size=2)
    assert emb.shape == (5, 32)
    ref = hooked(model, torch.from_numpy(imgs).float()[:, None] / 255, ["net.fc"])["net.fc"][0]
    np.testing.assert_allclose(emb, ref.numpy(), rtol=1e-5, atol=1e-6)
    assert internals.embeddings(model, imgs[:0]).shape == (0, 32)


def lenet_brute_force(model: nn.Module, imgs: np.ndarray, layer: str, channel: int) -> np.ndarray:
    """Reference: one image at a time with torch.nn.functional and LeNet's weights, no analysis code."""
    conv1, conv2, fc = (model.net.get_submodule(i) for i in ("0", "3", "7"))
    scores = []
    with torch.no_grad():
        for img in imgs:
            h = torch.tanh(F.conv2d(torch.tensor(img, dtype=torch.float32)[None, None] / 255.0,
                                    conv1.weight, conv1.bias, padding=2))                  # (1,6,28,28)
            if layer == "net.0":
                scores.append(h[0, channel].max().item())
                continue
            h = torch.tanh(F.conv2d(F.avg_pool2d(h, 2), conv2.weight, conv2.bias))      # (1,16,10,10)
            if layer == "net.3":
                scores.append(h[0, channel].max().item())
                continue
            h = torch.tanh(F.linear(F.avg_pool2d(h, 2).flatten(1), fc.weight, fc.bias))   # (1,120)
            scores.append(h[0, channel].item())
    return np.array(scores)


@pytest.mark.parametrize("layer, channel", [(None, 11), ("net.0", 2), ("net.7", 40)])
def test_top_activating_on_lenet_equals_brute_force(layer, channel):
    model = analysed("lenet", seed=2)
    imgs = np.random.default_rng(1).integers(0, 256, size=(11, 28, 28), dtype=np.uint8)
    imgs[3] = 0
    idx, scores = internals.top_activating(model, imgs, layer, channel, k=4, batch_size=4)
    ref = lenet_brute_force(model, imgs, layer or "net.3", channel)
    np.testing.assert_array_equal(idx, np.argsort(-ref, kind="stable")[:4])
    np.testing.assert_allclose(scores, np.sort(ref)[::-1][:4], rtol=1e-5, atol=1e-6)


def test_unit_layers_are_checked_and_listed():
    model = analysed("lenet")
    assert internals.layers_of(model).unit_layers == ("net.0", "net.3", "net.7", "net.9")
    with pytest.raises(ValueError, match="net.0"):
        internals.top_activating(model, np.zeros((2, 28, 28), np.uint8), "conv2", 0)
    with pytest.raises(ValueError, match="net.3"):
        internals.activation_maximization(model, ("net.11", 0), steps=1)   # the final layer: a class, not a unit


def test_activation_maximization_of_a_lenet_channel_raises_its_pre_tanh_map():
    model = analysed("lenet", seed=1)

    def channel_mean(img: np.ndarray) -> float:
        x = torch.tensor(img)[None, None]
        with torch.no_grad():
            conv1, conv2 = model.net.get_submodule("0"), model.net.get_submodule("3")
            h = F.avg_pool2d(torch.tanh(F.conv2d(x, conv1.weight, conv1.bias, padding=2)), 2)
            return F.conv2d(h, conv2.weight, conv2.bias)[0, 6].mean().item()     # net.3 before its tanh

    start = internals.activation_maximization(model, (None, 6), steps=0)
    result = internals.activation_maximization(model, ("net.3", 6), steps=25, l2=0.0, blur_every=0)
    assert channel_mean(result) > channel_mean(start) + 0.05


# ----------------------------------------------------------------------------- trust

def test_randomization_cascade_of_lenet_runs_top_to_bottom():
    model = analysed("lenet")
    assert trust.cascade(model) == ("net.11", "net.9", "net.7", "net.3", "net.0")   # read off tests/zoo/lenet.py
    torch.manual_seed(0)
    assert trust.cascade(Net(NetConfig(fc1_units=16))) == ("fc2", "fc1", "conv2", "conv1")
    table = trust.randomization_test(model, images(1, seed=10), 3, "saliency")
    assert list(table["layer"]) == ["none", "net.11", "net.9", "net.7", "net.3", "net.0"]
    assert table["randomized"].iloc[-1] == "net.11+net.9+net.7+net.3+net.0"
    assert table["spearman"].iloc[0] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- an imported run's kernels

def test_conv_kernels_of_an_imported_run(tmp_path, mnist_root, monkeypatch):
    from model_zoo import import_zoo
    run = import_zoo(tmp_path / "runs", "lenet", form="class")
    raw = zoo_model("lenet")                                            # the weights import_zoo saved
    assert internals.conv_layers(run, 1) == ["net.0", "net.3"]
    first = internals.conv_kernels(run, 1)
    assert first.shape == (6, 5, 5)
    np.testing.assert_array_equal(first, raw[0].weight.detach().numpy()[:, 0])
    np.testing.assert_array_equal(internals.conv_kernels(run, 1, "net.3"), raw[3].weight.detach().numpy())
    with pytest.raises(ValueError, match="net.0"):
        internals.conv_kernels(run, 1, "net.7")
    drift = internals.kernel_drift(run, "net.3")
    assert len(drift) == 16 and (drift["from_first"] == 0).all()
    assert len(internals.kernel_drift(run)) == 6                        # None: the first conv, net.0
    model = runs.load_model(run, 1)
    np.testing.assert_array_equal(internals.conv_kernels(run, 1, model=model), first)
    monkeypatch.setattr(runs, "load_model", lambda *a, **k: pytest.fail("conv_kernels loaded the model"))
    np.testing.assert_array_equal(internals.conv_kernels(run, 1, "net.0"), first)   # read from the checkpoint
