"""Training labels flipped on purpose, for checks that must find them (label issues, self-influence)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from data import mnist


@contextlib.contextmanager
def flipped_training_labels(count: int, shift: int) -> Iterator[None]:
    """MNIST as the trainer and analysis load it, with the first `count` training labels moved by `shift` (mod 10)."""
    import model.train as train_module
    real = mnist.load_mnist

    def flipped(root=None, split="classic"):
        d = real(root, split)
        d.train_y = d.train_y.clone()
        d.train_y[:count] = (d.train_y[:count] + shift) % 10
        return d
    mp = pytest.MonkeyPatch()
    mp.setattr(train_module, "load_mnist", flipped)
    mp.setattr(mnist, "load_mnist", flipped)
    try:
        yield
    finally:
        mp.undo()
