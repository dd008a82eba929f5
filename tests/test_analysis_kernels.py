"""analysis.kernels against hand-made kernels whose pattern is known, and hand-computed summaries."""
from __future__ import annotations

import numpy as np
import pytest

from analysis import kernels

SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=float)   # right column bright -> large output
SOBEL_Y = SOBEL_X.T                                                      # bottom row bright -> large output
DIAGONAL = np.array([[0, 1, 2], [-1, 0, 1], [-2, -1, 0]], dtype=float)  # bright above-right of the ↘ diagonal
LAPLACIAN = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], dtype=float)   # the 4-neighbour one, not the template


@pytest.mark.parametrize("kernel, kind, words", [
    (SOBEL_X, "edge", "vertical edge, dark→bright left to right"),
    (-SOBEL_X, "edge", "vertical edge, bright→dark left to right"),
    (SOBEL_Y, "edge", "horizontal edge, bright below"),
    (-SOBEL_Y, "edge", "horizontal edge, bright above"),
    (DIAGONAL, "edge", "diagonal ↘ edge, bright above-right"),
    (-DIAGONAL, "edge", "diagonal ↘ edge, bright below-left"),
    (DIAGONAL[:, ::-1], "edge", "diagonal ↗ edge, bright above-left"),
    (LAPLACIAN, "blob", "blob: bright spot, dark surround"),
    (-LAPLACIAN, "blob", "blob: dark spot, bright surround"),
    (np.array([[0, 1, 0]] * 3, dtype=float), "line", "vertical line, bright"),
    (np.eye(3), "line", "diagonal ↘ line, bright"),
])
def test_hand_made_kernels_are_named(kernel, kind, words):
    d = kernels.describe_kernel(kernel)
    assert (d.kind, d.words) == (kind, words)
    assert (d.low, d.high) == (kernel.min(), kernel.max())


def test_scale_and_offset_do_not_change_the_name():
    # a real kernel is a template times some scale plus an offset, plus a little noise
    noisy = 0.07 * SOBEL_X + 0.01 + 0.004 * np.random.default_rng(0).standard_normal((3, 3))
    assert kernels.describe_kernel(noisy).words == "vertical edge, dark→bright left to right"


@pytest.mark.parametrize("kernel", [np.full((3, 3), 0.3), np.full((3, 3), -0.2), np.zeros((3, 3)),
                                    np.full((3, 3), 0.3) + 0.01 * np.eye(3)])
def test_constant_or_zero_kernels_are_flat(kernel):
    d = kernels.describe_kernel(kernel)
    assert d.kind == "flat" and d.words == kernels.FLAT_WORDS and d.r == 0.0


def test_a_kernel_tiny_next_to_its_layer_is_flat():
    layer = np.stack([SOBEL_X, SOBEL_Y, LAPLACIAN, 1e-3 * SOBEL_X])
    table = kernels.describe_kernels(layer)
    assert list(table["kernel"]) == [0, 1, 2, 3]
    assert list(table["kind"]) == ["edge", "edge", "blob", "flat"]
    assert table.loc[3, "high"] == pytest.approx(2e-3)
    # alone, the same tiny kernel still has its pattern
    assert kernels.describe_kernel(1e-3 * SOBEL_X).kind == "edge"


def test_a_kernel_like_no_template_is_mixed():
    # a checkerboard (corners +1, edge middles -1): r = 0 with every edge and the blob, |r| = 0.5 with the
    # lines (e.g. <c, vertical bar> = -6, |c|^2 = 8, |bar|^2 = 18, r = -6/12), below the default clear 0.6
    checker = np.array([[1, -1, 1], [-1, 0, -1], [1, -1, 1]], dtype=float)
    d = kernels.describe_kernel(checker)
    assert d.kind == "mixed" and d.words.startswith("mixed (nearest: ") and " line, " in d.words
    assert d.r == pytest.approx(0.5)


def test_correlation_hand_checked():
    assert kernels.correlation(SOBEL_X, 5 * SOBEL_X + 3) == pytest.approx(1.0)
    assert kernels.correlation(SOBEL_X, -SOBEL_X) == pytest.approx(-1.0)
    assert kernels.correlation(SOBEL_X, SOBEL_Y) == pytest.approx(0.0)
    assert kernels.correlation(SOBEL_X, DIAGONAL) == pytest.approx(8 / 12)      # <a,b> = 8, |a|^2 = |b|^2 = 12
    assert kernels.correlation(SOBEL_X, np.ones((3, 3))) == 0.0


def test_describe_rejects_other_shapes():
    with pytest.raises(ValueError):
        kernels.describe_kernel(np.zeros((5, 5)))


def test_mean_abs_over_inputs_hand_checked():
    k = np.zeros((2, 3, 3, 3))
    k[0, :, 1, 1] = [1.0, -2.0, 3.0]          # kernel 0, centre: mean |w| over 3 inputs = 2
    k[1, 0, 0, 2] = -0.6                      # kernel 1, top-right: 0.6 / 3 = 0.2
    out = kernels.mean_abs_over_inputs(k)
    assert out.shape == (2, 3, 3)
    assert out[0, 1, 1] == pytest.approx(2.0) and out[1, 0, 2] == pytest.approx(0.2)
    assert out.sum() == pytest.approx(2.2)
    with pytest.raises(ValueError):
        kernels.mean_abs_over_inputs(np.zeros((3, 3, 3)))
