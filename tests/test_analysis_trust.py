"""analysis.trust against references: scipy's Spearman, SSIM on hand cases, hand-built models whose
important pixel is known, Captum-free closed forms for deletion, infidelity and sensitivity."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
import torch.nn as nn

from analysis import trust as T
from model.net import VARIANTS, Net, to_input

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def small() -> Net:
    torch.manual_seed(0)
    return Net(VARIANTS["small-fc"]).eval()


@pytest.fixture(scope="module")
def real_digits(mnist_root) -> tuple[torch.Tensor, torch.Tensor]:
    from data.mnist import load_raw
    raw = load_raw(mnist_root)
    x = to_input(torch.from_numpy(raw["t10k-images-idx3-ubyte"][:3].copy()))          # (3,1,28,28)
    return x, torch.from_numpy(raw["t10k-labels-idx1-ubyte"][:3].astype(np.int64))


class OnePixel(nn.Module):
    """Logits (4 * x[0, 10, 12], 0, ..., 0): only one pixel matters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], 10)
        out[:, 0] = 4.0 * x[:, 0, 10, 12]
        return out


# ----------------------------------------------------------------------------- similarity measures

def test_spearman_hand_cases():
    # no ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1)); ranks of b are 1,3,2,4 -> d^2 sum 2 -> 1 - 12/60
    assert T.spearman([1.0, 2, 3, 4], [10.0, 30, 20, 40]) == pytest.approx(0.8, abs=1e-12)
    # ties get average ranks: a ranks 1.5,1.5,3,4; b ranks 1,2,3,4; Pearson of the ranks by hand
    ra, rb = np.array([1.5, 1.5, 3, 4]), np.array([1.0, 2, 3, 4])
    da, db = ra - ra.mean(), rb - rb.mean()
    expected = (da * db).sum() / np.sqrt((da ** 2).sum() * (db ** 2).sum())     # 4.5 / sqrt(4.5 * 5)
    assert T.spearman([5.0, 5, 6, 9], [1.0, 2, 3, 4]) == pytest.approx(expected, abs=1e-12)
    assert T.spearman([3.0, 2, 1], [1.0, 2, 3]) == pytest.approx(-1.0)
    assert math.isnan(T.spearman(np.ones(5), np.arange(5.0)))


def test_map_rank_correlation_ignores_pixels_zero_in_both():
    a = np.array([0, 0, 0, 0, 1, 2, 3, 4.0])
    b = np.array([0, 0, 0, 0, 4, 3, 2, 1.0])
    assert T.map_rank_correlation(a, b) == pytest.approx(-1.0)   # the 4 shared zeros would make it -0.05
    assert T.spearman(a, b) == pytest.approx(scipy.stats.spearmanr(a, b).statistic)
    assert T.map_rank_correlation(-a, a) == pytest.approx(1.0)   # on magnitudes
    assert T.map_rank_correlation(-a, a, absolute=False) == pytest.approx(-1.0)   # signed: a mirror image
    c = np.array([0, 0, -3, 0, 1, 2, -1, 4.0])                   # 3 shared zeros left out, 5 pixels kept
    assert T.map_rank_correlation(c, a, absolute=False) == pytest.approx(
        scipy.stats.spearmanr(c[[2, 4, 5, 6, 7]], a[[2, 4, 5, 6, 7]]).statistic)


def test_ssim_hand_cases():
    rng = np.random.default_rng(1)
    x = rng.random((28, 28))
    assert T.ssim(x, x) == pytest.approx(1.0)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    a, b = 0.2, 0.7                                       # constant images: only the luminance term is left
    assert T.ssim(np.full((10, 10), a), np.full((10, 10), b)) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1))
    # a 7x7 image has one full window (its centre); the formula on the whole image by hand
    p, q = rng.random((7, 7)), rng.random((7, 7))
    mp, mq = p.mean(), q.mean()
    vp, vq = p.var(ddof=1), q.var(ddof=1)
    cov = ((p - mp) * (q - mq)).sum() / (p.size - 1)
    expected = (2 * mp * mq + c1) * (2 * cov + c2) / ((mp ** 2 + mq ** 2 + c1) * (vp + vq + c2))
    assert T.ssim(p, q) == pytest.approx(expected, rel=1e-9)
    assert T.ssim(x, 1 - x) < 0
    with pytest.raises(ValueError, match="ssim"):
        T.ssim(np.zeros((6, 6)), np.zeros((6, 6)))


