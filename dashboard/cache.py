"""All Streamlit caching lives here: loaders for runs, models and data, and cached analysis calls.

Models are shared objects (`st.cache_resource`, one per (run, epoch), never mutated); tables and
arrays are `st.cache_data` (each caller gets a copy). Files that grow while a run trains (metrics,
steps, status) are keyed by their modification time, so a new epoch shows up without a restart.
Every loader raises model.runs.RunError / data.mnist.DataError for bad files; pages show those.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from data import mnist
from model import runs
from model.net import Net


def runs_dir() -> Path:
    """$DIGIT_LENS_RUNS or runs/ (read at every call, so tests can point it elsewhere)."""
    return runs.default_runs_dir()


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


@st.cache_data(ttl=2, show_spinner=False)
def list_runs(runs_folder: str) -> list[runs.RunInfo]:
    return runs.list_runs(Path(runs_folder))


@st.cache_data(show_spinner=False, max_entries=64)
def _metrics(run_dir: str, mtime: float) -> pd.DataFrame:
    return runs.load_metrics(Path(run_dir))


def load_metrics(run_dir: Path | str) -> pd.DataFrame:
    """metrics.csv of a run (re-read when the file changes)."""
    return _metrics(str(run_dir), _mtime(Path(run_dir) / "metrics.csv"))


@st.cache_data(show_spinner=False, max_entries=64)
def _steps(run_dir: str, mtime: float) -> pd.DataFrame:
    return runs.load_steps(Path(run_dir))


def load_steps(run_dir: Path | str) -> pd.DataFrame:
    return _steps(str(run_dir), _mtime(Path(run_dir) / "steps.csv"))


def load_status(run_dir: Path | str) -> dict:
    """status.json, read fresh (it is tiny and changes while a run trains)."""
    return runs.load_status(Path(run_dir))


@st.cache_data(show_spinner=False, max_entries=32)
def load_config(run_dir: str) -> dict:
    return runs.load_config(Path(run_dir))


@st.cache_data(show_spinner=False, max_entries=128)
def load_predictions(run_dir: str, epoch: int) -> dict[str, np.ndarray]:
    return runs.load_predictions(Path(run_dir), epoch)


def checkpoint_epochs(run_dir: Path | str) -> list[int]:
    return runs.checkpoint_epochs(Path(run_dir))


def prediction_epochs(run_dir: Path | str) -> list[int]:
    return runs.prediction_epochs(Path(run_dir))


@st.cache_resource(show_spinner="Loading the model…", max_entries=16)
def load_model(run_dir: str, epoch: int) -> Net:
    """The model at (run, epoch): one shared, read-only object. Never train or modify it."""
    model = runs.load_model(Path(run_dir), epoch)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@st.cache_resource(show_spinner="Reading MNIST…")
def load_raw_mnist(root: str | None = None) -> dict[str, np.ndarray]:
    """The four official MNIST arrays (read-only, shared)."""
    return mnist.load_raw(root)


def data_root() -> Path:
    return mnist.default_root()


def split_images(run_dir: str, split: str) -> np.ndarray:
    """uint8 images (N,28,28) of a run's val/test/train predictions, in the order of the npz arrays.

    Uses the `<split>_index` saved with the predictions and the run's val_source.
    """
    cfg = load_config(run_dir)
    epochs = prediction_epochs(run_dir)
    if not epochs:
        raise runs.RunError(Path(run_dir) / "predictions", "no predictions saved")
    index = load_predictions(run_dir, epochs[-1])[f"{split}_index"]
    raw = load_raw_mnist()
    from_test = split == "test" or (split == "val" and cfg.get("data", {}).get("val_source") == "test")
    source = raw["t10k-images-idx3-ubyte"] if from_test else raw["train-images-idx3-ubyte"]
    return source[index]


# ---- part 1: runs, curves, overfitting, data, confusion ----

def _predictions_key(run_dir: str) -> tuple[tuple[int, float], ...]:
    """(epoch, mtime) of every prediction file: results over all epochs refresh when one lands."""
    return tuple((e, _mtime(runs.predictions_path(Path(run_dir), e))) for e in runs.prediction_epochs(run_dir))


@st.cache_data(show_spinner=False, max_entries=64)
def _diagnosis(run_dir: str, mtime: float):
    from analysis.overfitting import diagnose
    return diagnose(runs.load_metrics(Path(run_dir)))


def diagnosis(run_dir: str):
    """analysis.overfitting.diagnose of a run's metrics (ValueError when there is too little to diagnose)."""
    return _diagnosis(str(run_dir), _mtime(Path(run_dir) / "metrics.csv"))


@st.cache_data(show_spinner=False, max_entries=128)
def _split_predictions(run_dir: str, epoch: int, split: str, mtime: float):
    from analysis.errors import split_predictions
    return split_predictions(run_dir, epoch, split)


