"""analysis.fragility against hand formulas: FGSM on a linear model, flip thresholds of a 1-D model."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import torch
import torch.nn as nn

from analysis import fragility
from model import runs
from model.net import to_input


class MeanModel(nn.Module):
    """Two logits: [a * mean(x), c]. Class 0 wins while a * mean(x) > c, so thresholds are analytic."""

    def __init__(self, a: float = 1.0, c: float = 0.3):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))                                     # (B,)
        return torch.stack([self.a * m, torch.full_like(m, self.c)], dim=1)   # (B,2)


def constant_image(v: float) -> torch.Tensor:
    return torch.full((1, 1, 28, 28), v)


# ----------------------------------------------------------------------------- FGSM

def test_fgsm_on_a_linear_model_equals_the_hand_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([3, 0, 9, 3])
    x_before, params_before = x.clone(), [p.detach().clone() for p in model.parameters()]

    adv = fragility.fgsm(model, x, target, 0.1)

    # hand: d CE / d x = W^T (softmax(Wx + b) - onehot(target))
    W = model[1].weight.detach().double().numpy()                    # (10,784)
    b = model[1].bias.detach().double().numpy()
    xf = x.reshape(4, 784).double().numpy()
    p = scipy.special.softmax(xf @ W.T + b, axis=1)
    grad = (p - np.eye(10)[target.numpy()]) @ W                       # (4,784)
    expected = np.clip(xf + 0.1 * np.sign(grad), 0, 1)
    clear = np.abs(grad) > 1e-6                                       # where float32 agrees on the sign
    assert clear.mean() > 0.99
    np.testing.assert_allclose(adv.reshape(4, 784).numpy()[clear], expected[clear], atol=1e-6)
    assert adv.min() >= 0 and adv.max() <= 1

    assert torch.equal(x, x_before)                                   # nothing mutated
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params_before))
    assert all(p.grad is None for p in model.parameters())


def test_fgsm_epsilon_per_example_and_zero():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    x = torch.rand(3, 1, 28, 28) * 0.5 + 0.25                         # away from the clamp
    y = torch.tensor([1, 2, 3])
    assert torch.equal(fragility.fgsm(model, x, y, 0.0), x)
    adv = fragility.fgsm(model, x, y, torch.tensor([0.0, 0.05, 0.2]))
    steps = (adv - x).abs().reshape(3, -1).amax(1)
    torch.testing.assert_close(steps, torch.tensor([0.0, 0.05, 0.2]))


# ----------------------------------------------------------------------------- min flip epsilon

@pytest.mark.parametrize("v,label,threshold", [
    (0.6, 0, 0.3),      # class 0: mean drops as v - eps; flips when v - eps < 0.3
    (0.45, 0, 0.15),
    (0.1, 1, 0.2),      # class 1: mean rises as v + eps; flips when v + eps > 0.3
])
def test_min_flip_epsilon_matches_the_analytic_threshold(v, label, threshold):
    eps = fragility.min_flip_epsilon(MeanModel(), constant_image(v), label, eps_max=0.5, tol=1e-3)
    assert threshold <= eps <= threshold + 1e-3 + 1e-6


def test_min_flip_epsilon_with_clamping():
    # half the pixels at 0 (they stay 0 under a negative step), half at 0.9: mean = (0.9 - eps) / 2
    x = constant_image(0.9)
    x[..., :, :14] = 0.0
    eps = fragility.min_flip_epsilon(MeanModel(), x, 0, tol=1e-4)
    assert eps == pytest.approx(0.9 - 2 * 0.3, abs=2e-4)


def test_min_flip_epsilon_none_and_zero():
    assert fragility.min_flip_epsilon(MeanModel(), constant_image(0.6), 0, eps_max=0.2) is None
    assert fragility.min_flip_epsilon(MeanModel(), constant_image(0.1), 0) == 0.0   # already class 1


def test_min_flip_epsilon_on_the_fixture_model_flips_there(fixture_run, mnist_root):
    from data.mnist import load_raw
    raw = load_raw(mnist_root)
    model = runs.load_model(fixture_run)
    x = to_input(torch.tensor(raw["t10k-images-idx3-ubyte"][:20]))
    with torch.no_grad():
        pred = model(x).argmax(1)
    i = 0
    eps = fragility.min_flip_epsilon(model, x[i:i + 1], int(pred[i]), eps_max=1.0)
    assert eps is not None and 0 < eps <= 1.0
    with torch.no_grad():
        assert model(fragility.fgsm(model, x[i:i + 1], pred[i:i + 1], eps)).argmax().item() != pred[i].item()


# ----------------------------------------------------------------------------- by class

def test_robustness_by_class_hand_checked():
    # uint8 constant images; thresholds: class 0 -> v - 0.3, class 1 -> 0.3 - v (v = level / 255)
    levels = {0: [128, 153, 179, 204, 26], 1: [0, 13, 26, 38, 128]}  # the last of each is misclassified
    images = np.concatenate([np.broadcast_to(np.array(ls, dtype=np.uint8)[:, None, None], (len(ls), 28, 28))
                             for ls in levels.values()])            # (10,28,28)
    labels = np.array([0] * 5 + [1] * 5)
    df = fragility.robustness_by_class(MeanModel(), images, labels, n_per_class=10, eps_max=0.45, tol=1e-4)
    df = df.set_index("class")
    v0 = np.array(levels[0][:4]) / 255
    v1 = np.array(levels[1][:4]) / 255
    t0 = np.where(v0 - 0.3 <= 0.45, v0 - 0.3, np.inf)                # 204/255 - 0.3 = 0.5 > eps_max: never
    t1 = 0.3 - v1
    assert df.loc[0, "n"] == 5 and df.loc[0, "n_correct"] == 4 and df.loc[1, "n_correct"] == 4
    assert df.loc[0, "median_eps"] == pytest.approx(np.median(t0), abs=2e-4)
    assert df.loc[1, "median_eps"] == pytest.approx(np.median(t1), abs=2e-4)
    assert df.loc[0, "never_flipped"] == 0.25 and df.loc[1, "never_flipped"] == 0.0
    for e in fragility.EPS_GRID:
        assert df.loc[0, f"flipped_at_{e:g}"] == pytest.approx((t0 < e).mean())
        assert df.loc[1, f"flipped_at_{e:g}"] == pytest.approx((t1 < e).mean())
    assert df.loc[1, "flipped_at_0.2"] == 0.5                         # 0.198 and 0.151 flip, 0.249 and 0.3 do not


def test_robustness_by_class_samples_with_a_seed(fixture_run, mnist_root):
    from data.mnist import load_raw
    raw = load_raw(mnist_root)
    images, labels = raw["t10k-images-idx3-ubyte"][:300], raw["t10k-labels-idx1-ubyte"][:300]
    model = runs.load_model(fixture_run)
    a = fragility.robustness_by_class(model, images, labels, n_per_class=2, seed=3, tol=0.02)
    b = fragility.robustness_by_class(model, images, labels, n_per_class=2, seed=3, tol=0.02)
    assert list(a["class"]) == list(range(10)) and (a["n"] == 2).all()
    assert a.equals(b)
    other = fragility.robustness_by_class(model, images, labels, n_per_class=2, seed=4, tol=0.02)
    assert not a[["n_correct", "median_eps"]].equals(other[["n_correct", "median_eps"]])   # the seed matters


def test_robustness_by_class_on_the_fixture_model_by_hand(fixture_run, mnist_root):
    """Every example taken (n_per_class above the class sizes): counts and flip shares from plain
    model calls and `fgsm`, one example at a time."""
    from data.mnist import load_raw
    raw = load_raw(mnist_root)
    images, labels = raw["t10k-images-idx3-ubyte"][:16], raw["t10k-labels-idx1-ubyte"][:16].astype(np.int64)
    model = runs.load_model(fixture_run)
    got = fragility.robustness_by_class(model, images, labels, n_per_class=100, eps_max=0.5, tol=1e-2)
    got = got.set_index("class")
    x = to_input(torch.tensor(images))
    y = torch.tensor(labels)
    with torch.no_grad():
        correct = (model(x).argmax(1) == y).numpy()
    for c in np.unique(labels):
        mine = np.flatnonzero((labels == c) & correct)
        assert got.loc[c, "n"] == (labels == c).sum() and got.loc[c, "n_correct"] == len(mine)
        for e in fragility.EPS_GRID:
            with torch.no_grad():
                flips = (model(fragility.fgsm(model, x[mine], y[mine], e)).argmax(1) != y[mine]).numpy()
            expected = flips.mean() if len(mine) else np.nan
            assert got.loc[c, f"flipped_at_{e:g}"] == pytest.approx(expected, nan_ok=True)
        if len(mine):
            eps = [fragility.min_flip_epsilon(model, x[i:i + 1], int(labels[i]), eps_max=0.5, tol=1e-2) for i in mine]
            never = np.mean([v is None for v in eps])
            assert got.loc[c, "never_flipped"] == pytest.approx(never)
            median = np.median([np.inf if v is None else v for v in eps])
            assert got.loc[c, "median_eps"] == pytest.approx(median if np.isfinite(median) else np.nan, abs=1e-6,
                                                             nan_ok=True)
