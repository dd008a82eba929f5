"""analysis.attributions against references: weights of linear models, IG completeness, plain Captum
calls, Grad-CAM computed by hand, and sequential results for concurrent calls on one shared model."""
from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn as nn
import torch.nn.functional as F
from captum.attr import (Deconvolution, DeepLift, GradientShap, GuidedBackprop, GuidedGradCam, IntegratedGradients,
                         LayerAttribution, LayerGradCam, NoiseTunnel, Saliency)

from analysis import attributions as A
from model.net import VARIANTS, Net

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")   # Captum's "setting hooks" notices


@pytest.fixture(scope="module")
def net() -> Net:
    torch.manual_seed(0)
    return Net().eval()


@pytest.fixture(scope="module")
def small() -> Net:
    """The seed CNN's "small-fc" variant (fc1 of 128 units): same layers, cheaper, for the slower tests."""
    torch.manual_seed(0)
    return Net(VARIANTS["small-fc"]).eval()


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """Four digit-like images (B,1,28,28): strokes on black, as MNIST."""
    g = torch.Generator().manual_seed(1)
    x = torch.zeros(4, 1, 28, 28)
    for i in range(4):
        r, c = 6 + 2 * i, 5 + i
        x[i, 0, r:r + 14, c:c + 3] = 0.9                   # a vertical stroke
        x[i, 0, r:r + 3, c:c + 12] = 0.8                   # a horizontal one
    return (x + 0.1 * torch.rand(x.shape, generator=g) * (x > 0)).clamp(0, 1)


def linear_model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()


