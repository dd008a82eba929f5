"""Shared fixtures: a small real run made by the real trainer on a tiny subset of real MNIST.

The run is built once per test session. MNIST must be prepared first (`make test` does it); if it
is missing, tests that need the fixture run are skipped with a message saying how to prepare it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from data.mnist import default_root, verify
from model import train

# lr 0.05 with momentum (not the seed's 0.01) so that three short epochs give a model worth looking at
# (about 85-90% accuracy): galleries, confusion cells and attributions then have real structure.
FIXTURE_ARGS = ["--epochs", "3", "--subset", "1000", "--eval-subset", "500", "--batch-size", "64",
                "--lr", "0.05", "--momentum", "0.9", "--seed", "0", "--log-every", "5"]


def mnist_ready() -> bool:
    return not verify(default_root())


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    if not mnist_ready():
        pytest.skip("real MNIST not prepared: run `python -m data.mnist` (make test does it)")
    return default_root()


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory, mnist_root) -> Path:
    """A runs folder holding one complete fixture run ("fixture") made by `python -m model.train`."""
    d = tmp_path_factory.mktemp("runs")
    code = train.main(FIXTURE_ARGS + ["--runs-dir", str(d), "--name", "fixture"])
    assert code == 0
    return d


@pytest.fixture(scope="session")
def fixture_run(runs_dir) -> Path:
    """The folder of the fixture run (3 epochs, 1000 training / 500 val / 500 test examples)."""
    (run,) = [p for p in runs_dir.iterdir() if p.name.endswith("-fixture")]
    return run


@pytest.fixture()
def copy_run(fixture_run, tmp_path):
    """Make a private copy of the fixture run (to damage or extend it in one test)."""
    def make(name: str = "copy") -> Path:
        dest = tmp_path / "runs" / name
        shutil.copytree(fixture_run, dest, ignore=shutil.ignore_patterns("cache"))  # no analysis cache of others
        return dest
    return make


@pytest.fixture(scope="session")
def accurate_run(tmp_path_factory, mnist_root) -> Path:
    """A run good enough to test against real digits (about 95% test accuracy; ~15 s on 2 cores)."""
    d = tmp_path_factory.mktemp("accurate")
    code = train.main(["--epochs", "2", "--subset", "6000", "--eval-subset", "500", "--lr", "0.05", "--momentum",
                       "0.9", "--seed", "0", "--runs-dir", str(d), "--name", "accurate"])
    assert code == 0
    (run,) = d.iterdir()
    return run
