"""The run format: the one module that writes and reads run folders (see docs/run-format.md).

A run is a folder `<runs-dir>/<run-id>/` of plain files:
    config.json                         everything that rebuilds the model and repeats the run
    metrics.csv                         one row per finished epoch
    steps.csv                           training loss every N steps
    status.json                         running / completed / failed / interrupted / imported
    progress.json                       while training: the epoch and batch in progress (for the dashboard)
    checkpoints/epoch_NNN.safetensors   weights after each epoch
    checkpoints/optimizer.safetensors   optimizer state after the last finished epoch (for --resume)
    checkpoints/optimizer.next.safetensors  an epoch's optimizer state until its metrics row commits it
    predictions/epoch_NNN.npz           val/test logits and per-training-example dynamics
    cache/                              slow analysis results, one file per key (written by analysis)
Every file is written atomically (temporary name, then rename). status.json is written before config.json,
so every folder with a config.json has a status.json.
"""
from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from model.config import DataConfig, TrainConfig
from model.external import ModelError, ModelSource, build_model
from model.net import VARIANTS, Net, NetConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
FORMAT_VERSION = 2   # 2: an optional "source" section and source/ folder (models defined outside digit-lens)
CONFIG_FILE, STATUS_FILE, PROGRESS_FILE = "config.json", "status.json", "progress.json"
METRICS_FILE, STEPS_FILE = "metrics.csv", "steps.csv"
CACHE_DIR = "cache"
METRIC_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                  "lr", "epoch_seconds"]
STEP_COLUMNS = ["step", "epoch", "loss"]
STATES = ("running", "completed", "failed", "interrupted", "imported")
STALE_SECONDS = 600  # a "running" run whose process is gone, or silent this long, was interrupted


class RunError(Exception):
    """A run file is missing or corrupt; `path` names the file."""

    def __init__(self, path: Path | str, problem: str):
        self.path = Path(path)
        super().__init__(f"{self.path}: {problem}")


def default_runs_dir() -> Path:
    """$DIGIT_LENS_RUNS, else `runs/` at the repository root."""
    return Path(os.environ.get("DIGIT_LENS_RUNS") or REPO_ROOT / "runs")


# ----------------------------------------------------------------------------- atomic writes

