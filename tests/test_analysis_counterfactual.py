"""analysis.counterfactual: the smallest L2 change that flips the answer, against closed forms.

Reference: for a linear model z = W x + b, the smallest change that moves x from class c onto the decision
boundary with class t is the distance |(w_c - w_t)·x + b_c - b_t| / ||w_c - w_t|| (a point to a hyperplane),
when the pixel range does not bind and every other class stays far below. With the range binding, the
smallest change is d_i = clip(lam * g_i, -x_i, 1 - x_i) for g = w_t - w_c and the lam > 0 that puts x + d
on the boundary (the KKT conditions of a projection onto a half-space inside a box), found by bisection on
lam independently of the code under test.
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
import torch.nn as nn

from analysis import counterfactual as cf
from model import runs

C, T = 3, 7   # the linear models answer C; the target is T


def linear_model(seed: int, x: torch.Tensor, gap: float) -> nn.Module:
    """Flatten + Linear(784,10) with seeded weights, biases set so that on x class C leads class T by `gap`
    logits and every other class sits 1000 below (out of reach of any change of norm < 28)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(10, 784, generator=g) * 0.5
    z = w @ x.flatten()
    b = torch.full((10,), -1000.0) - z
    b[C], b[T] = -z[C] + gap, -z[T]
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with torch.no_grad():
        model[1].weight.copy_(w)
        model[1].bias.copy_(b)
    return model


def boundary_distance(model: nn.Module, x: torch.Tensor) -> float:
    """The closed form |(w_c - w_t)·x + b_c - b_t| / ||w_c - w_t||."""
    w, b = model[1].weight.detach().double(), model[1].bias.detach().double()
    dw = w[C] - w[T]
    return float((dw @ x.double().flatten() + b[C] - b[T]).abs() / dw.norm())


def interior_image(seed: int) -> torch.Tensor:
    """(1,1,28,28) pixels in [0.4, 0.6], so a change of a few tenths never reaches 0 or 1."""
    return 0.4 + 0.2 * torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(100 + seed))


def check_valid(r: dict, x: torch.Tensor) -> None:
    """The result is an image in [0,1], the difference is image - x, and the radius is its norm."""
    assert r["image"].shape == (28, 28) and r["difference"].shape == (28, 28)
    assert r["image"].min() >= 0.0 and r["image"].max() <= 1.0
    assert np.allclose(r["image"] - x[0, 0].numpy(), r["difference"], atol=1e-6)
    assert r["radius"] == pytest.approx(float(np.linalg.norm(r["difference"].astype(np.float64))), rel=1e-6)
    assert r["probabilities"].shape == (10,) and r["probabilities"].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("seed, gap", [(0, 3.0), (1, 10.0), (2, 25.0)])
def test_linear_model_radius_matches_the_closed_form(seed, gap):
    x = interior_image(seed)
    model = linear_model(seed, x, gap)
    distance = boundary_distance(model, x)
    r = cf.smallest_change(model, x, T)
    assert r["found"] and r["prediction"] == T and r["original_prediction"] == C
    assert distance <= r["radius"] <= 1.05 * distance      # never below the closed form, within 5% above it
    assert np.abs(r["difference"]).max() < 0.4               # the pixel range did not bind: the closed form holds
    check_valid(r, x)
    with torch.no_grad():                                    # the image returned really gets the target
        assert int(model(torch.from_numpy(r["image"])[None, None]).argmax()) == T


def box_distance(model: nn.Module, x: torch.Tensor) -> float:
    """The smallest change within [0,1] that reaches the C/T boundary, by the KKT form in the module doc."""
    w, b = model[1].weight.detach().double(), model[1].bias.detach().double()
    g, xf = w[T] - w[C], x.double().flatten()
    need = float((w[C] - w[T]) @ xf + b[C] - b[T])          # how much (w_t - w_c)·d must reach

    def change(lam: float) -> torch.Tensor:
        return torch.minimum(torch.maximum(lam * g, -xf), 1 - xf)
    lo, hi = 0.0, 1.0
    while float(g @ change(hi)) < need:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if float(g @ change(mid)) < need else (lo, mid)
    return float(change(hi).norm())


def test_with_the_pixel_range_binding_the_radius_matches_the_box_constrained_closed_form():
    x = (torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(7)) > 0.5).float()   # pixels 0 or 1
    model = linear_model(3, x * 0.8 + 0.1, 0.0)             # weights seeded; biases redone below for x itself
    with torch.no_grad():
        z = model[1].weight @ x.flatten()
        model[1].bias.copy_(torch.full((10,), -1000.0) - z)
        model[1].bias[C], model[1].bias[T] = -z[C] + 8.0, -z[T]
    reference, unconstrained = box_distance(model, x), boundary_distance(model, x)
    assert reference > 1.2 * unconstrained                   # the range really binds here
    r = cf.smallest_change(model, x, T)
    assert r["found"] and reference * 0.999 <= r["radius"] <= 1.05 * reference
    check_valid(r, x)