# ----------------------------------------------------------------------------- randomization test

def test_randomizing_nothing_gives_identical_maps(small, real_digits):
    x, y = real_digits
    table = T.randomization_test(small, x, y, "saliency", layers=())
    assert list(table["randomized"]) == ["none"]
    assert table.loc[0, "spearman"] == pytest.approx(1.0) and table.loc[0, "ssim"] == pytest.approx(1.0)
    assert table.loc[0, "spearman_signed"] == pytest.approx(1.0)
    passed, sentence = T.sanity_verdict(table)
    assert not passed and "No layer" in sentence


def test_saliency_changes_when_the_model_is_randomized(small, real_digits):
    x, y = real_digits
    before = {k: v.clone() for k, v in small.state_dict().items()}
    table = T.randomization_test(small, x, y, "saliency")
    assert list(table["layer"]) == ["none", "fc2", "fc1", "conv2", "conv1"]
    assert table["randomized"].iloc[-1] == "fc2+fc1+conv2+conv1"
    assert table["spearman"].iloc[0] == pytest.approx(1.0)
    assert table["spearman"].iloc[-1] < 0.5 and table["ssim"].iloc[-1] < 0.5
    passed, sentence = T.sanity_verdict(table)
    assert passed and sentence.startswith("Passed")
    assert all(torch.equal(before[k], v) for k, v in small.state_dict().items())    # the model is untouched
    again = T.randomization_test(small, x, y, "saliency")                          # fixed seed
    pd.testing.assert_frame_equal(table, again)


def test_guided_backprop_ignores_the_top_layer_saliency_does_not(small, real_digits):
    """Adebayo et al.: Guided Backprop barely changes when the logit layer is randomized."""
    x, y = real_digits
    gbp = T.randomization_test(small, x, y, "guided_backprop", layers=("fc2",))
    sal = T.randomization_test(small, x, y, "saliency", layers=("fc2",))
    assert gbp["spearman"].iloc[1] > 0.5 > sal["spearman"].iloc[1]   # 0.67 vs 0.23 with these seeds
    assert gbp["ssim"].iloc[1] > 2 * sal["ssim"].iloc[1]              # 0.75 vs 0.19
    assert not T.sanity_verdict(gbp)[0] and T.sanity_verdict(sal)[0]


def hand_table(values: list[float], signed: list[float] | None = None) -> pd.DataFrame:
    """A randomization table of one image (strength = |rho|), stages none, fc2, fc2+fc1."""
    signed = values if signed is None else signed
    return pd.DataFrame({"stage": range(len(values)), "randomized": ["none", "fc2", "fc2+fc1"][:len(values)],
                         "spearman": values, "spearman_strength": np.abs(values),
                         "spearman_signed": signed, "spearman_signed_strength": np.abs(signed), "ssim": values})


def test_sanity_verdict_on_hand_tables():
    passed, sentence = T.sanity_verdict(hand_table([1.0, 0.9, 0.8]))
    assert not passed and sentence.startswith("Failed") and "+0.80" in sentence
    passed, sentence = T.sanity_verdict(hand_table([1.0, 0.3, 0.1]))
    assert passed and "with fc2+fc1 randomized" in sentence and "+0.10 on the |map| (|rho| 0.10, which decided)" in sentence
    assert "already below it with fc2 randomized" in sentence
    assert T.sanity_verdict(hand_table([1.0, 0.9, 0.6]), threshold=0.7)[0]
    assert not T.sanity_verdict(hand_table([1.0, float("nan")]))[0]
    # anti-correlated maps follow the input too: judged by |rho|
    passed, sentence = T.sanity_verdict(hand_table([1.0, 0.2, 0.1], signed=[1.0, -0.4, -0.7]))
    assert not passed and "-0.70 on the signed map (|rho| 0.70, which decided)" in sentence
    assert "+0.10 on the |map|" in sentence and "negative correlation" in sentence
    passed, sentence = T.sanity_verdict(hand_table([1.0, -0.3, -0.6]))
    assert not passed and "|rho| 0.60" in sentence
    # exactly at the threshold fails; the larger |rho| is named when both are below
    assert not T.sanity_verdict(hand_table([1.0, 0.5]))[0]
    passed, sentence = T.sanity_verdict(hand_table([1.0, 0.1], signed=[1.0, -0.45]))
    assert passed and "-0.45 on the signed map (|rho| 0.45, which decided)" in sentence


