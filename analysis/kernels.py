"""What a conv kernel responds to, read from its weights alone; and the summaries pages show of kernels.

Terms (the dashboard's vocabulary):
  * kernel: the weights of one output channel of a conv layer. conv1 kernel 3 is a 3x3 array;
    conv2 kernel 3 is 32x3x3 (one 3x3 slice per input channel).
  * channel: one output map of a layer: conv1 channel 3 is what kernel 3 computes at every
    position of the input (26x26).
  * unit: one value of a map (or of fc1).

A conv layer computes, at every position, sum(window * kernel) + bias (no flip: PyTorch's conv2d is
a cross-correlation). So a kernel answers most strongly where the 3x3 window looks like the kernel
itself. `describe_kernel` names that pattern by comparing the kernel with 3x3 templates:

  * edges (Sobel): 4 orientations x 2 polarities, e.g. [[-1,0,1],[-2,0,2],[-1,0,1]] answers a
    vertical edge that goes dark -> bright from left to right;
  * lines (a bright or dark bar one pixel wide): 4 orientations x 2 polarities. MNIST strokes are
    bright lines, so many conv1 kernels are line detectors;
  * a blob (centre-surround, the negative Laplacian): a bright spot on a dark surround, or the reverse.

The match is the normalised correlation r of the kernel and the template after each has its mean
removed (r = 1: the same pattern up to scale and offset; r = -1: the opposite pattern, which is the
template of opposite polarity). A kernel is "flat" when it has no pattern to match: its weights are
tiny (its L2 norm below `weak` x a reference norm, e.g. the layer's median), or the part left after
removing the mean is small next to the mean (pattern energy below `flat` of the total: a near-
constant kernel, which only adds up the brightness of the window).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# ----------------------------------------------------------------------------- templates

_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)     # bright on the right
_SOBEL_D = np.array([[0, 1, 2], [-1, 0, 1], [-2, -1, 0]], dtype=np.float64)     # bright above-right
_LINE_V = np.array([[-1, 2, -1]] * 3, dtype=np.float64)                          # a bright vertical bar
_LINE_D = np.array([[2, -1, -1], [-1, 2, -1], [-1, -1, 2]], dtype=np.float64)   # a bright ↘ bar
_BLOB = np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], dtype=np.float64)   # bright centre, dark ring

# (kind, words, template): each template with its opposite polarity. Every template has zero mean.
TEMPLATES: tuple[tuple[str, str, np.ndarray], ...] = (
    ("edge", "vertical edge, dark→bright left to right", _SOBEL_X),
    ("edge", "vertical edge, bright→dark left to right", -_SOBEL_X),
    ("edge", "horizontal edge, bright below", _SOBEL_X.T),
    ("edge", "horizontal edge, bright above", -_SOBEL_X.T),
    ("edge", "diagonal ↘ edge, bright above-right", _SOBEL_D),
    ("edge", "diagonal ↘ edge, bright below-left", -_SOBEL_D),
    ("edge", "diagonal ↗ edge, bright above-left", _SOBEL_D[:, ::-1]),
    ("edge", "diagonal ↗ edge, bright below-right", -_SOBEL_D[:, ::-1]),
    ("line", "vertical line, bright", _LINE_V),
    ("line", "vertical line, dark", -_LINE_V),
    ("line", "horizontal line, bright", _LINE_V.T),
    ("line", "horizontal line, dark", -_LINE_V.T),
    ("line", "diagonal ↘ line, bright", _LINE_D),
    ("line", "diagonal ↘ line, dark", -_LINE_D),
    ("line", "diagonal ↗ line, bright", _LINE_D[:, ::-1]),
    ("line", "diagonal ↗ line, dark", -_LINE_D[:, ::-1]),
    ("blob", "blob: bright spot, dark surround", _BLOB),
    ("blob", "blob: dark spot, bright surround", -_BLOB),
)
FLAT_WORDS = "flat/weak: no pattern"


@dataclass(frozen=True)
class KernelDescription:
    """What one 3x3 kernel responds to."""
    kind: str        # "edge", "line", "blob", "flat" or "mixed" (no template matches well)
    words: str       # e.g. "vertical edge, dark→bright left to right"
    r: float         # normalised correlation with the best template (0 for "flat")
    low: float       # the smallest weight
    high: float      # the largest weight


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of two arrays after removing each one's mean (0 when either is constant)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def describe_kernel(kernel: np.ndarray, reference_norm: float | None = None, weak: float = 0.1,
                    flat: float = 0.25, clear: float = 0.6) -> KernelDescription:
    """Name the pattern a 3x3 kernel responds to most (see the module docstring).

    Args:
        kernel: (3,3) weights (a conv1 kernel; for conv2, one input channel's slice).
        reference_norm: the L2 norm a normal kernel has (e.g. the layer's median); the kernel is
            "weak" below `weak` times it. None: only an all-but-zero kernel (norm < 1e-8) is weak.
            Default: None.
        weak: see reference_norm. Default: 0.1.
        flat: a kernel whose mean-free part holds less than this share of its energy (sum of
            squared weights) is flat. Default: 0.25.
        clear: the best template must reach this correlation; below it the kernel is "mixed" and
            its words name the nearest template. Default: 0.6.
    Returns:
        A KernelDescription.
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.shape != (3, 3):
        raise ValueError(f"expected a 3x3 kernel, got shape {k.shape}")
    low, high = float(k.min()), float(k.max())
    norm = float(np.linalg.norm(k))
    pattern = float(np.linalg.norm(k - k.mean()))
    too_small = norm < (weak * reference_norm if reference_norm else 1e-8)
    if too_small or pattern ** 2 < flat * norm ** 2:
        return KernelDescription("flat", FLAT_WORDS, 0.0, low, high)
    scores = [correlation(k, t) for _, _, t in TEMPLATES]
    best = int(np.argmax(scores))
    kind, words, _ = TEMPLATES[best]
    if scores[best] < clear:
        return KernelDescription("mixed", f"mixed (nearest: {words})", scores[best], low, high)
    return KernelDescription(kind, words, scores[best], low, high)


def describe_kernels(kernels: np.ndarray, **options) -> pd.DataFrame:
    """`describe_kernel` for every kernel of a layer (K,3,3), the layer's median norm as the reference.

    Returns:
        One row per kernel: kernel (0..K-1), responds_to (words), kind, r, low, high.
    """
    k = np.asarray(kernels, dtype=np.float64)
    reference = float(np.median(np.linalg.norm(k.reshape(len(k), -1), axis=1))) if len(k) else None
    rows = []
    for i, w in enumerate(k):
        d = describe_kernel(w, reference_norm=reference, **options)
        rows.append({"kernel": i, "responds_to": d.words, "kind": d.kind, "r": d.r, "low": d.low, "high": d.high})
    return pd.DataFrame(rows, columns=["kernel", "responds_to", "kind", "r", "low", "high"])


def mean_abs_over_inputs(kernels: np.ndarray) -> np.ndarray:
    """A conv2 kernel summarized as one 3x3: the mean |weight| over its input channels.

    Args:
        kernels: (out, in, 3, 3).
    Returns:
        (out, 3, 3) float64: how strongly each position of the 3x3 window counts, whatever the sign.
    """
    k = np.asarray(kernels, dtype=np.float64)
    if k.ndim != 4:
        raise ValueError(f"expected kernels (out, in, h, w), got shape {k.shape}")
    return np.abs(k).mean(axis=1)
