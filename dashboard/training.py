"""Launch, watch and stop training runs from the dashboard: plain Python, no Streamlit.

A training runs as its own process, never inside the Streamlit server:

    python -m model.train --preset quick ... --runs-dir <runs_dir> --name <name>
    python -m model.train ... --model-file <run>/source/<file> --model-class C --model-kwargs JSON [--input-norm M S]

(the second trains a network defined outside digit-lens again: the class file an imported run keeps)

started with `subprocess.Popen` (cwd = the repository root, a new session so a signal reaches only
the trainer), its stdout and stderr going to `<runs_dir>/.logs/<stamp>-<name>.log` (a dot folder,
which `model.runs.list_runs` skips). Stopping sends SIGTERM: the trainer marks the run
`interrupted` and keeps every finished epoch. A daemon thread waits for each process, so it is reaped
as soon as it ends (no zombie), whether or not anyone calls `poll`.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from model import runs
from model.config import OPTIMIZERS
from model.train import PRESETS

LOG_DIR = ".logs"
_NAME_OK = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class Launch:
    """One training process started by `launch`."""
    name: str                      # the --name given to the trainer (the run id ends with it)
    runs_dir: Path
    log_path: Path
    command: list[str]
    process: subprocess.Popen = field(repr=False)
    started: float                 # time.time() at launch
    existing: frozenset[str]       # run folders present before the launch (to find the new one)
    run_dir: Path | None = None    # the run folder, once the trainer has created it
    stop_requested: bool = False
    dismissed: bool = False        # hidden from the dashboard's progress panel

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class Progress:
    """How far a launched training got, read from its run folder and its log."""
    state: str                     # starting, running, completed, failed, interrupted
    epochs_done: int               # finished epochs (rows of metrics.csv)
    epochs_total: int | None       # from the run's config, once written
    batch: tuple[int, int] | None  # (batches done, batches per epoch) of the epoch in progress (progress.json)
    fraction: float                # overall progress in [0, 1]
    returncode: int | None         # None while the process runs
    run_dir: Path | None
    log_tail: str


def safe_name(name: str) -> str:
    """A run name usable in a folder name: letters, digits, '_', '.', '-' (others become '-')."""
    cleaned = _NAME_OK.sub("-", name.strip()).strip("-.")
    return cleaned[:60] or "run"


def build_command(runs_dir: Path | str, name: str, preset: str | None = None, epochs: int | None = None,
                  lr: float | None = None, optimizer: str | None = None, variant: str | None = None,
                  subset: int | None = None, eval_subset: int | None = None,
                  model_file: Path | str | None = None, model_class: str | None = None,
                  model_kwargs: dict | None = None, input_norm: tuple[float, float] | list[float] | None = None,
                  extra: list[str] | None = None) -> list[str]:
    """The trainer's command line; options left at None take the preset's (or the trainer's) default.

    Args:
        runs_dir: where the run folder goes (--runs-dir).
        name: the run name (--name).
        preset: "quick", "seed" or None.
        variant: one of model.net's variants; or, instead, a network class of one's own:
        model_file, model_class, model_kwargs, input_norm: --model-file (a Python file, e.g. an imported run's
            source/ copy), --model-class, --model-kwargs (as JSON) and --input-norm MEAN STD.
        extra: more trainer flags, appended as they are (e.g. ["--log-every", "1"]).
    Returns:
        argv for subprocess.Popen, starting with this Python interpreter.
    """
    cmd = [sys.executable, "-m", "model.train"]
    if preset:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
        cmd += ["--preset", preset]
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}")
    if model_file is not None:
        if variant is not None:
            raise ValueError("give a variant or a model file, not both")
        if not model_class:
            raise ValueError("a model file needs the name of its class")
    for flag, value in (("--epochs", epochs), ("--lr", lr), ("--optimizer", optimizer), ("--variant", variant),
                        ("--subset", subset), ("--eval-subset", eval_subset)):
        if value is not None:
            cmd += [flag, str(value)]
    if model_file is not None:
        cmd += ["--model-file", str(model_file), "--model-class", str(model_class),
                "--model-kwargs", json.dumps(model_kwargs or {})]
        if input_norm is not None:
            cmd += ["--input-norm", *(str(float(v)) for v in input_norm)]
    return cmd + ["--runs-dir", str(runs_dir), "--name", safe_name(name)] + list(extra or [])


def class_architectures(run_infos) -> dict[str, "runs.RunInfo"]:
    """The networks of imported class-file runs that can be trained again: {"run:<run id>": the run}, one entry per
    (class file, class, constructor arguments, input normalisation), the newest run first as listed.

    Args:
        run_infos: model.runs.RunInfo of the runs folder (model.runs.list_runs).
    """
    found, seen = {}, set()
    for run in run_infos:
        src = run.config.source
        if src is None or src.kind != "class" or not src.class_name:
            continue
        same = (src.sha256, src.class_name, json.dumps(src.kwargs, sort_keys=True), tuple(src.input_norm or ()))
        if same not in seen:
            seen.add(same)
            found[f"run:{run.run_id}"] = run
    return found


def network_options(run) -> dict:
    """`build_command`'s options that train the network of an imported class-file run again: its kept class
    file (<run>/source/<file>), class, constructor arguments and input normalisation."""
    src = run.config.source
    return {"model_file": str(Path(run.path) / src.file), "model_class": src.class_name, "model_kwargs": src.kwargs,
            "input_norm": src.input_norm}


def launch(runs_dir: Path | str, name: str, **options) -> Launch:
    """Start a training process in the background; `options` are `build_command`'s.

    Returns:
        A Launch; keep it (e.g. in st.session_state) to watch, stop and reap the process.
    """
    from dashboard import mode
    if mode.read_only():        # the page hides the form; this holds even if something calls launch anyway
        raise PermissionError("this dashboard serves read-only: training cannot be started from it")
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    name = safe_name(name)
    cmd = build_command(runs_dir, name, **options)
    log_path = runs_dir / LOG_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    existing = frozenset(p.name for p in runs_dir.iterdir() if p.is_dir())
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as log:  # the child keeps its own copy of the file descriptor
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        process = subprocess.Popen(cmd, cwd=runs.REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    # reap the process the moment it ends, even if nobody polls (the user left the page)
    threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
    return Launch(name, runs_dir, log_path, cmd, process, time.time(), existing)


def poll(launch: Launch) -> int | None:
    """The exit code once the process has ended (reaping it), else None."""
    return launch.process.poll()


def is_running(launch: Launch) -> bool:
    return poll(launch) is None


def stop(launch: Launch, timeout: float = 15.0) -> int | None:
    """Ask the trainer to stop (SIGTERM), wait up to `timeout` s for it, then SIGKILL; reap it.

    The trainer catches SIGTERM, marks the run `interrupted` and exits; finished epochs stay.
    Returns:
        The exit code (130 after a clean interrupt), or None if it could not be reaped.
    """
    launch.stop_requested = True
    if poll(launch) is not None:
        return launch.process.returncode
    _signal(launch, signal.SIGTERM)
    try:
        return launch.process.wait(timeout)
    except subprocess.TimeoutExpired:
        _signal(launch, signal.SIGKILL)
        try:
            return launch.process.wait(5)
        except subprocess.TimeoutExpired:
            return None


def _signal(launch: Launch, sig: int) -> None:
    """Send sig to the trainer's process group (its own session), or to the process alone."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(launch.pid, sig)
        else:  # pragma: no cover - Windows
            launch.process.send_signal(sig)
    except ProcessLookupError:
        pass


def find_run_dir(launch: Launch) -> Path | None:
    """The run folder the process created: a new folder whose config names it and (once
    status.json exists) whose status carries its pid."""
    if launch.run_dir is not None:
        return launch.run_dir
    if not launch.runs_dir.is_dir():
        return None
    found = []
    for d in launch.runs_dir.iterdir():
        if d.name in launch.existing or not d.is_dir() or d.name.startswith("."):
            continue
        try:
            if runs.load_config(d).name != launch.name:
                continue
        except runs.RunError:
            continue
        found.append(d)
    if len(found) > 1:  # two launches with one name at once: the status pid tells them apart
        found = [d for d in found if _status_pid(d) == launch.pid] or found[:1]
    launch.run_dir = found[0] if found else None
    return launch.run_dir


def _status_pid(run_dir: Path) -> int | None:
    try:
        return int(runs.load_status(run_dir).get("pid"))
    except (runs.RunError, TypeError, ValueError):
        return None


def log_tail(path: Path | str, lines: int = 12, max_bytes: int = 20000) -> str:
    """The last lines of a log; tqdm's carriage-return updates count as lines."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    parts = [p.rstrip() for p in re.split(r"[\r\n]+", text)]
    return "\n".join([p for p in parts if p.strip()][-lines:])


def _batch_in_progress(run_dir: Path, epoch: int) -> tuple[int, int] | None:
    """(batches done, batches per epoch) of `epoch` from the trainer's progress.json, if it is about that epoch."""
    p = runs.load_progress(run_dir)
    try:
        if p is None or int(p["epoch"]) != epoch:
            return None
        return int(p["batch"]), int(p["batches"])
    except (KeyError, TypeError, ValueError):
        return None


def progress(launch: Launch) -> Progress:
    """Where the launched training is: state, finished epochs, the batch in progress, the log tail.

    Reaps the process if it has ended.
    """
    code = poll(launch)
    run_dir = find_run_dir(launch)
    tail = log_tail(launch.log_path)
    epochs_done, epochs_total, state = 0, None, "starting"
    if run_dir is not None:
        try:
            epochs_total = int(runs.load_config(run_dir).train.epochs)
        except (runs.RunError, TypeError, ValueError):
            pass
        try:
            epochs_done = len(runs.load_metrics(run_dir))
        except runs.RunError:
            epochs_done = 0
        try:
            state = runs.load_status(run_dir)["state"]
        except runs.RunError:
            state = "starting"
    if code is not None and state in ("starting", "running"):
        # the process is gone but did not record an end state (killed before its handler ran)
        state = "completed" if code == 0 else ("interrupted" if launch.stop_requested else "failed")
    batch = _batch_in_progress(run_dir, epochs_done + 1) if code is None and run_dir is not None else None
    if epochs_total:
        within = batch[0] / batch[1] if batch and batch[1] else 0.0
        fraction = min(1.0, (epochs_done + within) / epochs_total)
    else:
        fraction = 0.0
    if state == "completed":
        fraction = 1.0
    return Progress(state, epochs_done, epochs_total, batch, fraction, code, run_dir, tail)