def split_predictions(run_dir: str, epoch: int, split: str = "val") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probs (N,10), labels (N,), official index (N,)) of val or test at an epoch."""
    return _split_predictions(str(run_dir), int(epoch), split,
                              _mtime(runs.predictions_path(Path(run_dir), int(epoch))))


@st.cache_data(show_spinner="Reading every epoch's predictions…", max_entries=32)
def _by_epoch(what: str, run_dir: str, split: str, key: tuple) -> object:
    from analysis import calibration, errors
    if what == "confusion":
        return errors.confusion_by_epoch(run_dir, split)
    if what == "class_accuracy":
        return errors.per_class_accuracy_by_epoch(run_dir, split)
    if what == "mistake_confidence":
        return errors.mistake_confidence_by_epoch(run_dir, split)
    if what == "calibration":
        return calibration.calibration_by_epoch(run_dir, split)
    if what == "suspicious":
        return errors.suspicious_labels_in_run(run_dir, split)
    raise ValueError(what)


def confusion_by_epoch(run_dir: str, split: str = "val") -> dict[int, np.ndarray]:
    """{epoch: confusion matrix (10,10)} for every epoch with predictions."""
    return _by_epoch("confusion", str(run_dir), split, _predictions_key(str(run_dir)))


def class_accuracy_by_epoch(run_dir: str, split: str = "val") -> pd.DataFrame:
    """Per-class accuracy per epoch (index epoch, columns 0..9 and "all")."""
    return _by_epoch("class_accuracy", str(run_dir), split, _predictions_key(str(run_dir)))


def mistake_confidence_by_epoch(run_dir: str, split: str = "val") -> pd.DataFrame:
    return _by_epoch("mistake_confidence", str(run_dir), split, _predictions_key(str(run_dir)))


def calibration_by_epoch(run_dir: str, split: str = "val") -> pd.DataFrame:
    return _by_epoch("calibration", str(run_dir), split, _predictions_key(str(run_dir)))


def suspicious_labels(run_dir: str, split: str = "val") -> pd.DataFrame:
    """analysis.errors.suspicious_labels_in_run over the last three epochs."""
    return _by_epoch("suspicious", str(run_dir), split, _predictions_key(str(run_dir)))


@st.cache_data(show_spinner="Reading the training dynamics…", max_entries=16)
def _dynamics(what: str, run_dir: str, key: tuple) -> pd.DataFrame:
    from analysis import dynamics
    if what == "forgetting":
        return dynamics.forgetting_by_class(run_dir)
    if what == "most_forgotten":
        return dynamics.most_forgotten(run_dir, k=24)
    if what == "cartography":
        return dynamics.cartography(run_dir)
    raise ValueError(what)


def forgetting_by_class(run_dir: str) -> pd.DataFrame:
    return _dynamics("forgetting", str(run_dir), _predictions_key(str(run_dir)))


def most_forgotten(run_dir: str) -> pd.DataFrame:
    """The 24 most forgotten training examples (index into the official training file)."""
    return _dynamics("most_forgotten", str(run_dir), _predictions_key(str(run_dir)))


def cartography(run_dir: str) -> pd.DataFrame:
    return _dynamics("cartography", str(run_dir), _predictions_key(str(run_dir)))


def official_images(file: str, index: np.ndarray) -> np.ndarray:
    """uint8 images (N,28,28) at rows `index` of the official "train" or "test" images file."""
    raw = load_raw_mnist()
    source = raw["t10k-images-idx3-ubyte"] if file == "test" else raw["train-images-idx3-ubyte"]
    return source[np.asarray(index, dtype=np.int64)]


def split_file(run_dir: str, split: str) -> str:
    """Which official file ("train" or "test") a run's val/test/train index points into."""
    val_source = load_config(str(run_dir)).get("data", {}).get("val_source")
    return "test" if split == "test" or (split == "val" and val_source == "test") else "train"


@st.cache_data(show_spinner=False)
def mnist_check(root: str) -> dict:
    """Where MNIST came from and whether its four files match the official MD5s (hashes the files once)."""
    return {"source": mnist.source_info(root), "problems": mnist.verify(root), "expected": dict(mnist.FILES)}


@st.cache_data(show_spinner=False)
def split_labels(split_kind: str, root: str | None = None) -> dict[str, np.ndarray]:
    """Labels of the train / val / test splits of the "classic" or "seed" protocol (see data.mnist)."""
    raw = load_raw_mnist(root)
    train, test = raw["train-labels-idx1-ubyte"], raw["t10k-labels-idx1-ubyte"]
    if split_kind == "seed":
        return {"train": train, "val": test, "test": test}
    return {"train": train[:50000], "val": train[50000:], "test": test}


@st.cache_data(show_spinner="Averaging the images of each class…")
def class_mean_images(root: str | None = None) -> np.ndarray:
    """(10,28,28) float: the mean of the official training images of each class."""
    raw = load_raw_mnist(root)
    images, labels = raw["train-images-idx3-ubyte"], raw["train-labels-idx1-ubyte"]
    return np.stack([images[labels == c].mean(axis=0) for c in range(10)])