class OnePixel(nn.Module):
    """Logit k = (k+1) * x[0, 5, 7]: only one pixel matters."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.arange(1.0, 11.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, 5, 7].unsqueeze(1) * self.scale       # (B,10)


# ----------------------------------------------------------------------------- references

def test_saliency_of_linear_model_is_its_weight_row():
    model = linear_model()
    x = torch.rand(3, 1, 28, 28)
    w = model[1].weight.detach()                              # (10,784)
    signed = A.attribute(model, x, torch.tensor([2, 5, 9]), "saliency", abs=False)
    for i, k in enumerate([2, 5, 9]):
        torch.testing.assert_close(signed[i].reshape(-1), w[k])
    magnitude = A.attribute(model, x, 4, "saliency")          # default abs=True, as Captum
    torch.testing.assert_close(magnitude, w[4].abs().reshape(1, 1, 28, 28).expand(3, 1, 28, 28))


def test_input_x_gradient_of_linear_model():
    model = linear_model()
    x = torch.rand(2, 1, 28, 28)
    out = A.attribute(model, x, 7, "input_x_gradient")
    torch.testing.assert_close(out, x * model[1].weight.detach()[7].reshape(1, 1, 28, 28))


@pytest.mark.parametrize("baseline", ["black", "blurred", "mean-digit"])
def test_integrated_gradients_completeness(net, digits, baseline):
    mean_image = torch.full((1, 28, 28), 0.13)
    t = torch.tensor([3, 1, 4, 1])
    attr = A.attribute(net, digits, t, "integrated_gradients", steps=50, baseline=baseline, mean_image=mean_image)
    base = A.make_baseline(digits, baseline, mean_image=mean_image)
    with torch.no_grad():
        diff = net(digits).gather(1, t[:, None])[:, 0] - net(base).gather(1, t[:, None])[:, 0]    # f(x) - f(b)
    sums = attr.sum(dim=(1, 2, 3))
    # Relative to the map's total mass: at random init f(x) - f(b) is ~0.01 after cancellations, so
    # the ReLU/max-pool kinks crossed on the path would dominate an error relative to it alone.
    scale = torch.maximum(diff.abs(), attr.abs().sum(dim=(1, 2, 3)))
    assert torch.all((sums - diff).abs() <= 1e-2 * scale), (sums, diff, scale)
    assert diff.abs().max() > 1e-2                             # not trivially 0 = 0


def test_ig_delta_and_plain_captum(net, digits):
    attr, delta = A.attribute_with_delta(net, digits, 2, "integrated_gradients")
    ref, ref_delta = IntegratedGradients(net).attribute(digits, target=2, return_convergence_delta=True)
    torch.testing.assert_close(attr, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(delta, ref_delta, atol=1e-6, rtol=1e-4)
    _, dl_delta = A.attribute_with_delta(net, digits, 2, "deeplift")
    assert dl_delta.abs().max() < 1e-3                         # DeepLift's summation-to-delta
    with pytest.raises(ValueError, match="convergence delta"):
        A.attribute_with_delta(net, digits, 2, "saliency")


def test_blurred_baseline_is_a_normalised_gaussian():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 14, 14] = 1.0
    b = A.make_baseline(x, "blurred", blur_sigma=2.0)[0, 0]
    assert abs(float(b.sum()) - 1.0) < 1e-5                    # mass kept away from the border
    r = torch.arange(28.0) - 14
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 2.0 ** 2))
    g = g / g.sum()
    torch.testing.assert_close(b, g, atol=2e-4, rtol=1e-2)     # truncated at 3 sigma


def test_gaussian_blur_near_the_border_by_hand():
    """Zero padding: a pixel in the corner loses the mass that falls outside (sigma 1, radius 3)."""
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 0, 0] = 1.0
    out = A.gaussian_blur(x, 1.0)[0, 0].double()
    k = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    k /= k.sum()                                               # the kernel, truncated at 3 sigma
    expected = np.zeros((28, 28))
    expected[:4, :4] = np.outer(k[3:], k[3:])                  # only the right half of it lands in the image
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-7)


def test_occlusion_of_a_one_pixel_model_lights_that_pixel_only():
    x = torch.rand(2, 1, 28, 28)
    out = A.attribute(OnePixel(), x, torch.tensor([0, 4]), "occlusion", window=1, stride=1)
    expected = torch.zeros_like(x)
    expected[0, 0, 5, 7] = 1 * x[0, 0, 5, 7]                   # score drop when the pixel is blacked out
    expected[1, 0, 5, 7] = 5 * x[1, 0, 5, 7]
    torch.testing.assert_close(out, expected)


def place_by_scipy(cam: np.ndarray, offset: float, stride: float, size: int = 28) -> np.ndarray:
    """Reference placement of one (h,w) map: sample unit coordinate (pixel - offset)/stride, linear, clamped."""
    u = (np.arange(size) - offset) / stride
    rows, cols = np.meshgrid(u, u, indexing="ij")
    return scipy.ndimage.map_coordinates(cam, [rows, cols], order=1, mode="nearest")


def test_gradcam_equals_hand_computation(net, digits):
    t = torch.tensor([0, 1, 2, 3])
    out = A.attribute(net, digits, t, "gradcam", layer="conv2")
    # by hand: A = conv2 output, alpha_k = mean over space of d score / d A_k, cam = ReLU(sum_k alpha_k A_k)
    feats = net.pool1(net.relu1(net.conv1(digits)))
    acts = net.conv2(feats).detach().requires_grad_()                             # (B,64,11,11)
    logits = net.fc2(net.relu3(net.fc1(net.flatten(net.pool2(net.relu2(acts))))))
    (grad,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), acts)
    cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * acts).sum(dim=1, keepdim=True))   # (B,1,11,11)
    # conv2's unit i sees input pixels 2i..2i+7, centred on 2i + 3.5 (hand-computed, see below)
    ref = np.stack([place_by_scipy(c[0], 3.5, 2.0) for c in cam.detach().double().numpy()])[:, None]
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-6, rtol=1e-4)


def test_receptive_fields_of_the_seed_cnn(net):
    # conv1 3x3: unit j sees pixels j..j+2, centre j+1. pool1 2x2 stride 2 then conv2 3x3: unit i sees
    # pool units i..i+2 = conv1 units 2i..2i+5 = pixels 2i..2i+7: size 8, centre 2i + 3.5, stride 2.
    rf1 = A.receptive_field(A.forward_layers(net, "conv1"))
    rf2 = A.receptive_field(A.forward_layers(net, "conv2"))
    assert (rf1.offset, rf1.stride, rf1.size) == ((1.0, 1.0), (1, 1), (3, 3))
    assert (rf2.offset, rf2.stride, rf2.size) == ((3.5, 3.5), (2, 2), (8, 8))
    assert [type(m).__name__ for m in A.forward_layers(net, "conv2")] == [
        "Conv2d", "Identity", "ReLU", "MaxPool2d", "Conv2d"]


class Backwards(nn.Module):
    """Modules registered in the opposite order to the one forward runs them in."""

    def __init__(self) -> None:
        super().__init__()
        self.late = nn.Conv2d(2, 2, 3, stride=2, padding=1, dilation=2)
        self.pool = nn.AvgPool2d(3, stride=1, padding=1)
        self.early = nn.Conv2d(1, 2, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.late(self.pool(self.early(x)))


def test_receptive_field_follows_forward_order_padding_and_dilation():
    layers = A.forward_layers(Backwards(), "late")
    assert [type(m).__name__ for m in layers] == ["Conv2d", "AvgPool2d", "Conv2d"]
    rf = A.receptive_field(layers)
    # early 5x5 pad 2: offset 0, size 5; pool 3x3 pad 1: offset 0, size 7; late dilated 3x3 (k_eff 5),
    # pad 1, stride 2: offset (5-1)/2 - 1 = 1, size 7 + 4 = 11, stride 2
    assert (rf.offset, rf.stride, rf.size) == ((1.0, 1.0), (2, 2), (11, 11))
    rect = A.receptive_field([nn.Conv2d(1, 1, (3, 5), stride=(1, 2))])
    assert (rect.offset, rect.stride, rect.size) == ((1.0, 2.0), (1, 2), (3, 5))
    with pytest.raises(ValueError, match="Linear"):
        A.receptive_field([nn.Conv2d(1, 1, 3), nn.Linear(4, 4)])


@pytest.mark.parametrize("i, j", [(1, 1), (4, 6), (9, 2), (5, 5)])
def test_one_active_conv2_unit_lands_on_its_receptive_field(net, i, j):
    rf = A.receptive_field(A.forward_layers(net, "conv2"))
    one_hot = torch.zeros(1, 1, 11, 11)
    one_hot[0, 0, i, j] = 1.0
    out = A.place_on_input(one_hot, rf)[0, 0].numpy()                       # (28,28)
    peak = np.argwhere(np.isclose(out, out.max(), rtol=0, atol=1e-6))
    assert sorted({int(r) for r, _ in peak}) == [2 * i + 3, 2 * i + 4]
    assert sorted({int(c) for _, c in peak}) == [2 * j + 3, 2 * j + 4]
    np.testing.assert_allclose(out, place_by_scipy(one_hot[0, 0].numpy(), 3.5, 2.0), atol=1e-7)


def test_placement_clamps_at_the_edges():
    rf = A.ReceptiveField((3.5, 3.5), (2, 2), (8, 8))
    m = torch.arange(121.0).reshape(1, 1, 11, 11)
    out = A.place_on_input(m, rf)[0, 0]
    assert torch.equal(out[:4, :4], torch.zeros(4, 4))                  # pixels 0..3 read unit 0 (u <= 0)
    assert torch.equal(out[24:, 24:], torch.full((4, 4), 120.0))        # pixels 24..27 read unit 10


class Spot(nn.Module):
    """One channel of box filters: conv2 peaks at the unit whose receptive field holds the bright spot."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 1, 3)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(1, 1, 3)
        self.relu2 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(121, 2)
        with torch.no_grad():
            for conv in (self.conv1, self.conv2):
                conv.weight.fill_(1.0)
                conv.bias.zero_()
            self.fc.weight.fill_(1.0)
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.relu2(self.conv2(self.pool1(self.relu1(self.conv1(x)))))))