def test_unreachable_target_says_so():
    x = interior_image(0)
    model = linear_model(0, x, 10.0)
    distance = boundary_distance(model, x)
    r = cf.smallest_change(model, x, T, max_radius=0.5 * distance)
    assert not r["found"] and r["prediction"] == C
    assert r["radius"] <= 0.5 * distance * (1 + 1e-5)
    assert "not reached within radius" in r["message"]
    check_valid(r, x)


def test_the_class_already_predicted_needs_no_change():
    x = interior_image(0)
    r = cf.smallest_change(linear_model(0, x, 3.0), x, C)
    assert r["found"] and r["radius"] == 0.0 and not r["difference"].any() and r["prediction"] == C


def test_bad_target_and_shape_are_refused():
    x = interior_image(0)
    model = linear_model(0, x, 3.0)
    with pytest.raises(ValueError, match="target must be a class in 0..9"):
        cf.smallest_change(model, x, 10)
    with pytest.raises(ValueError, match=r"one image \(1,1,28,28\)"):
        cf.smallest_change(model, x[0], T)


@pytest.fixture(scope="module")
def fixture_image(fixture_run, mnist_root):
    """The fixture run's last model and its first validation image the model gets right, with its label."""
    from data.mnist import load_mnist
    model = runs.load_model(fixture_run)
    logits, labels, index = runs.split_arrays(runs.load_predictions(fixture_run, 3), "val")
    i = int(np.flatnonzero(logits.argmax(1) == labels)[0])
    images = load_mnist(mnist_root).val_x                    # classic split: val = official train[50000:]
    x = images[int(index[i]) - 50000].float().div(255)[None, None]
    return model, x, int(labels[i])


def test_cnn_result_is_valid_deterministic_and_fast(fixture_image):
    model, x, label = fixture_image
    target = (label + 1) % 10
    before = {k: v.clone() for k, v in model.state_dict().items()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # timed on one thread: two threads on cores shared by other jobs spin-wait
    try:
        started = time.perf_counter()
        r = cf.smallest_change(model, x, target)
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    print(f"\nsmallest_change on the fixture run's CNN: {seconds:.2f} s, radius {r['radius']:.3f}, "
          f"{r['evaluations']} image gradients")
    assert r["found"] and r["prediction"] == target and r["original_prediction"] == label
    check_valid(r, x)
    with torch.no_grad():                                    # an independent look at the image returned
        assert int(model(torch.from_numpy(r["image"])[None, None]).argmax()) == target
    assert r["lower"] <= r["radius"] <= r["lower"] * 1.0101  # the bracket closed within tol
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and not model.training
    assert seconds < 5                                       # about 0.5 s of CPU; a couple of seconds shared
    again = cf.smallest_change(model, x, target, restarts=1, seed=5)
    same = cf.smallest_change(model, x, target, restarts=1, seed=5)
    assert np.array_equal(again["image"], same["image"]) and again["radius"] == same["radius"]
    assert again["found"] and again["prediction"] == target


def test_cli_prints_json(fixture_run, mnist_root, capsys):
    code = cf.main([fixture_run.name, "--split", "val", "--index", "3", "--target", "4",
                    "--runs-dir", str(fixture_run.parent), "--data-root", str(mnist_root)])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["found"] is True and out["prediction"] == 4 and out["target"] == 4 and out["epoch"] == 3
    assert out["official_file"] == "train" and out["official_row"] == 50003
    assert len(out["probabilities"]) == 10 and int(np.argmax(out["probabilities"])) == 4 and out["radius"] >= 0


@pytest.mark.parametrize("argv, message", [
    (["ghost", "--index", "0", "--target", "4"], "no such run"),
    (["{run}", "--index", "500", "--target", "4"], "--index must be in 0..499"),
    (["{run}", "--index", "0", "--target", "10"], "--target must be a class in 0..9"),
    (["{run}", "--index", "0", "--target", "4", "--epoch", "9"], "epoch_009.safetensors: missing"),
    (["{run}", "--index", "0", "--target", "4", "--split", "train"], "invalid choice"),
    (["{run}", "--target", "4"], "--index"),
])
def test_cli_bad_input_exits_1_with_a_message(fixture_run, capsys, argv, message):
    argv = [a.replace("{run}", fixture_run.name) for a in argv] + ["--runs-dir", str(fixture_run.parent)]
    assert cf.main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
