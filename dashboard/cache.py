"""All Streamlit caching lives here: loaders for runs, models and data, and cached analysis calls.

One path per number: a run file is read by `model.runs`, a result is computed by one function in
`analysis/`, and this module caches it once; pages and the report call these wrappers and only draw.
Results derived from other results are built from the cached ones (the confusion matrices of every
epoch from the cached predictions of each epoch, per-class accuracy from those matrices, ...), so a
file is read once and a number computed once however many pages and parts of a page show it.

Models are shared objects (`st.cache_resource`, one per (run, epoch), never mutated); tables and
arrays are `st.cache_data` (each caller gets a copy). Files that grow or change while a run trains
(metrics, steps, predictions) are keyed by their modification time, so a new epoch shows up without a
restart. Every loader raises model.runs.RunError / data.mnist.DataError for bad files; pages show those.
Heavy results (attribution maps, sanity and deletion checks, class means, the smallest change) are computed
in dashboard.workers' process pool, shared by every session, at most one job per core at once.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import jobs, workers
from data import mnist
from model import runs
from model.config import DataConfig


def runs_dir() -> Path:
    """$DIGIT_LENS_RUNS or runs/ (read at every call, so tests can point it elsewhere)."""
    return runs.default_runs_dir()


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


@st.cache_data(ttl=2, show_spinner=False, max_entries=4)
def list_runs(runs_folder: str) -> list[runs.RunInfo]:
    return runs.list_runs(Path(runs_folder))


@st.cache_data(show_spinner=False, max_entries=64)
def _metrics(run_dir: str, mtime: float) -> pd.DataFrame:
    return runs.load_metrics(Path(run_dir))


def load_metrics(run_dir: Path | str) -> pd.DataFrame:
    """metrics.csv of a run (re-read when the file changes)."""
    return _metrics(str(run_dir), _mtime(runs.metrics_path(run_dir)))


@st.cache_data(show_spinner=False, max_entries=64)
def _steps(run_dir: str, mtime: float) -> pd.DataFrame:
    return runs.load_steps(Path(run_dir))


def load_steps(run_dir: Path | str) -> pd.DataFrame:
    return _steps(str(run_dir), _mtime(runs.steps_path(run_dir)))


def load_status(run_dir: Path | str) -> dict:
    """status.json, read fresh (it is tiny and changes while a run trains)."""
    return runs.load_status(Path(run_dir))


@st.cache_data(show_spinner=False, max_entries=32)
def _config(run_dir: str, mtime: float) -> runs.RunConfig:
    return runs.load_config(Path(run_dir))


def load_config(run_dir: str | Path) -> runs.RunConfig:
    """config.json of a run as a RunConfig (re-read when the file changes, e.g. after --resume)."""
    return _config(str(run_dir), _mtime(runs.config_path(run_dir)))


@st.cache_data(show_spinner=False, max_entries=128)
def _predictions(run_dir: str, epoch: int, mtime: float) -> dict[str, np.ndarray]:
    return runs.load_predictions(Path(run_dir), epoch)


def load_predictions(run_dir: Path | str, epoch: int) -> dict[str, np.ndarray]:
    """The arrays of predictions/epoch_NNN.npz (the one cached read of a predictions file)."""
    return _predictions(str(run_dir), int(epoch), _mtime(runs.predictions_path(Path(run_dir), int(epoch))))


def checkpoint_epochs(run_dir: Path | str) -> list[int]:
    return runs.checkpoint_epochs(Path(run_dir))


def prediction_epochs(run_dir: Path | str) -> list[int]:
    return runs.prediction_epochs(Path(run_dir))


# 2 models: a page's epoch and its compare-with epoch; each seed model holds 30 MB of weights, and another (run,
# epoch) reloads in 50-110 ms. Measured with tests/test_memory.py's 5-run tour: 16 kept its floor 210 MB higher
# than 4; 2 instead of 4 lowered its second pass's median 924 -> 865 MB and peak 1009 -> 922 MB, in as long (95 s).
@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def load_model(run_dir: str, epoch: int) -> "torch.nn.Module":
    """The model at (run, epoch): one shared, read-only object. Never train or modify it.

    Our own `model.net.Net`, or `model.external.Wrapped` around a network defined elsewhere (the run's source).
    """
    model = runs.load_model(Path(run_dir), epoch)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@st.cache_resource(show_spinner=False, max_entries=64)
def _layers(run_dir: str, epoch: int, mtime: float):
    from analysis.layers import discover
    return discover(load_model(run_dir, epoch))


def layers(run_dir: str | Path, epoch: int):
    """analysis.layers.discover of the model at (run, epoch): its layers in forward order (shared, read-only).

    Pages name layers from this (convs, final, chain, hook_methods), never from a fixed list.
    """
    return _layers(str(run_dir), int(epoch), _mtime(runs.checkpoint_path(Path(run_dir), int(epoch))))


@st.cache_resource(show_spinner=False, max_entries=64)
def _conv_geometry(run_dir: str, epoch: int, mtime: float) -> dict[str, dict]:
    import torch.nn as nn
    found = {}
    for name, m in load_model(run_dir, epoch).named_modules():
        if isinstance(m, nn.Conv2d):
            out, c_in, kh, kw = m.weight.shape
            kernel, stride, dilation = (kh, kw), tuple(m.stride), tuple(m.dilation)
            if isinstance(m.padding, str):     # "same" pads half the dilated kernel (as analysis.layers.conv_window)
                padding = (0, 0) if m.padding == "valid" else (dilation[0] * (kh - 1) // 2, dilation[1] * (kw - 1) // 2)
            else:
                padding = tuple(m.padding)
            found[name] = {"out": int(out), "in": int(c_in), "kernel": kernel, "stride": stride, "padding": padding,
                           "dilation": dilation}
    return found


def conv_geometry(run_dir: str | Path, epoch: int) -> dict[str, dict]:
    """Every Conv2d of the model at (run, epoch), as its module declares it: {name: {"out", "in" (input
    channels per kernel), "kernel" (kh, kw), "stride", "padding" (rows, columns of zeros each side),
    "dilation"}} (read from the modules, nothing computed; shared, read-only)."""
    return _conv_geometry(str(run_dir), int(epoch), _mtime(runs.checkpoint_path(Path(run_dir), int(epoch))))


def layer_labels(run_dir: str | Path, epoch: int) -> dict[str, str]:
    """How pages name each layer: its short name and kind with the kernel shape, e.g. "conv1 (Conv2d 32×3×3)",
    "0 (Conv2d 6×5×5)", "conv2 (Conv2d 64×32×3×3)", "fc1 (Linear 1600→4608)", "relu1 (ReLU)"."""
    convs = conv_geometry(run_dir, epoch)
    labels = {}
    for layer in layers(run_dir, epoch).order:
        what = layer.kind
        if layer.name in convs:
            g = convs[layer.name]
            shape = (g["out"],) + ((g["in"],) if g["in"] > 1 else ()) + g["kernel"]
            what = f"Conv2d {'×'.join(str(v) for v in shape)}"
        elif layer.kind == "Linear" and layer.in_shape and layer.out_shape:
            what = f"Linear {layer.in_shape[-1]}→{layer.out_shape[-1]}"
        labels[layer.name] = f"{layer.short} ({what})"
    return labels


@st.cache_resource(show_spinner="Reading MNIST…", max_entries=2)
def load_raw_mnist(root: str | None = None) -> dict[str, np.ndarray]:
    """The four official MNIST arrays (read-only, shared), memory-mapped: pages show a few rows of them, and the
    server keeps only those in memory (reading them whole cost it 52 MB)."""
    return mnist.load_raw(root, mmap=True)


def data_root() -> Path:
    return mnist.default_root()


def split_images(run_dir: str, split: str, positions: Sequence[int] | np.ndarray) -> np.ndarray:
    """uint8 images (k,28,28) at these positions of a run's val or test predictions (the rows of the saved arrays).

    Uses the `<split>_index` saved with the last epoch's predictions and the run's data protocol. Reads only those
    rows: a page's globals outlive its run (its widgets' format functions and callbacks hold them), and a whole
    split held that way cost the server 10 MB per open session on a 10,000-image split (tests/test_memory.py checks
    what a session keeps).
    """
    epochs = prediction_epochs(run_dir)
    if not epochs:
        raise runs.RunError(runs.predictions_dir(run_dir), "no predictions saved")
    _, _, index = split_predictions(run_dir, epochs[-1], split)
    return official_images(load_config(str(run_dir)).data.official_file(split),
                           index[np.asarray(positions, dtype=np.int64)])


# ---- part 1: runs, curves, overfitting, data, confusion ----

def _predictions_key(run_dir: str) -> tuple[tuple[int, float], ...]:
    """(epoch, mtime) of every prediction file: results over all epochs refresh when one lands."""
    return tuple((e, _mtime(runs.predictions_path(Path(run_dir), e))) for e in runs.prediction_epochs(run_dir))


@st.cache_data(show_spinner=False, max_entries=128)
def _split_predictions(run_dir: str, epoch: int, split: str, mtime: float):
    from analysis.errors import split_arrays
    return split_arrays(load_predictions(run_dir, epoch), split, runs.predictions_path(Path(run_dir), epoch))


def split_predictions(run_dir: str, epoch: int, split: str = "val") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probs (N,10), labels (N,), official index (N,)) of val or test at an epoch."""
    return _split_predictions(str(run_dir), int(epoch), split,
                              _mtime(runs.predictions_path(Path(run_dir), int(epoch))))