def test_gradcam_peaks_on_the_spot():
    """A 2x2 spot at rows 5-6, cols 21-22 is centred on conv2 unit (1, 9) (centre 5.5, 21.5). A plain
    resize of 11x11 to 28x28 would draw that unit at (3.4, 23.8), off the spot."""
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 5:7, 21:23] = 1.0
    out = A.attribute(Spot().eval(), x, 0, "gradcam", layer="conv2")[0, 0].numpy()
    peak = np.argwhere(np.isclose(out, out.max(), rtol=0, atol=1e-6 * out.max()))
    assert len(peak) and all(5 <= r <= 6 and 21 <= c <= 22 for r, c in peak), peak
    spot = Spot().eval()
    resized = LayerAttribution.interpolate(LayerGradCam(spot, spot.conv2).attribute(x, target=0), (28, 28),
                                           interpolate_mode="bilinear")[0, 0].detach()
    r, c = divmod(int(resized.argmax()), 28)
    assert not (5 <= r <= 6 and 21 <= c <= 22), (r, c)                          # the old drawing misses it


class SamePadding(nn.Module):
    """A conv whose map already is the input grid (3x3, padding 1: offset 0, stride 1)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(7)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool = nn.AvgPool2d(4)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.pool(self.relu1(self.conv(x)))))


def test_gradcam_and_guided_gradcam_equal_captum_where_the_geometry_is_trivial(digits):
    model = SamePadding().eval()
    rf = A.receptive_field(A.forward_layers(model, "conv"))
    assert (rf.offset, rf.stride) == ((0.0, 0.0), (1, 1))
    t = torch.tensor([1, 7, 3, 0])
    fresh = copy.deepcopy(model)
    ref_cam = LayerAttribution.interpolate(LayerGradCam(fresh, fresh.conv).attribute(digits, target=t,
                                                                                    relu_attributions=True), (28, 28))
    torch.testing.assert_close(A.attribute(model, digits, t, "gradcam", layer="conv"), ref_cam.detach(),
                               atol=1e-6, rtol=1e-5)
    ref = GuidedGradCam(fresh, fresh.conv).attribute(digits, target=t)
    ours = A.attribute(model, digits, t, "guided_gradcam", layer="conv")
    assert ref.abs().sum() > 0
    torch.testing.assert_close(ours, ref.detach(), atol=1e-6, rtol=1e-5)


def test_guided_gradcam_is_guided_backprop_times_placed_gradcam(net, digits):
    t = torch.tensor([1, 7, 3, 0])
    gbp = GuidedBackprop(copy.deepcopy(net)).attribute(digits, target=t).detach()
    cam = A.attribute(net, digits, t, "gradcam", layer="conv2")
    torch.testing.assert_close(A.attribute(net, digits, t, "guided_gradcam"), gbp * cam, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("layer", ["conv1", "conv2"])
def test_gradcam_shape_and_non_negative(small, digits, layer):
    out = A.attribute(small, digits[:2], torch.tensor([7, 2]), "gradcam", layer=layer)
    assert out.shape == (2, 1, 28, 28)
    assert (out >= 0).all() and out.sum() > 0


@pytest.mark.parametrize("method", A.METHODS)
def test_every_method_keeps_the_input_shape(small, digits, method):
    opts = {"baselines": "black"} if method == "gradient_shap" else {}
    for target in (5, torch.tensor([9, 0])):
        out = A.attribute(small, digits[:2], target, method, **opts)
        assert out.shape == (2, 1, 28, 28) and out.dtype == torch.float32
        assert torch.isfinite(out).all() and not out.requires_grad
    assert set(A.METHOD_INFO) == set(A.METHODS) == set(A.OPTIONS)


def test_hook_methods_equal_plain_captum(net, digits):
    digits, t = digits[:2], torch.tensor([1, 7])
    fresh = copy.deepcopy(net)
    refs = {
        "deeplift": DeepLift(fresh).attribute(digits, baselines=torch.zeros_like(digits), target=t),
        "guided_backprop": GuidedBackprop(fresh).attribute(digits, target=t),
        "deconvolution": Deconvolution(fresh).attribute(digits, target=t),
    }
    for method, ref in refs.items():
        torch.testing.assert_close(A.attribute(net, digits, t, method), ref.detach(), atol=1e-6, rtol=1e-5,
                                   msg=method)


def test_smoothgrad_equals_captum_noise_tunnel(small, digits):
    torch.manual_seed(11)
    ref = NoiseTunnel(Saliency(small)).attribute(digits, nt_type="smoothgrad", nt_samples=6, stdevs=0.2,
                                               target=torch.tensor([1, 2, 3, 4]))
    ours = A.attribute(small, digits, torch.tensor([1, 2, 3, 4]), "smoothgrad", samples=6, noise_std=0.2, seed=11,
                       internal_batch_size=5)                 # chunked gradients, same draws
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)


def test_gradient_shap_equals_captum(small, digits):
    refs = torch.stack([torch.zeros(1, 28, 28), torch.full((1, 28, 28), 0.2), torch.rand(1, 28, 28)])
    np.random.seed(5)
    torch.manual_seed(5)
    ref = GradientShap(small).attribute(digits, baselines=refs, target=6, n_samples=7, stdevs=0.05)
    ours = A.attribute(small, digits, 6, "gradient_shap", baselines=refs, samples=7, noise_std=0.05, seed=5)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)


def test_random_methods_are_reproducible_and_seeded(small, digits):
    a = A.attribute(small, digits, 3, "smoothgrad", seed=1)
    torch.manual_seed(123)                                     # the global RNG plays no part
    assert torch.equal(a, A.attribute(small, digits, 3, "smoothgrad", seed=1))
    assert not torch.equal(a, A.attribute(small, digits, 3, "smoothgrad", seed=2))


# ----------------------------------------------------------------------------- the class mean

def test_class_mean_attribution_is_the_mean_of_single_maps(small, digits):
    single = Saliency(copy.deepcopy(small)).attribute(digits.clone().requires_grad_(), target=4)   # (4,1,28,28), |grad|
    out = A.class_mean_attribution(small, digits, "saliency", 4, batch_size=3)
    assert out.shape == (1, 28, 28)
    torch.testing.assert_close(out, single.detach().mean(dim=0), atol=1e-7, rtol=1e-5)
    as_uint8 = (digits[:, 0] * 255).round().to(torch.uint8)
    again = A.class_mean_attribution(small, as_uint8, "saliency", 4)
    torch.testing.assert_close(again, A.class_mean_attribution(small, as_uint8.unsqueeze(1).float() / 255, "saliency", 4))


def tiny_run(folder) -> "Path":
    """A run folder in the real format (config.json + one checkpoint) without training."""
    from model import runs
    from model.net import NetConfig

    torch.manual_seed(4)
    cfg = NetConfig(fc1_units=16)
    runs.atomic_write_json(folder / "config.json", {"name": "tiny", "model": cfg.to_dict()})
    runs.atomic_save_safetensors(runs.checkpoint_path(folder, 2), Net(cfg).state_dict())
    return folder


def test_class_mean_attribution_cached(tmp_path, mnist_root):
    from data.mnist import load_raw
    from model.runs import load_model

    run = tiny_run(tmp_path)
    first = A.class_mean_attribution_cached(run, 2, 7, "saliency", n=6)
    files = list((run / "cache").glob("class_mean_attr*"))
    assert len(files) == 1 and first.shape == (28, 28)
    raw = load_raw(mnist_root)
    idx = np.flatnonzero(raw["t10k-labels-idx1-ubyte"] == 7)[:6]
    images = torch.from_numpy(raw["t10k-images-idx3-ubyte"][idx].copy()).unsqueeze(1).float() / 255   # (6,1,28,28)
    ref = Saliency(load_model(run, 2)).attribute(images.requires_grad_(), target=7).detach().mean(dim=0)[0].numpy()
    np.testing.assert_allclose(first, ref, rtol=1e-5, atol=1e-8)
    assert files[0].name.startswith("class_mean_attr__v2__saliency")      # v2: Grad-CAM maps are placed now
    (run / "checkpoints" / "epoch_002.safetensors").unlink()     # a hit does not need the model
    np.testing.assert_array_equal(A.class_mean_attribution_cached(run, 2, 7, "saliency", n=6), first)
    with pytest.raises(Exception):                             # a different key is computed: no checkpoint now
        A.class_mean_attribution_cached(run, 2, 7, "saliency", n=6, abs=False)


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("method, options, match", [
    ("lrp", {}, "unknown attribution method"),
    ("saliency", {"steps": 5}, "unknown option"),
    ("integrated_gradients", {"steps": 0}, "steps"),
    ("integrated_gradients", {"baseline": "white"}, "unknown baseline"),
    ("deeplift", {"baseline": "blurred", "blur_sigma": -1.0}, "blur_sigma"),
    ("integrated_gradients", {"baseline": "mean-digit", "mean_image": torch.zeros(5)}, "mean_image"),
    ("smoothgrad", {"noise_std": -0.1}, "noise_std"),
    ("gradient_shap", {"baselines": "blurred"}, "baselines"),
    ("occlusion", {"window": 40}, "window"),
    ("gradcam", {"layer": "fc9"}, "layer"),
    ("gradcam", {"interpolate_mode": "bilinear"}, "unknown option"),   # removed: Grad-CAM is placed, not resized
])
def test_bad_method_or_option_raises(small, digits, method, options, match):
    with pytest.raises(ValueError, match=match):
        A.attribute(small, digits[:1], 1, method, **options)


def test_bad_inputs_or_target_raise(small, digits):
    with pytest.raises(ValueError, match="inputs"):
        A.attribute(small, digits[:, 0], 1, "saliency")
    with pytest.raises(ValueError, match="target"):
        A.attribute(small, digits, torch.tensor([1, 2]), "saliency")
    with pytest.raises(ValueError, match="target"):
        A.attribute(small, digits, -1, "saliency")
    with pytest.raises(ValueError, match="target"):
        A.attribute(small, digits, 1.5, "saliency")


# ----------------------------------------------------------------------------- no shared state

def test_model_and_inputs_are_left_alone(small, digits):
    before = {k: v.clone() for k, v in small.state_dict().items()}
    x = digits[:1].clone()
    for method in A.METHODS:
        A.attribute(small, x, 3, method)
    assert all(torch.equal(before[k], v) for k, v in small.state_dict().items())
    assert all(p.grad is None for p in small.parameters())
    assert not x.requires_grad and torch.equal(x, digits[:1])
    assert not small.training
    assert all(not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks for m in small.modules())


def test_private_copy_shares_weights_but_not_hooks(net):
    handle = net.relu1.register_forward_hook(lambda *a: None)
    try:
        c = A.private_copy(net)
    finally:
        handle.remove()
    assert c.conv1.weight.data_ptr() == net.conv1.weight.data_ptr() and c.conv1 is not net.conv1
    assert not c.relu1._forward_hooks
    real = A.private_copy(net, share_weights=False)
    assert real.conv1.weight.data_ptr() != net.conv1.weight.data_ptr()


def test_training_mode_model_is_explained_in_eval_mode():
    torch.manual_seed(0)
    model = Net()
    model.drop1 = nn.Dropout(0.5)                              # make train mode visibly random
    model.train()
    x = torch.rand(2, 1, 28, 28)
    a = A.attribute(model, x, 1, "saliency")
    assert model.training
    torch.testing.assert_close(a, A.attribute(copy.deepcopy(model).eval(), x, 1, "saliency"))


def test_concurrent_calls_on_one_model_equal_sequential_calls(net, digits):
    t = torch.tensor([0, 3, 6, 9])
    methods = ("deeplift", "guided_backprop", "saliency", "gradcam", "guided_gradcam", "smoothgrad")
    rounds = 8
    expected = {m: A.attribute(net, digits, t, m, samples=3) if m == "smoothgrad" else A.attribute(net, digits, t, m)
                for m in methods}
    failures: list[str] = []
    equal: list[str] = []                                      # one entry per call that matched
    start = threading.Barrier(len(methods), timeout=60)

    def work(method: str) -> None:
        try:
            start.wait()
            for _ in range(rounds):
                opts = {"samples": 3} if method == "smoothgrad" else {}
                if torch.equal(A.attribute(net, digits, t, method, **opts), expected[method]):
                    equal.append(method)
                else:
                    failures.append(f"{method}: different result")
        except BaseException as e:  # noqa: BLE001 - a crash in a thread is a failure too
            failures.append(f"{method}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=work, args=(m,)) for m in methods]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    assert not failures, failures[:5]
    # every call ran and matched: a thread that died without reaching its except clause fails here
    assert sorted(equal) == sorted(methods * rounds)


@pytest.mark.parametrize("fault", ["wrong result", "thread exits"])
def test_the_concurrency_test_can_fail(net, digits, monkeypatch, fault):
    """The test above fails when a worker thread gets a different map, or dies of a BaseException
    (SystemExit is no Exception: an `except Exception` alone would let that thread vanish silently)."""
    real = A.attribute

    def faulty(*args, **kwargs):
        out = real(*args, **kwargs)
        if threading.current_thread() is threading.main_thread():
            return out
        if fault == "thread exits":
            raise SystemExit
        return out + 1e-3

    monkeypatch.setattr(A, "attribute", faulty)
    with pytest.raises(AssertionError):
        test_concurrent_calls_on_one_model_equal_sequential_calls(net, digits)
