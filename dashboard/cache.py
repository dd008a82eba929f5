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