def split_predictions_by_epoch(run_dir: str, split: str = "val", last: int | None = None
                               ) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{epoch: split_predictions(...)} of every epoch with predictions (only the `last` ones if given)."""
    epochs = prediction_epochs(run_dir)
    if not epochs:
        raise runs.RunError(runs.predictions_dir(run_dir), "no prediction files yet")
    return {e: split_predictions(run_dir, e, split) for e in (epochs[-last:] if last else epochs)}


@st.cache_data(show_spinner=False, max_entries=64)
def _diagnosis(run_dir: str, split: str, metrics_mtime: float, key: tuple):
    """(Diagnosis, None) or (None, the ValueError's message): a run too short to diagnose is cached too."""
    from analysis import overfitting
    metrics = load_metrics(run_dir)
    try:
        by_class = class_accuracy_by_epoch(run_dir, split) if key else None
    except runs.RunError:
        by_class = None          # unreadable predictions: diagnose from the metrics alone
    try:
        return overfitting.diagnose(metrics, class_accuracy_by_epoch=by_class), None
    except ValueError as e:
        return None, str(e)


def diagnosis(run_dir: str, split: str = "val"):
    """analysis.overfitting.diagnose of a run's metrics, with the per-class accuracy of `split` over epochs
    (so a spike names the class that dropped most). ValueError when there is too little to diagnose."""
    key = _predictions_key(str(run_dir))
    diag, problem = _diagnosis(str(run_dir), split, _mtime(runs.metrics_path(run_dir)), key)
    if diag is None:
        raise ValueError(problem)
    return diag


@st.cache_data(show_spinner=False, max_entries=2048)
def _best_epoch(run_dir: str, metrics_mtime: float) -> int | None:
    from analysis.overfitting import best_epoch as lowest_val_loss
    metrics = load_metrics(run_dir)
    try:
        return lowest_val_loss(metrics)
    except ValueError:          # gaps or NaN in the metrics: the last finished epoch
        return int(metrics["epoch"].iloc[-1]) if len(metrics) else None


def best_epoch(run_dir: str) -> int | None:
    """analysis.overfitting.best_epoch (lowest validation loss) from metrics.csv alone; the last epoch when the
    metrics cannot be read as numbers; None without a finished epoch. RunError when metrics.csv is unreadable."""
    return _best_epoch(str(run_dir), _mtime(runs.metrics_path(run_dir)))


@st.cache_data(show_spinner=False, max_entries=2048)   # one per listed run: the Runs page shows them all
def _run_summary(run_dir: str, metrics_mtime: float):
    from analysis.curves import run_summary
    return run_summary(load_metrics(run_dir), best_epoch(run_dir))


def run_summary(run_dir: str):
    """analysis.curves.run_summary of a run at its best epoch (RunError when metrics.csv cannot be read)."""
    return _run_summary(str(run_dir), _mtime(runs.metrics_path(run_dir)))


@st.cache_data(show_spinner=False, max_entries=256)
def _confusion(run_dir: str, epoch: int, split: str, mtime: float) -> np.ndarray:
    from analysis import errors
    probs, labels, _ = split_predictions(run_dir, epoch, split)
    return errors.confusion_matrix(labels, probs.argmax(1))


def confusion(run_dir: str, epoch: int, split: str = "val") -> np.ndarray:
    """analysis.errors.confusion_matrix (10,10) of val or test at an epoch."""
    return _confusion(str(run_dir), int(epoch), split, _mtime(runs.predictions_path(Path(run_dir), int(epoch))))


@st.cache_data(show_spinner=False, max_entries=128)
def _class_report(run_dir: str, epoch: int, split: str, mtime: float) -> pd.DataFrame:
    from analysis import errors
    probs, labels, _ = split_predictions(run_dir, epoch, split)
    return errors.per_class_report(labels, probs.argmax(1))


def class_report(run_dir: str, epoch: int, split: str = "val") -> pd.DataFrame:
    """analysis.errors.per_class_report (precision, recall, f1, support per class) at an epoch."""
    return _class_report(str(run_dir), int(epoch), split, _mtime(runs.predictions_path(Path(run_dir), int(epoch))))


def top_confusions(run_dir: str, epoch: int, split: str = "val", k: int = 10) -> pd.DataFrame:
    """analysis.errors.top_confusions of the cached confusion matrix (cheap: not cached itself)."""
    from analysis import errors
    return errors.top_confusions(confusion(run_dir, epoch, split), k)


@st.cache_data(show_spinner=False, max_entries=256)
def _cell_examples(run_dir: str, epoch: int, split: str, true_class: int, predicted_class: int,
                   mtime: float) -> np.ndarray:
    from analysis import errors
    probs, labels, _ = split_predictions(run_dir, epoch, split)
    return errors.cell_examples(probs, labels, true_class, predicted_class)


def cell_examples(run_dir: str, epoch: int, split: str, true_class: int, predicted_class: int) -> np.ndarray:
    """analysis.errors.cell_examples: positions in one confusion cell, most confident first."""
    return _cell_examples(str(run_dir), int(epoch), split, int(true_class), int(predicted_class),
                          _mtime(runs.predictions_path(Path(run_dir), int(epoch))))


@st.cache_data(show_spinner=False, max_entries=128)
def _confident_mistakes(run_dir: str, epoch: int, split: str, k: int | None, mtime: float) -> np.ndarray:
    from analysis import errors
    probs, labels, _ = split_predictions(run_dir, epoch, split)
    return errors.confident_mistakes(probs, labels, k)


def confident_mistakes(run_dir: str, epoch: int, split: str = "val", k: int | None = None) -> np.ndarray:
    """analysis.errors.confident_mistakes: positions of wrong predictions, most confident first."""
    return _confident_mistakes(str(run_dir), int(epoch), split, k,
                               _mtime(runs.predictions_path(Path(run_dir), int(epoch))))


@st.cache_data(show_spinner=False, max_entries=128)
def _reliability(run_dir: str, epoch: int, split: str, mtime: float):
    from analysis.calibration import reliability as compute
    probs, labels, _ = split_predictions(run_dir, epoch, split)
    table, ece = compute(probs, labels)
    return table, ece


def reliability(run_dir: str, epoch: int, split: str = "val") -> tuple[pd.DataFrame, float]:
    """(table, ece) of analysis.calibration.reliability at an epoch."""
    return _reliability(str(run_dir), int(epoch), split, _mtime(runs.predictions_path(Path(run_dir), int(epoch))))


@st.cache_data(show_spinner="Reading every epoch's predictions…", max_entries=32)
def _by_epoch(what: str, run_dir: str, split: str, key: tuple) -> object:
    from analysis import calibration, errors
    if what == "confusion":
        return {e: confusion(run_dir, e, split) for e in prediction_epochs(run_dir)}
    if what == "class_accuracy":
        return errors.per_class_accuracy_by_epoch(confusion_by_epoch(run_dir, split))
    if what == "mistake_confidence":
        return errors.mistake_confidence_by_epoch(split_predictions_by_epoch(run_dir, split))
    if what == "calibration":
        return calibration.calibration_by_epoch(run_dir, split)
    if what == "suspicious":
        return errors.suspicious_labels_in_run(split_predictions_by_epoch(run_dir, split, last=3))
    raise ValueError(what)


def confusion_by_epoch(run_dir: str, split: str = "val") -> dict[int, np.ndarray]:
    """{epoch: confusion matrix (10,10)} for every epoch with predictions (each one `confusion`)."""
    return _by_epoch("confusion", str(run_dir), split, _predictions_key(str(run_dir)))


def class_accuracy_by_epoch(run_dir: str, split: str = "val") -> pd.DataFrame:
    """Per-class accuracy per epoch (index epoch, columns 0..9 and "all"), from `confusion_by_epoch`."""
    return _by_epoch("class_accuracy", str(run_dir), split, _predictions_key(str(run_dir)))


def mistake_confidence_by_epoch(run_dir: str, split: str = "val") -> pd.DataFrame:
    return _by_epoch("mistake_confidence", str(run_dir), split, _predictions_key(str(run_dir)))


def calibration_by_epoch(run_dir: str, split: str = "val") -> pd.DataFrame:
    return _by_epoch("calibration", str(run_dir), split, _predictions_key(str(run_dir)))


def suspicious_labels(run_dir: str, split: str = "val") -> pd.DataFrame:
    """analysis.errors.suspicious_labels_in_run over the last three epochs."""
    return _by_epoch("suspicious", str(run_dir), split, _predictions_key(str(run_dir)))


@st.cache_data(show_spinner=False, max_entries=32)
def _classes_getting_worse(run_dir: str, split: str, min_drop: float, key: tuple) -> pd.DataFrame:
    from analysis.errors import classes_getting_worse as worse
    return worse(class_accuracy_by_epoch(run_dir, split), min_drop=min_drop)


def classes_getting_worse(run_dir: str, split: str = "val", min_drop: float = 0.0) -> pd.DataFrame:
    """analysis.errors.classes_getting_worse of `class_accuracy_by_epoch`."""
    return _classes_getting_worse(str(run_dir), split, float(min_drop), _predictions_key(str(run_dir)))


@st.cache_data(show_spinner="Reading the training dynamics…", max_entries=8)
def _training_dynamics(run_dir: str, key: tuple):
    from analysis.dynamics import dynamics_of
    return dynamics_of(run_dir, {e: load_predictions(run_dir, e) for e in prediction_epochs(run_dir)})


@st.cache_data(show_spinner=False, max_entries=16)
def _dynamics(what: str, run_dir: str, key: tuple) -> pd.DataFrame:
    from analysis import dynamics
    if what == "forgetting":
        d = _training_dynamics(run_dir, key)
        return dynamics.forgetting_table(d.correct, d.labels)
    if what == "most_forgotten":
        return dynamics.most_forgotten_of(_training_dynamics(run_dir, key), k=24)
    if what == "cartography":
        d = _training_dynamics(run_dir, key)
        return dynamics.cartography_table(d.true_prob, d.correct, d.labels, d.index)
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


# Figures with many points are built once and shared (st.cache_resource: no pickling round trip).
# They are read-only: pages pass them to st.plotly_chart and never modify them.

@st.cache_resource(show_spinner=False, max_entries=8)
def _cartography_figure(run_dir: str, sample_size: int, key: tuple):
    from analysis.dynamics import AMBIGUOUS_VARIABILITY, EASY_CONFIDENCE
    from dashboard.figures import cartography_figure
    carto = cartography(run_dir)
    sample = carto if len(carto) <= sample_size else carto.sample(sample_size, random_state=0).sort_index()
    x_max = max(0.5, float(carto["variability"].max()) * 1.05)
    return cartography_figure(sample, x_max, EASY_CONFIDENCE, AMBIGUOUS_VARIABILITY), sample


def cartography_figure(run_dir: str, sample_size: int = 20000):
    """(figure, sample): the cartography scatter of at most `sample_size` training examples (shared, read-only).

    The figure's points are the rows of `sample` in order (a random sample, seed 0, when the run has more).
    """
    return _cartography_figure(str(run_dir), int(sample_size), _predictions_key(str(run_dir)))


@st.cache_resource(show_spinner="Building the animation…", max_entries=8)
def _confusion_animation(run_dir: str, split: str, normalize: bool, key: tuple):
    from dashboard.figures import confusion_animation
    cms = confusion_by_epoch(run_dir, split)
    return confusion_animation(cms, normalize) if len(cms) > 1 else None


def confusion_animation(run_dir: str, split: str = "val", normalize: bool = False):
    """The confusion matrix epoch by epoch (Plotly frames; shared, read-only), or None with one epoch."""
    return _confusion_animation(str(run_dir), split, bool(normalize), _predictions_key(str(run_dir)))


@st.cache_data(show_spinner=False, max_entries=4)
def mnist_check(root: str) -> dict:
    """Where MNIST came from and whether its four files match the official MD5s (hashes the files once)."""
    return {"source": mnist.source_info(root), "problems": mnist.verify(root), "expected": dict(mnist.FILES)}


def _file_sizes(raw: dict[str, np.ndarray]) -> dict[str, int]:
    return {"train": len(raw["train-labels-idx1-ubyte"]), "test": len(raw["t10k-labels-idx1-ubyte"])}


@st.cache_data(show_spinner=False, max_entries=8)
def split_rows(split_kind: str, root: str | None = None) -> dict[str, tuple[str, int, int]]:
    """analysis.dataset.split_rows of a protocol: {part: (official file, first row, end row)}."""
    from analysis.dataset import split_rows as rows
    return rows(DataConfig(split_kind), _file_sizes(load_raw_mnist(root)))


@st.cache_data(show_spinner=False, max_entries=8)
def split_labels(split_kind: str, root: str | None = None) -> dict[str, np.ndarray]:
    """Labels of the train / val / test splits of the "classic" or "seed" protocol (see `split_rows`)."""
    raw = load_raw_mnist(root)
    files = {"train": raw["train-labels-idx1-ubyte"], "test": raw["t10k-labels-idx1-ubyte"]}
    return {part: files[file][start:stop] for part, (file, start, stop) in split_rows(split_kind, root).items()}


@st.cache_data(show_spinner=False, max_entries=8)
def class_counts(split_kind: str, root: str | None = None) -> pd.DataFrame:
    """analysis.dataset.class_counts of the protocol's splits (index class, one column per split)."""
    from analysis.dataset import class_counts as counts
    return counts(split_labels(split_kind, root))


@st.cache_data(show_spinner="Averaging the images of each class…", max_entries=4)
def class_mean_images(root: str | None = None) -> np.ndarray:
    """(10,28,28) float: the mean of the official training images of each class."""
    from analysis.dataset import class_means
    raw = mnist.load_raw(root)   # read whole, then let go: through the shared mapping all 47 MB would stay in memory
    images, labels = raw["train-images-idx3-ubyte"], raw["train-labels-idx1-ubyte"]
    return class_means(images, labels)


# ---- part 2: attributions, filters & activations, draw ----
# Images passed to these wrappers are one digit as float32 (28,28) in [0,1] (use `as_float_image`);
# numpy arrays are hashed by value, so the same picture hits the same cache entry.

def as_float_image(image: np.ndarray) -> np.ndarray:
    """A digit as float32 (28,28) in [0,1]: uint8 images are divided by 255."""
    a = np.asarray(image)
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    return np.ascontiguousarray(a.reshape(28, 28))


def _batch(image: np.ndarray, copies: int = 1):
    """A uint8 or float (28,28) image as a model input (copies,1,28,28)."""
    return jobs.model_input(as_float_image(image), copies)


def _opts(options: dict | None) -> tuple:
    return tuple(sorted((options or {}).items()))


def checkpoints_key(run_dir: str) -> tuple[tuple[int, float], ...]:
    """(epoch, mtime) of every checkpoint: results over all checkpoints refresh when one lands."""
    return tuple((e, _mtime(runs.checkpoint_path(Path(run_dir), e)))
                 for e in runs.checkpoint_epochs(Path(run_dir)))


# Heavy results below are computed by dashboard.workers (a pool of processes shared by every session, at most
# one job per core at once); while a job waits, an st.empty placeholder tells the visitor its queue position.

def _heavy(fn, *args):
    """fn(*args) (a dashboard.jobs function) in a worker process, the queue shown while it waits."""
    return workers.run(fn, *args, waiting=st.empty())


@st.cache_data(show_spinner="Computing the attribution map…", max_entries=512)
def _attribution(run_dir: str, epoch: int, image: np.ndarray, method: str, target: int,
                 options: tuple) -> tuple[np.ndarray, float | None]:
    return _heavy(jobs.attribution, load_model(run_dir, epoch), image, method, int(target), options)


def attribution(run_dir: str, epoch: int, image: np.ndarray, method: str, target: int,
                options: dict | None = None) -> tuple[np.ndarray, float | None]:
    """(map (28,28), convergence delta or None) of `method` for one image towards `target`."""
    return _attribution(str(run_dir), int(epoch), as_float_image(image), method, int(target), _opts(options))


@st.cache_data(show_spinner="Computing the maps for all ten classes…", max_entries=64)
def _all_classes(run_dir: str, epoch: int, image: np.ndarray, method: str, options: tuple) -> np.ndarray:
    return _heavy(jobs.all_classes, load_model(run_dir, epoch), image, method, options)     # (10,28,28)


def all_class_attributions(run_dir: str, epoch: int, image: np.ndarray, method: str,
                           options: dict | None = None) -> np.ndarray:
    """(10,28,28): the map of `method` for one image towards each class 0..9."""
    return _all_classes(str(run_dir), int(epoch), as_float_image(image), method, _opts(options))


@st.cache_data(show_spinner="Randomizing the model, layer by layer…", max_entries=128)
def _sanity(run_dir: str, epoch: int, image: np.ndarray, method: str, target: int,
            options: tuple) -> tuple[pd.DataFrame, bool, str]:
    return _heavy(jobs.sanity, run_dir, epoch, load_model(run_dir, epoch), image, method, int(target), options)


def sanity_check(run_dir: str, epoch: int, image: np.ndarray, method: str, target: int,
                 options: dict | None = None) -> tuple[pd.DataFrame, bool, str]:
    """analysis.trust.randomization_test table for one image, and its verdict (passed, sentence)."""
    return _sanity(str(run_dir), int(epoch), as_float_image(image), method, int(target), _opts(options))


@st.cache_data(show_spinner="Deleting pixels…", max_entries=128)
def _deletion(run_dir: str, epoch: int, image: np.ndarray, method: str, target: int,
              options: tuple) -> tuple[pd.DataFrame, dict]:
    attr, _ = attribution(run_dir, epoch, image, method, target, dict(options))
    return _heavy(jobs.deletion, load_model(run_dir, epoch), image, attr, int(target))


def deletion_check(run_dir: str, epoch: int, image: np.ndarray, method: str, target: int,
                   options: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Deletion/insertion curves of the method's map (analysis.trust) and their AUC summary."""
    return _deletion(str(run_dir), int(epoch), as_float_image(image), method, int(target), _opts(options))


@st.cache_data(show_spinner="Averaging maps over the class (cached in the run folder)…", max_entries=128)
def _class_mean(run_dir: str, epoch: int, digit: int, method: str, n: int, options: tuple) -> np.ndarray:
    return _heavy(jobs.class_mean, run_dir, epoch, load_model(run_dir, epoch), digit, method, n, options)


def class_mean_attribution(run_dir: str, epoch: int, digit: int, method: str, n: int,
                           options: dict | None = None) -> np.ndarray:
    """(28,28) mean map of `method` over the first n test images of `digit`, towards `digit`."""
    return _class_mean(str(run_dir), int(epoch), int(digit), method, int(n), _opts(options))


@st.cache_data(show_spinner=False, max_entries=256)
def _fgsm(run_dir: str, epoch: int, image: np.ndarray, label: int, epsilon: float) -> np.ndarray:
    import torch
    from analysis.fragility import fgsm
    out = fgsm(load_model(run_dir, epoch), _batch(image), torch.tensor([int(label)]), float(epsilon))
    return out[0, 0].numpy()


def fgsm_image(run_dir: str, epoch: int, image: np.ndarray, label: int, epsilon: float) -> np.ndarray:
    """FGSM-perturbed image (28,28) float in [0,1], stepping away from `label` by `epsilon`."""
    return _fgsm(str(run_dir), int(epoch), as_float_image(image), int(label), round(float(epsilon), 4))


@st.cache_data(show_spinner="Searching the smallest flipping step…", max_entries=256)
def _min_flip(run_dir: str, epoch: int, image: np.ndarray, label: int, eps_max: float) -> float | None:
    from analysis.fragility import min_flip_epsilon as search
    return search(load_model(run_dir, epoch), _batch(image), int(label), eps_max=eps_max)


def min_flip_epsilon(run_dir: str, epoch: int, image: np.ndarray, label: int, eps_max: float = 0.5) -> float | None:
    """The smallest FGSM epsilon that moves the prediction away from `label` (None: not up to eps_max)."""
    return _min_flip(str(run_dir), int(epoch), as_float_image(image), int(label), float(eps_max))


@st.cache_data(show_spinner=False, max_entries=256)
def _activations(run_dir: str, epoch: int, image: np.ndarray) -> dict[str, np.ndarray]:
    from analysis.internals import activations as walk
    return {name: t.numpy() for name, t in walk(load_model(run_dir, epoch), _batch(image)).items()}


def activations(run_dir: str, epoch: int, image: np.ndarray) -> dict[str, np.ndarray]:
    """Every stage of the forward pass for one image (analysis.internals.activations), as numpy."""
    return _activations(str(run_dir), int(epoch), as_float_image(image))


@st.cache_data(show_spinner=False, max_entries=64)
def conv_kernels(run_dir: str, epoch: int, layer: str | None = None) -> np.ndarray:
    """A conv layer's kernels at a checkpoint (analysis.internals.conv_kernels; None = the first conv):
    (out,kh,kw) for a layer with one input channel (conv1 (32,3,3)), else (out,in,kh,kw) (conv2 (64,32,3,3))."""
    from analysis.internals import conv_kernels as kernels
    return kernels(run_dir, epoch, layer)


@st.cache_data(show_spinner="Measuring how the kernels moved…", max_entries=32)
def _kernel_drift(run_dir: str, layer: str | None, key: tuple) -> pd.DataFrame:
    from analysis.internals import kernel_drift as drift
    return drift(run_dir, layer)


def kernel_drift(run_dir: str, layer: str | None = None) -> pd.DataFrame:
    """analysis.internals.kernel_drift of a conv layer (None = the first conv): epoch, kernel, from_previous,
    from_first."""
    return _kernel_drift(str(run_dir), layer, checkpoints_key(str(run_dir)))


@st.cache_data(show_spinner="Finding the images that excite this channel most (cached in the run folder)…",
               max_entries=256)
def top_activating(run_dir: str, epoch: int, layer: str, channel: int, k: int = 9,
                   n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """(indices into the official test file (k,), scores (k,)) of the images exciting one channel most."""
    from analysis.internals import top_activating_cached
    return top_activating_cached(run_dir, epoch, layer, channel, k=k, n=n)


@st.cache_data(show_spinner="Growing an image that excites this unit (cached in the run folder)…",
               max_entries=256)
def activation_maximization(run_dir: str, epoch: int, layer: str, unit: int, steps: int = 100) -> np.ndarray:
    """(28,28) float image found by gradient ascent on a channel of any conv layer (layer, unit) or a class
    ("class", c).

    Conv channels maximize the unit at the centre of their map (a localized pattern on black; the
    mean over the whole map just fills the field with ink), with a gentle step (lr 0.05).
    """
    from analysis.internals import activation_maximization_cached
    return activation_maximization_cached(run_dir, epoch, (layer, int(unit)), steps=int(steps), lr=0.05,
                                          where="center")


@st.cache_data(show_spinner="Projecting the penultimate features to 2-D (cached in the run folder)…", max_entries=32)
def embedding_2d(run_dir: str, epoch: int, method: str = "pca", n: int = 1000) -> dict[str, np.ndarray]:
    """{"xy": (n,2), "index": (n,) into the official test file, "labels": (n,)} of what the final Linear layer
    reads (fc1 after its ReLU in our network)."""
    from analysis.internals import embedding_2d_cached
    return embedding_2d_cached(run_dir, epoch, method, n=n)


# ---- filters page
# The Kernels & activations page and the walk-through (also on the Draw page): kernel descriptions,
# a multi-channel layer's kernel summary, and one unit of any conv layer computed by hand.

@st.cache_data(show_spinner=False, max_entries=64)
def kernel_descriptions(run_dir: str, epoch: int, layer: str | None = None) -> pd.DataFrame:
    """analysis.kernels.describe_kernels of a one-input-channel 3×3 conv layer (None = the first conv):
    kernel, responds_to, kind, r, low, high. ValueError for other kernel shapes (nothing to name)."""
    from analysis.kernels import describe_kernels
    kernels = conv_kernels(run_dir, epoch, layer)
    if kernels.ndim != 3 or kernels.shape[1:] != (3, 3):
        raise ValueError(f"kernel descriptions read one-channel 3×3 kernels, not {kernels.shape[1:]}")
    return describe_kernels(kernels)


@st.cache_data(show_spinner=False, max_entries=64)
def kernel_summary(run_dir: str, epoch: int, layer: str) -> np.ndarray:
    """(out,kh,kw): each kernel of a multi-channel conv layer as its mean |weight| over its input channels
    (analysis.kernels.mean_abs_over_inputs); conv2 of our network: (64,3,3)."""
    from analysis.kernels import mean_abs_over_inputs
    return mean_abs_over_inputs(conv_kernels(run_dir, epoch, layer))


@st.cache_data(show_spinner=False, max_entries=512)
def _conv_unit(run_dir: str, epoch: int, image: np.ndarray, layer: str, channel: int, row: int, col: int) -> dict:
    from analysis.internals import conv_unit as unit
    return unit(load_model(run_dir, epoch), _batch(image), layer, channel, row, col)


def conv_unit(run_dir: str, epoch: int, image: np.ndarray, layer: str, channel: int, row: int, col: int) -> dict:
    """analysis.internals.conv_unit: one unit of any conv layer by hand, as analysis.layers.conv_at gives it:
    window (C,kh,kw) with the padding zeros, kernel, products, sum, bias, output, and "seen" (C,H,W)."""
    return _conv_unit(str(run_dir), int(epoch), as_float_image(image), str(layer), int(channel), int(row), int(col))


@st.cache_resource(show_spinner=False, max_entries=64)
def _available_methods(run_dir: str, epoch: int, mtime: float) -> dict[str, str | None]:
    from analysis.attributions import available_methods as available
    return available(load_model(run_dir, epoch))


def available_methods(run_dir: str, epoch: int) -> dict[str, str | None]:
    """analysis.attributions.available_methods of the model: {method: None if available, else the reason}."""
    return dict(_available_methods(str(run_dir), int(epoch), _mtime(runs.checkpoint_path(Path(run_dir), int(epoch)))))


# ---- attributions page: progressive rendering
# A map's figure (Plotly heatmap, digit outline, ticks) takes tens of milliseconds to build, and the Attributions
# page draws several on every rerun; built once per (map, title, outline) and shared (st.cache_resource,
# read-only: pages pass it to st.plotly_chart and never modify it).

@st.cache_resource(show_spinner=False, max_entries=128)
def _attribution_map_figure(run_dir: str, epoch: int, image: np.ndarray, method: str, target: int, options: tuple,
                            title: str, outline: bool):
    from analysis.attributions import METHOD_INFO
    from dashboard.maps import attribution_figure
    attr, _ = _attribution(run_dir, epoch, image, method, target, options)
    return attribution_figure(attr, METHOD_INFO[method].signed, title, image if outline else None)


def attribution_map_figure(run_dir: str, epoch: int, image: np.ndarray, method: str, target: int,
                           options: dict | None = None, title: str | None = None, outline: bool = True):
    """The figure of `attribution(...)`'s map (dashboard.maps.attribution_figure; shared, read-only)."""
    return _attribution_map_figure(str(run_dir), int(epoch), as_float_image(image), method, int(target),
                                   _opts(options), title or "", bool(outline))


@st.cache_resource(show_spinner=False, max_entries=32)
def _kernel_mosaic_figure(run_dir: str, epoch: int, layer: str, name: str, animate: bool, key: tuple):
    from dashboard.maps import kernel_mosaic
    kernels = {e: conv_kernels(run_dir, e, layer) for e in runs.checkpoint_epochs(Path(run_dir))}
    return kernel_mosaic(kernels, epoch, animate, name=name)


def kernel_mosaic_figure(run_dir: str, epoch: int, layer: str, name: str, animate: bool = False):
    """dashboard.maps.kernel_mosaic of a one-input-channel conv layer at an epoch, titled with `name` (with every
    checkpoint's frame when animated; shared, read-only)."""
    return _kernel_mosaic_figure(str(run_dir), int(epoch), str(layer), name, bool(animate),
                                 checkpoints_key(str(run_dir)))


# ---- why this mistake (issue 10): training-data influence, smallest change, label issues, what changed
# The TracIn pass is computed once per run into its cache folder (analysis.influence.train_pass, minutes on the
# full training set: the page asks first, with a progress bar) and then held in memory as one shared, read-only
# object (~150 MB for 60,000 images and 10 checkpoints: at most two runs at once). Diffs, forgotten examples and
# label issues of val/test are built from the cached predictions, so a page reads a predictions file once.

def influence_pass_ready(run_dir: str | Path) -> bool:
    """True when the TracIn training-set pass of every checkpoint is on disk (loading it then takes seconds)."""
    from analysis.influence import pass_ready
    return pass_ready(run_dir)


def influence_training_size(run_dir: str | Path) -> tuple[int, int]:
    """(training images, checkpoints) a TracIn pass goes over (for the page's time estimate)."""
    cfg = load_config(str(run_dir))
    n = cfg.train.subset or len(split_labels(cfg.data.split)["train"])
    return int(n), len(runs.checkpoint_epochs(Path(run_dir)))


def compute_influence_pass(run_dir: str | Path, progress=None) -> None:
    """Run analysis.influence.train_pass into the run's cache folder, reporting progress(done, total)."""
    from analysis.influence import train_pass
    train_pass(run_dir, progress=progress)


@st.cache_resource(show_spinner="Loading the training-set pass…", max_entries=2)
def _influence_passes(run_dir: str, key: tuple):
    from analysis.influence import learning_rates, train_pass
    return train_pass(run_dir, lrs=learning_rates(run_dir, load_metrics(run_dir)))   # metrics.csv read once


def influence_passes(run_dir: str | Path):
    """analysis.influence.train_pass of every checkpoint (shared, read-only; computed when not on disk)."""
    return _influence_passes(str(run_dir), checkpoints_key(str(run_dir)))


@st.cache_data(show_spinner="Scoring the training images…", max_entries=256)
def _influence(run_dir: str, epoch: int, image: np.ndarray, target: int | None, k: int, key: tuple) -> dict:
    from analysis.influence import influence as tracin

    def checkpoint(run: str, e: int) -> "torch.nn.Module":
        """The page's own epoch from the shared models; the others read once, so the sweep evicts none of them."""
        return load_model(run, e) if e == epoch else runs.load_model(Path(run), e)
    return tracin(run_dir, image, target, epoch, k, passes=influence_passes(run_dir), load_model=checkpoint)


def influence(run_dir: str | Path, epoch: int, image: np.ndarray, target: int | None = None, k: int = 8) -> dict:
    """analysis.influence.influence of one image over checkpoints 1..epoch: {"target", "proponents", "opponents"}."""
    return _influence(str(run_dir), int(epoch), as_float_image(image), None if target is None else int(target),
                      int(k), checkpoints_key(str(run_dir)))


@st.cache_data(show_spinner=False, max_entries=16)
def _self_influence(run_dir: str, epoch: int, key: tuple) -> pd.Series:
    from analysis.influence import self_influence as own, training_set
    values = own(run_dir, epoch, passes=influence_passes(run_dir))
    return pd.Series(values, index=training_set(run_dir)[2], name="self_influence")


def self_influence(run_dir: str | Path, epoch: int) -> pd.Series:
    """analysis.influence.self_influence over checkpoints 1..epoch, indexed by official training-file row."""
    return _self_influence(str(run_dir), int(epoch), checkpoints_key(str(run_dir)))


@st.cache_data(show_spinner=False, max_entries=16)
def _top_self_influence(run_dir: str, epoch: int, k: int, key: tuple) -> pd.DataFrame:
    from analysis.influence import top_examples
    return top_examples(self_influence(run_dir, epoch).to_numpy(), k, run_dir)


def top_self_influence(run_dir: str | Path, epoch: int, k: int = 16) -> pd.DataFrame:
    """The k training images of highest self-influence (analysis.influence.top_examples): position, official_row,
    label, score."""
    return _top_self_influence(str(run_dir), int(epoch), int(k), checkpoints_key(str(run_dir)))


@st.cache_data(show_spinner="Searching the smallest change…", max_entries=256)
def _smallest_change(run_dir: str, epoch: int, image: np.ndarray, target: int) -> dict:
    return _heavy(jobs.smallest_change, load_model(run_dir, epoch), image, int(target))


def smallest_change(run_dir: str | Path, epoch: int, image: np.ndarray, target: int) -> dict:
    """analysis.counterfactual.smallest_change of one image towards `target` with the model at (run, epoch)."""
    return _smallest_change(str(run_dir), int(epoch), as_float_image(image), int(target))


@st.cache_data(show_spinner="Comparing the two models example by example…", max_entries=32)
def _diff(run_a: str, epoch_a: int, run_b: str, epoch_b: int, split: str, key: tuple):
    from analysis import diff as d
    return d.diff(run_a, epoch_a, run_b, epoch_b, split, load_predictions=load_predictions)


def diff(run_a: str | Path, epoch_a: int, run_b: str | Path, epoch_b: int, split: str = "val"):
    """analysis.diff.diff from (run_a, epoch_a) to (run_b, epoch_b), built from the cached predictions.
    ValueError when the two scored different examples."""
    key = (_mtime(runs.predictions_path(Path(run_a), int(epoch_a))), _mtime(runs.predictions_path(Path(run_b), int(epoch_b))))
    return _diff(str(run_a), int(epoch_a), str(run_b), int(epoch_b), split, key)


@st.cache_data(show_spinner=False, max_entries=32)
def _forgotten(run_dir: str, epoch: int, split: str, key: tuple) -> pd.DataFrame:
    from analysis import diff as d
    return d.forgotten(run_dir, epoch, split, load_predictions=load_predictions)


def forgotten(run_dir: str | Path, epoch: int, split: str = "val") -> pd.DataFrame:
    """analysis.diff.forgotten (right at epoch-1, wrong at epoch, right at epoch+1), from the cached predictions.
    ValueError when epoch-1 or epoch+1 has no predictions."""
    return _forgotten(str(run_dir), int(epoch), split, _predictions_key(str(run_dir)))


@st.cache_data(show_spinner="Ranking the labels with cleanlab…", max_entries=32)
def _label_issues(run_dir: str, split: str, epoch: int, key: tuple) -> tuple[pd.DataFrame, str]:
    from analysis import label_issues as li
    return li.run_label_issues(run_dir, split, epoch, load_predictions=load_predictions)


def label_issues(run_dir: str | Path, split: str, epoch: int) -> tuple[pd.DataFrame, str]:
    """analysis.label_issues.run_label_issues: (every example ranked, most suspicious first; kind of probabilities,
    a key of analysis.label_issues.KINDS). RunError when the run has no probabilities of the needed kind."""
    return _label_issues(str(run_dir), split, int(epoch), _predictions_key(str(run_dir)))