def _tmp_name(path: Path) -> Path:
    """A temporary name beside path, private to this process and thread."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write data to path so that a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, default=str).encode())


def atomic_write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    with open(tmp, "rb") as f:          # on disk before the rename, as atomic_write_bytes does
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- paths

def checkpoint_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"epoch_{epoch:03d}.safetensors"


def predictions_dir(run_dir: Path | str) -> Path:
    return Path(run_dir) / "predictions"


def predictions_path(run_dir: Path, epoch: int) -> Path:
    return predictions_dir(run_dir) / f"epoch_{epoch:03d}.npz"


def config_path(run_dir: Path | str) -> Path:
    return Path(run_dir) / CONFIG_FILE


def optimizer_path(run_dir: Path) -> Path:
    """The optimizer state after the last finished epoch (for --resume)."""
    return Path(run_dir) / "checkpoints" / "optimizer.safetensors"


def _next_optimizer_path(run_dir: Path) -> Path:
    """The optimizer state of an epoch whose metrics row is not written yet (see RunWriter.write_epoch)."""
    return Path(run_dir) / "checkpoints" / "optimizer.next.safetensors"


def metrics_path(run_dir: Path | str) -> Path:
    return Path(run_dir) / METRICS_FILE


def steps_path(run_dir: Path | str) -> Path:
    return Path(run_dir) / STEPS_FILE


def cache_dir(run_dir: Path | str) -> Path:
    """Where slow analysis results of a run are kept (analysis/cache.py); safe to delete.

    `<run>/cache/`, or, when $DIGIT_LENS_CACHE is set (read-only serving, dashboard/mode.py), outside the
    run: `$DIGIT_LENS_CACHE/<hash of the runs folder's path>/<run-id>/`, so no file is written into the run.
    """
    root = os.environ.get("DIGIT_LENS_CACHE")
    if not root:
        return Path(run_dir) / CACHE_DIR
    import hashlib
    run_dir = Path(run_dir).resolve()
    return Path(root) / hashlib.sha1(str(run_dir.parent).encode()).hexdigest()[:12] / run_dir.name


def _epochs_in(folder: Path, suffix: str) -> list[int]:
    out = []
    for p in folder.glob(f"epoch_*{suffix}"):
        try:
            out.append(int(p.name[len("epoch_"):-len(suffix)]))
        except ValueError:
            pass
    return sorted(out)


# ----------------------------------------------------------------------------- writing

class RunWriter:
    """Writes one run folder, epoch by epoch. Used by the trainer and the checkpoint importer."""

    def __init__(self, run_dir: Path, config: dict, resume: bool = False):
        self.dir = Path(run_dir)
        if resume:
            self.config = load_config(self.dir)
            self.metrics = load_metrics(self.dir).to_dict("records") if metrics_path(self.dir).exists() else []
            done = int(self.metrics[-1]["epoch"]) if self.metrics else 0   # steps of an unfinished epoch go
            self.steps = [s for s in load_steps(self.dir).to_dict("records") if int(s["epoch"]) <= done]
        else:
            if self.dir.exists() and any(self.dir.iterdir()):
                raise RunError(self.dir, "run folder exists already; pick another --name or use --resume")
            self.config = config if isinstance(config, RunConfig) else RunConfig.from_dict(config)
            self.metrics, self.steps = [], []
            # status first: a folder with config.json (a run, to every reader) always has status.json, even when
            # this process is killed between the two writes
            self.set_status("running")
            atomic_write_json(self.dir / CONFIG_FILE, config.to_dict() if isinstance(config, RunConfig) else config)
        self.last_beat = 0.0

    def set_status(self, state: str, last_epoch: int | None = None, **extra) -> None:
        assert state in STATES, state
        if last_epoch is None:
            last_epoch = int(self.metrics[-1]["epoch"]) if self.metrics else 0
        atomic_write_json(self.dir / STATUS_FILE, {
            "state": state, "last_epoch": last_epoch, "heartbeat": time.time(), "pid": os.getpid(), **extra})
        self.last_beat = time.time()

    def heartbeat(self, every: float = 5.0, **extra) -> None:
        """Refresh status.json's heartbeat while running, at most every `every` seconds."""
        if time.time() - self.last_beat >= every:
            self.set_status("running", **extra)

    def save_config(self) -> None:
        """Write config.json again (after --resume changed the number of epochs)."""
        atomic_write_json(self.dir / CONFIG_FILE, self.config.to_dict())

    def set_progress(self, epoch: int, epochs: int, batch: int, batches: int, loss: float | None = None) -> None:
        """progress.json: the batch in progress, so the dashboard shows a bar without parsing logs."""
        atomic_write_json(self.dir / PROGRESS_FILE, {"epoch": epoch, "epochs": epochs, "batch": batch,
                                                     "batches": batches, "loss": loss, "time": time.time()})

    def add_steps(self, rows: list[dict]) -> None:
        self.steps.extend(rows)
        atomic_write_csv(steps_path(self.dir), self.steps, STEP_COLUMNS)

    def write_epoch(self, epoch: int, metrics: dict, state_dict: dict[str, torch.Tensor],
                    predictions: dict[str, np.ndarray], optimizer_state: dict[str, torch.Tensor] | None = None) -> None:
        """Save one finished epoch: checkpoint, predictions, then the metrics row (the commit point).

        The optimizer state goes to a second slot until the metrics row is written, so a process killed at
        any moment leaves the state of the last finished epoch in one of the two (load_optimizer_state).
        """
        atomic_save_safetensors(checkpoint_path(self.dir, epoch), state_dict, {"epoch": str(epoch)})
        atomic_save_npz(predictions_path(self.dir, epoch), **predictions)
        if optimizer_state is not None:
            atomic_save_safetensors(_next_optimizer_path(self.dir), optimizer_state, {"epoch": str(epoch)})
        self.metrics = [m for m in self.metrics if int(m["epoch"]) < epoch] + [{"epoch": epoch, **metrics}]
        atomic_write_csv(metrics_path(self.dir), self.metrics, METRIC_COLUMNS)
        if optimizer_state is not None:
            os.replace(_next_optimizer_path(self.dir), optimizer_path(self.dir))


def check_name(name: str) -> str:
    """A run name must stay a plain folder-name part: letters, digits, '_', '.', '-' (RunError otherwise)."""
    if not name or len(name) > 80 or not all(c.isalnum() or c in "_.-" for c in name) or name.strip(".") == "":
        raise RunError(Path(name or "''"), "a run name may hold only letters, digits, '_', '.' and '-' "
                                            "(at most 80), so that the run stays inside the runs folder")
    return name