def test_sanity_verdict_judges_the_mean_size_over_images():
    """Two images at rho +0.8 and -0.8 average to 0, but each map still follows its input."""
    t = hand_table([1.0, 0.0]).assign(spearman_strength=[1.0, 0.8], spearman_signed_strength=[1.0, 0.8])
    passed, sentence = T.sanity_verdict(t)
    assert not passed and "|rho| 0.80" in sentence


# ----------------------------------------------------------------------------- fake methods

FAKE_MAP = np.random.default_rng(5).normal(size=(1, 1, 28, 28)).astype(np.float32)   # signed, no zeros


def fake_method(monkeypatch, model: nn.Module, first: np.ndarray, after) -> list[bool]:
    """Make `attribute` return `first` for the model's own weights and after(first, k) for the k-th map
    computed once any weight was randomized. Returns the list of "randomized?" of each call."""
    original = {k: v.clone() for k, v in model.state_dict().items()}
    calls: list[bool] = []

    def attribute(m, inputs, target, method, **options):
        state = m.state_dict()
        calls.append(any(not torch.equal(state[k], v) for k, v in original.items()))
        out = after(first, sum(calls)) if calls[-1] else first
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))

    monkeypatch.setattr(T, "attribute", attribute)
    return calls


def test_negated_map_fails(monkeypatch, small):
    calls = fake_method(monkeypatch, small, FAKE_MAP, lambda m, k: -m)
    table = T.randomization_test(small, torch.zeros(1, 1, 28, 28), 0, "saliency")
    assert calls == [False, False, True, True, True, True]      # original, stage 0, four randomized stages
    assert table["spearman_signed"].iloc[1:].tolist() == pytest.approx([-1.0] * 4)
    assert table["spearman"].iloc[1:].tolist() == pytest.approx([1.0] * 4)
    passed, sentence = T.sanity_verdict(table)
    assert not passed and sentence.startswith("Failed") and "|rho| 1.00, which decided" in sentence


def test_inverted_non_negative_map_fails(monkeypatch, small):
    """max - map ranks every pixel in reverse: rho = -1 on |map| and signed map alike (the old verdict passed it)."""
    original = np.abs(FAKE_MAP)
    fake_method(monkeypatch, small, original, lambda m, k: m.max() - m)
    table = T.randomization_test(small, torch.zeros(1, 1, 28, 28), 0, "saliency")
    assert table["spearman"].iloc[1:].tolist() == pytest.approx([-1.0] * 4)
    assert table["spearman_signed"].iloc[1:].tolist() == pytest.approx([-1.0] * 4)
    passed, sentence = T.sanity_verdict(table)
    assert not passed and "-1.00 on the |map| (|rho| 1.00, which decided)" in sentence
    assert "negative correlation" in sentence


def test_map_turned_into_noise_passes(monkeypatch, small):
    fake_method(monkeypatch, small, FAKE_MAP, lambda m, k: np.random.default_rng(100 + k).normal(size=m.shape))
    table = T.randomization_test(small, torch.zeros(1, 1, 28, 28), 0, "saliency")
    assert table["spearman_strength"].iloc[1:].max() < 0.1            # 784 pixels: |rho| ~ 1/28 by chance
    assert table["spearman_signed_strength"].iloc[1:].max() < 0.1
    passed, sentence = T.sanity_verdict(table)
    assert passed and sentence.startswith("Passed") and "with fc2+fc1+conv2+conv1 randomized" in sentence


def test_randomization_test_rejects_unknown_layers(small, real_digits):
    with pytest.raises(ValueError, match="fc7"):
        T.randomization_test(small, real_digits[0], 1, "saliency", layers=("fc7",))


# ----------------------------------------------------------------------------- deletion / insertion

def test_deletion_on_a_one_pixel_model_drops_first():
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.5
    good = torch.zeros(28, 28)
    good[10, 12] = 1.0                                     # the pixel that matters, attributed
    table = T.deletion_insertion(OnePixel(), x, good, target=0, steps=28)
    p_on = math.exp(4 * float(x[0, 0, 10, 12])) / (math.exp(4 * float(x[0, 0, 10, 12])) + 9)
    p_off = 0.1                                            # all logits 0
    assert len(table) == 29 and table["fraction"].iloc[-1] == 1.0
    assert table["deletion"].iloc[0] == pytest.approx(p_on)
    np.testing.assert_allclose(table["deletion"].iloc[1:], p_off, rtol=1e-6)       # gone at the first step
    np.testing.assert_allclose(table["insertion"].iloc[1:], p_on, rtol=1e-6)       # back at the first step
    assert table["insertion"].iloc[0] == pytest.approx(p_off)
    bad = -good                                            # the pixel that matters comes last
    late = T.deletion_insertion(OnePixel(), x, bad, target=0, steps=28)
    np.testing.assert_allclose(late["deletion"].iloc[:-1], p_on, rtol=1e-6)
    s_good, s_bad = T.deletion_summary(table), T.deletion_summary(late)
    assert s_good["deletion_auc"] < s_good["random_deletion_auc"] < s_bad["deletion_auc"]
    assert s_good["better_than_random"] and not s_bad["better_than_random"]


