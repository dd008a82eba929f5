"""analysis.examples.filter_examples against a hand-computed case and a plain-Python loop."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.examples import filter_examples

# position: probabilities          label  predicted  outcome  confidence
PROBS = np.array([[0.70, 0.20, 0.10],  # 0     0      correct  0.7
                  [0.10, 0.80, 0.10],  # 2     1      wrong    0.8
                  [0.30, 0.30, 0.40],  # 2     2      correct  0.4
                  [0.05, 0.90, 0.05],  # 0     1      wrong    0.9
                  [0.60, 0.20, 0.20],  # 1     0      wrong    0.6
                  [0.20, 0.20, 0.60],  # 0     2      wrong    0.6 (ties with #4: the lower position first)
                  [0.50, 0.50, 0.00]])  # 1    0      wrong    0.5 (argmax tie: the first class)
LABELS = np.array([0, 2, 2, 0, 1, 0, 1])


@pytest.mark.parametrize("kwargs, expected", [
    ({}, [0, 1, 2, 3, 4, 5, 6]),
    ({"outcome": "wrong"}, [1, 3, 4, 5, 6]),
    ({"outcome": "correct"}, [0, 2]),
    ({"order": "most confident mistakes"}, [3, 1, 4, 5, 6]),
    ({"true": 0}, [0, 3, 5]),
    ({"true": 0, "outcome": "wrong"}, [3, 5]),
    ({"true": 0, "order": "most confident mistakes"}, [3, 5]),
    ({"predicted": 0}, [0, 4, 6]),
    ({"predicted": 1}, [1, 3]),
    ({"predicted": 0, "order": "most confident mistakes"}, [4, 6]),
    ({"true": 1, "predicted": 0}, [4, 6]),
    ({"true": 2, "predicted": 2}, [2]),
    ({"true": 2, "predicted": 0}, []),
    ({"outcome": "correct", "order": "most confident mistakes"}, []),
])
def test_filter_examples_hand_computed(kwargs, expected):
    got = filter_examples(PROBS, LABELS, **kwargs)
    assert got.dtype == np.int64
    assert got.tolist() == expected


def reference(probs, labels, true, predicted, outcome, order) -> list[int]:
    """The same filter written as a plain loop, ordered with Python's sort."""
    rows = []
    for i, (p, y) in enumerate(zip(probs.tolist(), labels.tolist())):
        guess = p.index(max(p))
        if (true is not None and y != true) or (predicted is not None and guess != predicted):
            continue
        if outcome != "any" and (guess == y) != (outcome == "correct"):
            continue
        if order == "most confident mistakes" and guess == y:
            continue
        rows.append((-max(p), i) if order == "most confident mistakes" else (0, i))
    return [i for _, i in sorted(rows)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_filter_examples_matches_a_loop(seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(10) * 0.3, 400)
    labels = np.where(rng.random(400) < 0.7, probs.argmax(1), rng.integers(0, 10, 400))
    for true in (None, 3):
        for predicted in (None, 3, 5):
            for outcome in ("any", "correct", "wrong"):
                for order in ("position", "most confident mistakes"):
                    got = filter_examples(probs, labels, true, predicted, outcome, order).tolist()
                    assert got == reference(probs, labels, true, predicted, outcome, order), \
                        (true, predicted, outcome, order)


def test_filter_examples_rejects_bad_arguments():
    with pytest.raises(ValueError):
        filter_examples(PROBS, LABELS, outcome="right")
    with pytest.raises(ValueError):
        filter_examples(PROBS, LABELS, order="confidence")
    with pytest.raises(ValueError):
        filter_examples(PROBS, LABELS[:3])