def resolve_run(runs_dir: Path | str, ref: str) -> Path:
    """The folder of run `ref`, a run id or a path to a run folder, which must lie directly in runs_dir.

    RunError when it would leave the runs folder (`../`, an absolute path elsewhere, a symlink out).
    """
    root = Path(runs_dir).resolve()
    given = Path(ref)
    candidate = given if given.is_absolute() or (given.exists() and len(given.parts) > 1) else root / ref
    resolved = candidate.resolve()
    if resolved.parent != root or not ref.strip():
        raise RunError(candidate, f"not a run of the runs folder {root}: give a run id, or a path to a folder "
                                  "directly inside it (pass --runs-dir to use another runs folder)")
    return resolved


def existing_run(ref: str, runs_dir: Path | str | None = None) -> Path:
    """The folder of an existing run `ref` of runs_dir (default: default_runs_dir()), for command lines:
    `resolve_run`, plus RunError "no such run" when the folder is not there."""
    runs_dir = Path(runs_dir) if runs_dir else default_runs_dir()
    run_dir = resolve_run(runs_dir, ref)
    if not run_dir.is_dir():
        raise RunError(run_dir, f"no such run in {runs_dir}")
    return run_dir


def new_run_id(runs_dir: Path, name: str) -> str:
    """`<YYYYMMDD-HHMMSS>-<name>`, with a numeric suffix if that folder exists already."""
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{check_name(name)}"
    run_id, n = base, 1
    while (Path(runs_dir) / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


# ----------------------------------------------------------------------------- the config

@dataclass
class RunConfig:
    """config.json as typed sections: model (NetConfig), train (TrainConfig), data (DataConfig), plus provenance."""
    run_id: str = ""
    name: str = ""
    model: NetConfig = field(default_factory=NetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    preset: str | None = None     # --preset, if any
    variant: str = "seed"         # a name of model.net.VARIANTS, or "custom"
    format_version: int = FORMAT_VERSION
    device: str = "cpu"
    world_size: int = 1           # training processes (torchrun); 1 without it
    source: ModelSource | None = None   # a network defined outside digit-lens (model.external); None: `model`
    versions: dict = field(default_factory=dict)
    git_commit: str | None = None
    started_at: str = ""
    command: str = ""

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        """Parse config.json's object (ValueError/TypeError for sections that do not fit)."""
        return cls(run_id=str(d.get("run_id", "")), name=str(d.get("name") or d.get("run_id", "")),
                   model=NetConfig.from_dict(d.get("model") or {}), train=TrainConfig.from_dict(d.get("train") or {}),
                   data=DataConfig.from_dict(d.get("data") or {}), preset=d.get("preset"),
                   variant=str(d.get("variant") or "seed"), format_version=int(d.get("format_version", 1)),
                   device=str(d.get("device", "cpu")), world_size=int(d.get("world_size", 1)),
                   source=ModelSource.from_dict(d["source"]) if d.get("source") else None,
                   versions=dict(d.get("versions") or {}),
                   git_commit=d.get("git_commit"), started_at=str(d.get("started_at", "")),
                   command=str(d.get("command", "")))

    def to_dict(self) -> dict:
        return {"format_version": self.format_version, "run_id": self.run_id, "name": self.name,
                "preset": self.preset, "variant": self.variant,
                "model": None if self.source else self.model.to_dict(),   # the source section says it instead
                "train": self.train.to_dict(), "data": self.data.to_dict(), "device": self.device,
                "world_size": self.world_size, "versions": self.versions, "git_commit": self.git_commit,
                "started_at": self.started_at, "command": self.command,
                **({"source": self.source.to_dict()} if self.source else {})}

    @property
    def imported(self) -> bool:
        return self.train.imported_from is not None

    @property
    def architecture(self) -> str:
        """The variant's name when the model section is one of ours, the source's one-line description for a
        model defined outside digit-lens, else "custom"."""
        if self.source is not None:
            return self.source.describe()
        return next((k for k, v in VARIANTS.items() if v == self.model), "custom")

    def summary(self) -> dict:
        """The config as one flat row (for tables and config diffs): section.key -> value."""
        flat = {"variant": self.variant, "preset": self.preset, "world_size": self.world_size}
        if self.source is not None:
            flat.update({f"source.{k}": v for k, v in self.source.to_dict().items() if k != "note"})
        for section in ("model", "train", "data"):
            for k, v in getattr(self, section).to_dict().items():
                flat[f"{section}.{k}"] = v
        return flat


# ----------------------------------------------------------------------------- reading

@dataclass
class RunInfo:
    """A run as listed: its folder, id, state and how far it got."""
    path: Path
    run_id: str
    name: str
    state: str
    last_epoch: int
    started_at: str
    config: RunConfig


def _read_json(path: Path) -> dict:
    if not path.exists():
        raise RunError(path, "missing")
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RunError(path, f"not valid JSON ({e})") from e
    if not isinstance(obj, dict):
        raise RunError(path, "expected a JSON object")
    return obj


def load_config(run_dir: Path | str) -> RunConfig:
    """config.json as a RunConfig (RunError naming the file when it cannot be read or parsed)."""
    path = config_path(run_dir)
    raw = _read_json(path)
    try:
        return RunConfig.from_dict(raw)
    except (TypeError, ValueError, AttributeError) as e:
        raise RunError(path, f"a section does not fit the run format ({e})") from e


def load_progress(run_dir: Path | str) -> dict | None:
    """progress.json (epoch, epochs, batch, batches, loss, time) while training, or None."""
    try:
        return _read_json(Path(run_dir) / PROGRESS_FILE)
    except RunError:
        return None


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, ValueError, TypeError):
        return False


def load_status(run_dir: Path | str) -> dict:
    """status.json, with a dead "running" run (stale heartbeat, process gone) reported as interrupted."""
    status = _read_json(Path(run_dir) / STATUS_FILE)
    if status.get("state") not in STATES:
        raise RunError(Path(run_dir) / STATUS_FILE, f"unknown state {status.get('state')!r}")
    if status["state"] == "running" and (not _pid_alive(status.get("pid"))
                                         or time.time() - float(status.get("heartbeat", 0)) > STALE_SECONDS):
        status = {**status, "state": "interrupted", "stale": True}
    return status


def load_metrics(run_dir: Path | str) -> pd.DataFrame:
    """metrics.csv as a DataFrame, one row per finished epoch, sorted by epoch."""
    path = metrics_path(run_dir)
    if not path.exists():
        raise RunError(path, "missing")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as e:
        raise RunError(path, f"not a readable CSV ({e})") from e
    missing = [c for c in ("epoch", "train_loss", "val_loss") if c not in df.columns]
    if missing:
        raise RunError(path, f"missing columns {missing}")
    try:
        df["epoch"] = df["epoch"].astype(int)
    except (ValueError, TypeError) as e:
        raise RunError(path, f"bad epoch column ({e})") from e
    return df.sort_values("epoch").reset_index(drop=True)


def load_steps(run_dir: Path | str) -> pd.DataFrame:
    """steps.csv (step, epoch, loss); an empty frame if the run has none."""
    path = steps_path(run_dir)
    if not path.exists():
        return pd.DataFrame(columns=STEP_COLUMNS)
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as e:
        raise RunError(path, f"not a readable CSV ({e})") from e


def checkpoint_epochs(run_dir: Path | str) -> list[int]:
    return _epochs_in(Path(run_dir) / "checkpoints", ".safetensors")


def prediction_epochs(run_dir: Path | str) -> list[int]:
    return _epochs_in(Path(run_dir) / "predictions", ".npz")


def load_predictions(run_dir: Path | str, epoch: int) -> dict[str, np.ndarray]:
    """predictions/epoch_NNN.npz as a dict of arrays (see docs/run-format.md for the keys)."""
    path = predictions_path(Path(run_dir), epoch)
    if not path.exists():
        raise RunError(path, "missing")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise RunError(path, f"corrupt predictions file ({e})") from e
    except Exception as e:  # zipfile.BadZipFile and friends
        raise RunError(path, f"corrupt predictions file ({type(e).__name__}: {e})") from e


# reads one predictions file, (run, epoch) -> its arrays: load_predictions, or a caller's cached version of it
PredictionsReader = Callable[[Path | str, int], dict[str, np.ndarray]]


def split_arrays(predictions: dict[str, np.ndarray], split: str, source: Path | str = "the predictions"
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits (N,10), labels (N,), official index (N,)) of "val" or "test" in one predictions file's arrays.

    RunError naming `source` when the file lacks one of them.
    """
    try:
        return tuple(predictions[f"{split}_{k}"] for k in ("logits", "labels", "index"))
    except KeyError as e:
        raise RunError(source, f"no {e.args[0]} array") from e


def model_config(run_dir: Path | str) -> NetConfig:
    return load_config(run_dir).model


def load_optimizer_state(run_dir: Path | str, epoch: int | None = None) -> dict[str, torch.Tensor] | None:
    """The optimizer tensors saved after `epoch` (default: the last row of metrics.csv), or None when the
    run has none for that epoch."""
    run_dir = Path(run_dir)
    if epoch is None and metrics_path(run_dir).exists():
        epoch = int(load_metrics(run_dir)["epoch"].max())
    # A trainer committing the epoch renames optimizer.next over optimizer.safetensors: a file that vanishes
    # between the look and the read moved to the other name, so look once more (not corruption).
    for last_look in (False, True):
        for path in (optimizer_path(run_dir), _next_optimizer_path(run_dir)):
            if not path.exists():
                continue
            try:
                with safe_open(str(path), "pt") as f:
                    saved = (f.metadata() or {}).get("epoch")
                if epoch is None or saved is None or int(saved) == epoch:
                    return load_file(str(path))
            except Exception as e:  # safetensors and torch's file mapping raise their own errors, not OSError
                if path.exists():
                    raise RunError(path, f"corrupt optimizer state ({type(e).__name__}: {e})") from e
                if last_look:
                    raise RunError(path, "vanished while being read twice: is a trainer still writing this run?")
                break
        else:
            return None
    return None


def load_state_dict(run_dir: Path | str, epoch: int) -> dict[str, torch.Tensor]:
    path = checkpoint_path(Path(run_dir), epoch)
    if not path.exists():
        raise RunError(path, "missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise RunError(path, f"corrupt checkpoint ({e})") from e
    except Exception as e:  # safetensors raises its own errors for garbage headers
        raise RunError(path, f"corrupt checkpoint ({type(e).__name__}: {e})") from e


def load_model(run_dir: Path | str, epoch: int | None = None) -> torch.nn.Module:
    """The model of a run at an epoch (default: the last checkpoint), in eval mode on the CPU.

    It takes (B,1,28,28) images in [0,1] and returns logits (B,10): our `Net`, or for a network defined
    outside digit-lens (config "source") the user's network rebuilt from the run's copy, rewritten one
    module per non-linearity where it can be, inside model.external.Wrapped.
    """
    run_dir = Path(run_dir)
    if epoch is None:
        epochs = checkpoint_epochs(run_dir)
        if not epochs:
            raise RunError(run_dir / "checkpoints", "no checkpoints")
        epoch = epochs[-1]
    config = load_config(run_dir)
    state = load_state_dict(run_dir, epoch)
    if config.source is not None:
        try:
            return build_model(config.source, run_dir, state)
        except ModelError as e:
            raise RunError(run_dir / config.source.file, str(e)) from e
    try:
        net = Net(config.model)
    except (TypeError, ValueError, RuntimeError) as e:
        raise RunError(run_dir / CONFIG_FILE, f"its \"model\" section cannot build the network ({e})") from e
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise RunError(checkpoint_path(run_dir, epoch), f"weights do not fit the config ({str(e)[:200]})") from e
    return net.eval()


def list_runs(runs_dir: Path | str | None = None) -> list[RunInfo]:
    """All runs under runs_dir, newest first. Folders without a readable config.json are skipped."""
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    if not runs_dir.is_dir():
        return []
    out = []
    for d in runs_dir.iterdir():
        if not d.is_dir() or d.name.startswith("."):
            continue
        if d.is_symlink() and d.resolve().parent != runs_dir.resolve():
            continue                                 # a link to a run elsewhere: not part of this folder
        try:
            cfg = load_config(d)
        except RunError:
            continue
        try:
            status = load_status(d)
        except RunError:
            status = {"state": "failed", "last_epoch": 0}
        out.append(RunInfo(d, d.name, cfg.name or d.name, status["state"], int(status.get("last_epoch", 0)),
                           cfg.started_at, cfg))
    return sorted(out, key=lambda r: (r.started_at, r.run_id), reverse=True)


def filter_runs(infos: list[RunInfo], text: str) -> list[RunInfo]:
    """The runs whose name, id, variant, preset or state contain every word of `text` (case-insensitive)."""
    words = text.lower().split()

    def haystack(r: RunInfo) -> str:
        return " ".join(str(v) for v in (r.name, r.run_id, r.config.variant, r.config.preset, r.state)).lower()
    return [r for r in infos if all(w in haystack(r) for w in words)]