def test_curve_auc_is_the_trapezoid_rule():
    assert T.curve_auc([0, 0.5, 1], [1, 0.5, 0]) == pytest.approx(0.5)
    assert T.curve_auc([0, 0.25, 1], [0, 1, 1]) == pytest.approx(0.125 + 0.75)


def test_deletion_rejects_mismatched_maps():
    with pytest.raises(ValueError, match="attribution"):
        T.deletion_insertion(OnePixel(), torch.rand(1, 1, 28, 28), torch.rand(10, 10), 0)


# ----------------------------------------------------------------------------- Captum metrics

def linear_model() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()


def test_infidelity_is_zero_for_the_exact_linear_explanation():
    model = linear_model()
    x = torch.rand(2, 1, 28, 28)
    exact = model[1].weight.detach()[3].reshape(1, 1, 28, 28).expand(2, 1, 28, 28)   # f(x) - f(x - I) = I . w
    zero = T.infidelity_score(model, x, exact, 3, normalize=False)
    wrong = T.infidelity_score(model, x, torch.rand(2, 1, 28, 28), 3, normalize=False)
    assert zero.shape == (2,) and zero.abs().max() < 1e-9
    assert (wrong > 1e-6).all()


def test_infidelity_by_hand_on_a_linear_model():
    model = linear_model()
    x = torch.rand(2, 1, 28, 28)
    attr = torch.rand(2, 1, 28, 28)
    got = T.infidelity_score(model, x, attr, 3, noise_std=0.01, perturbations=5, perturb_seed=7, normalize=False)
    # by hand: the same draws (one (B*n,...) batch), and f(x) - f(x - I) = I . w for a linear model
    noise = torch.normal(0.0, 0.01, (10, 1, 28, 28), generator=torch.Generator().manual_seed(7)).view(2, 5, 784)
    diff = attr.reshape(2, 1, 784) - model[1].weight.detach()[3]
    expected = ((noise * diff).sum(dim=2) ** 2).mean(dim=1)
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-12)


def test_sensitivity_is_zero_for_a_constant_gradient_and_positive_for_the_cnn(small, real_digits):
    x = torch.rand(2, 1, 28, 28)
    flat = T.sensitivity_score(linear_model(), x, 3, "saliency", abs=False)
    assert flat.shape == (2,) and flat.abs().max() < 1e-6
    x, y = real_digits
    s = T.sensitivity_score(small, x, y, "saliency", perturbations=4)
    assert (s > 0).all()
    torch.testing.assert_close(s, T.sensitivity_score(small, x, y, "saliency", perturbations=4))   # seeded


def test_randomization_test_cached_in_the_run_folder(copy_run, mnist_root):
    """Second call reads the run's cache/ (no recomputation) and equals a direct randomization_test."""
    from data.mnist import load_raw
    from model.runs import load_model
    from analysis.trust import randomization_test, randomization_test_cached

    run = copy_run()
    image = load_raw(mnist_root)["t10k-images-idx3-ubyte"][0].astype(np.float32) / 255
    first = randomization_test_cached(run, 3, image, "saliency", 7)
    (entry,) = list((run / "cache").iterdir())
    assert entry.name.startswith("randomization__v2__saliency")    # v2: the columns of the signed-map check
    assert {"spearman_signed", "spearman_strength", "spearman_signed_strength"} <= set(first.columns)
    direct = randomization_test(load_model(run, 3), torch.from_numpy(image)[None, None], 7, "saliency")
    pd.testing.assert_frame_equal(first.reset_index(drop=True), direct, check_dtype=False, atol=1e-6)
    (run / "checkpoints" / "epoch_003.safetensors").unlink()   # a recomputation would now fail
    again = randomization_test_cached(run, 3, image, "saliency", 7)
    pd.testing.assert_frame_equal(again, first)
