"""Nothing lost: the trainer and the run format under faults.

SIGKILL at random moments, a reader polling a run while it trains, a permission error while saving,
a diverged run on every page, and two processes writing the same analysis cache key. The trainer
runs as a real subprocess (`python -m model.train`) on a tiny run; its reference is an uninterrupted
run with the same seed (the trainer is deterministic per epoch), compared tensor by tensor.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis import cache as acache
from model import runs, train
from tests.apptest_util import open_app

REPO = Path(__file__).resolve().parent.parent
# momentum so that the optimizer state matters on resume; --log-every 1 so steps.csv changes every batch
TINY = ["--epochs", "3", "--subset", "256", "--eval-subset", "100", "--log-every", "1", "--momentum", "0.9",
        "--seed", "7", "--device", "cpu"]
PAGES = ["runs", "curves", "overfitting", "data_page", "confusion", "attributions", "filters", "draw"]


def start_trainer(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "model.train", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def the_run(runs_dir: Path) -> Path | None:
    """The run folder of a runs folder that has a config.json, if any."""
    found = [p for p in runs_dir.iterdir() if (p / runs.CONFIG_FILE).exists()] if runs_dir.exists() else []
    assert len(found) <= 1, found
    return found[0] if found else None


def poll_once(run: Path, seen: dict) -> None:
    """Read every file of the run through model.runs; check it is a whole, old-or-new version."""
    runs.load_config(run)
    if (run / runs.STATUS_FILE).exists():
        status = runs.load_status(run)
        assert status["last_epoch"] >= seen.get("status_epoch", 0)      # never goes back
        seen["status_epoch"] = status["last_epoch"]
        seen.setdefault("states", set()).add(status["state"])
    runs.load_progress(run)
    steps = runs.load_steps(run)
    assert list(steps["step"]) == list(range(1, len(steps) + 1))      # whole rows only, in order
    if runs.metrics_path(run).exists():
        epochs = list(runs.load_metrics(run)["epoch"])
        assert epochs == list(range(1, len(epochs) + 1))
        assert len(epochs) >= seen.get("metrics_epochs", 0)
        seen["metrics_epochs"] = len(epochs)
        for e in epochs:
            runs.load_predictions(run, e)
            runs.load_state_dict(run, e)
    for e in runs.checkpoint_epochs(run):          # also a checkpoint whose metrics row is not written yet
        runs.load_state_dict(run, e)
    runs.load_optimizer_state(run)
    seen["reads"] = seen.get("reads", 0) + 1


@pytest.fixture(scope="module")
def watched_run(tmp_path_factory, mnist_root) -> tuple[Path, dict, list]:
    """An uninterrupted tiny run trained by a subprocess while this process reads it in a tight loop."""
    runs_dir = tmp_path_factory.mktemp("watched")
    proc = start_trainer(TINY + ["--runs-dir", str(runs_dir), "--name", "ref"])
    seen: dict = {}
    problems: list = []

    def reader() -> None:
        while proc.poll() is None:
            run = the_run(runs_dir)
            if run is None:
                continue
            try:
                poll_once(run, seen)
            except Exception as e:  # noqa: BLE001 - every failure is the finding
                problems.append(f"{type(e).__name__}: {e}")

    t = threading.Thread(target=reader)
    t.start()
    assert proc.wait(timeout=120) == 0
    t.join()
    run = the_run(runs_dir)
    poll_once(run, seen)
    return run, seen, problems


# ----------------------------------------------------------------------------- a reader never sees half a file

def test_a_reader_polling_a_training_run_never_sees_a_partial_file(watched_run):
    run, seen, problems = watched_run
    assert problems == []
    assert seen["reads"] > 10 and seen["metrics_epochs"] == 3
    assert runs.load_status(run)["state"] == "completed"
    assert "running" in seen["states"]


# ----------------------------------------------------------------------------- SIGKILL at random moments

def check_finished_epochs(run: Path) -> list[int]:
    """Every finished epoch (metrics row) is readable; epochs are 1..k. Returns them."""
    runs.load_status(run)                                   # a killed run reads as interrupted, not an error
    if not runs.metrics_path(run).exists():
        return []
    epochs = list(runs.load_metrics(run)["epoch"])
    assert epochs == list(range(1, len(epochs) + 1))
    for e in epochs:
        runs.load_model(run, e)
        runs.load_predictions(run, e)
    steps = runs.load_steps(run)
    assert set(steps["epoch"]) <= set(range(1, len(epochs) + 2))
    return epochs


def same_as_reference(run: Path, ref: Path) -> None:
    """A resumed run ends with the uninterrupted run's weights (bit for bit) and steps (none logged twice)."""
    assert check_finished_epochs(run) == [1, 2, 3]
    for e in (1, 2, 3):
        got, want = runs.load_state_dict(run, e), runs.load_state_dict(ref, e)
        assert got.keys() == want.keys()
        for k in want:
            assert torch.equal(got[k], want[k]), (run.name, e, k)
    got_steps, want_steps = runs.load_steps(run), runs.load_steps(ref)
    assert got_steps[["step", "epoch"]].equals(want_steps[["step", "epoch"]])   # no step logged twice


def test_sigkill_at_random_moments_loses_no_finished_epoch_and_resumes_exactly(tmp_path, watched_run):
    """Ten SIGKILLs at seeded random moments, each followed by --resume. On a fast machine a run may
    complete between kills: it is checked against the uninterrupted run and the next kill goes to a new run,
    so there are always exactly ten kills, whatever the machine's speed."""
    ref, _, _ = watched_run
    rng = random.Random(20261130)
    kills, landed, finished, n_run = 0, [], [], 0
    runs_dir = tmp_path / f"runs{n_run}"
    while kills < 10:
        run = the_run(runs_dir)
        proc = start_trainer(TINY + ["--runs-dir", str(runs_dir)] + (["--resume", str(run)] if run else ["--name", "k"]))
        if rng.random() < 0.2:                  # anywhere, startup included (maybe before config.json)
            time.sleep(rng.uniform(0.0, 4.0))
        else:                                   # once this process trains: mid-epoch or mid-save
            deadline = time.time() + 60
            while proc.poll() is None and time.time() < deadline:
                r = the_run(runs_dir)
                try:
                    if r and runs.load_status(r).get("pid") == proc.pid:
                        break
                except runs.RunError:
                    pass
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is not None:              # it finished before the kill: a complete run
            assert proc.returncode == 0
            same_as_reference(the_run(runs_dir), ref)
            finished.append(runs_dir)
            n_run += 1
            runs_dir = tmp_path / f"runs{n_run}"
            continue
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        run = the_run(runs_dir)
        landed.append(check_finished_epochs(run) if run else None)
    run = the_run(runs_dir)
    if run is None or runs.load_status(run)["state"] != "completed":
        args = ["--resume", str(run)] if run else ["--name", "k"]
        proc = start_trainer(TINY + ["--runs-dir", str(runs_dir)] + args)
        assert proc.wait(timeout=120) == 0
    same_as_reference(the_run(runs_dir), ref)
    assert kills == 10, landed



@pytest.mark.parametrize("victim", ["metrics.csv", "epoch_002.safetensors"])
def test_stopped_just_before_an_epoch_commits_resumes_exactly(tmp_path, watched_run, monkeypatch, victim):
    """The worst moments of a kill, made exact: epoch 2's steps (and its checkpoint, predictions and
    optimizer state) are on disk but its metrics row, the commit point, is not."""
    ref, _, _ = watched_run
    real_csv, real_st = runs.atomic_write_csv, runs.atomic_save_safetensors

    def stop_at(path, *args, **kwargs):
        if path.name == victim and (victim != "metrics.csv" or len(runs.checkpoint_epochs(_run_of(path))) >= 2):
            raise KeyboardInterrupt                    # the files stay as a SIGKILL here would leave them
        return (real_csv if path.suffix == ".csv" else real_st)(path, *args, **kwargs)

    monkeypatch.setattr(runs, "atomic_write_csv", stop_at)
    monkeypatch.setattr(runs, "atomic_save_safetensors", stop_at)
    assert train.main(TINY + ["--runs-dir", str(tmp_path), "--name", "cut"]) == 130
    monkeypatch.undo()
    (run,) = tmp_path.iterdir()
    assert check_finished_epochs(run) == [1]
    assert train.main(TINY + ["--runs-dir", str(tmp_path), "--resume", str(run)]) == 0
    assert check_finished_epochs(run) == [1, 2, 3]
    assert runs.load_steps(run)[["step", "epoch"]].equals(runs.load_steps(ref)[["step", "epoch"]])
    for e in (1, 2, 3):
        got, want = runs.load_state_dict(run, e), runs.load_state_dict(ref, e)
        assert all(torch.equal(got[k], want[k]) for k in want), e


def _run_of(path: Path) -> Path:
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


# ----------------------------------------------------------------------------- permission denied while saving

def test_permission_denied_while_saving_fails_the_run_and_says_why(tmp_path, mnist_root, monkeypatch, capsys):
    # As root (CI) chmod does not stop writes, so there the save raises PermissionError itself.
    real_write, real_npz = runs.RunWriter.write_epoch, runs.atomic_save_npz

    def denied(path, **arrays):
        raise PermissionError(13, "Permission denied", str(path))

    def write_epoch(self, epoch, *args, **kwargs):
        if epoch == 2:
            if os.geteuid() == 0:
                monkeypatch.setattr(runs, "atomic_save_npz", denied)
            else:
                runs.predictions_dir(self.dir).chmod(0o555)
        return real_write(self, epoch, *args, **kwargs)
    monkeypatch.setattr(runs.RunWriter, "write_epoch", write_epoch)
    try:
        code = train.main(TINY + ["--runs-dir", str(tmp_path), "--name", "denied"])
    finally:
        monkeypatch.setattr(runs, "atomic_save_npz", real_npz)
        for p in tmp_path.glob("*/predictions"):
            p.chmod(0o755)
    assert code == 1
    (run,) = tmp_path.iterdir()
    status = runs.load_status(run)
    assert status["state"] == "failed"
    assert "could not save epoch 2" in status["error"] and "Permission denied" in status["error"]
    assert "Permission denied" in capsys.readouterr().err
    assert list(runs.load_metrics(run)["epoch"]) == [1]
    runs.load_model(run, 1)
    runs.load_predictions(run, 1)


# ----------------------------------------------------------------------------- a diverged run on the pages

@pytest.fixture(scope="module")
def diverged_runs(tmp_path_factory, mnist_root) -> Path:
    """Two real diverged runs: one at epoch 1 (nothing finished), one at epoch 2 (epoch 1 finished)."""
    runs_dir = tmp_path_factory.mktemp("diverged")
    small = ["--subset", "256", "--eval-subset", "100", "--device", "cpu", "--runs-dir", str(runs_dir)]
    assert train.main(small + ["--epochs", "2", "--lr", "10000", "--name", "boom"]) == 1
    assert train.main(small + ["--epochs", "1", "--name", "later"]) == 0
    (later,) = runs_dir.glob("*-later")
    writer = runs.RunWriter(later, {}, resume=True)        # same run, now with a learning rate that explodes
    writer.config.train.lr = 10000.0
    writer.save_config()
    assert train.main(["--runs-dir", str(runs_dir), "--resume", str(later), "--epochs", "2", "--device", "cpu"]) == 1
    return runs_dir


def test_a_diverged_run_says_so_in_its_status(diverged_runs):
    for name, epoch in (("boom", 1), ("later", 2)):
        (run,) = diverged_runs.glob(f"*-{name}")
        status = runs.load_status(run)
        assert status["state"] == "failed" and status["diverged_epoch"] == epoch
        assert status["error"].startswith(f"diverged at epoch {epoch}")
        assert status["last_epoch"] == epoch - 1


@pytest.mark.parametrize("name,epoch", [("boom", 1), ("later", 2)])
def test_every_page_shows_a_diverged_run_as_diverged(diverged_runs, monkeypatch, name, epoch):
    (run,) = diverged_runs.glob(f"*-{name}")
    badge = f"diverged at epoch {epoch}"
    for page in PAGES:
        at = open_app(monkeypatch, diverged_runs, page, run_id=run.name)   # asserts no exception
        assert any(badge in c.value for c in at.sidebar.caption), page
        if page == "runs":
            table = [df for df in (d.value for d in at.dataframe) if "status" in getattr(df, "columns", [])]
            assert table and any(badge in s for s in table[0]["status"]), page


# ----------------------------------------------------------------------------- two processes, one cache key

def _compute_and_write(run_dir: str, rounds: int, seed: int, out) -> None:
    """In a child process: compute the same key `rounds` times (clearing it between), reading it back strictly."""
    value = {"a": np.arange(20000, dtype=np.float64) * 1.5, "b": np.eye(40, dtype=np.float32)}
    results, bad = [], 0
    for i in range(rounds):
        key = f"shared-{i}"
        got = acache.cached(run_dir, key, lambda: (time.sleep(0.01), value)[1])   # both often miss at once
        path = acache.cache_path(run_dir, key)
        with np.load(path, allow_pickle=False) as z:            # strict: a partial file would raise here
            if not (np.array_equal(z["a"], value["a"]) and np.array_equal(z["b"], value["b"])):
                bad += 1
        results.append(float(got["a"].sum()) + float(got["b"].sum()))
    out.put((seed, results, bad))


def _strict_reader(run_dir: str, rounds: int, stop, out) -> None:
    """In a child process: read whatever cache files exist, strictly, until told to stop."""
    partial, reads = 0, 0
    folder = acache.cache_dir(run_dir)
    while not stop.is_set():
        for path in folder.glob("shared-*.npz") if folder.is_dir() else []:
            try:
                with np.load(path, allow_pickle=False) as z:
                    _ = z["a"].sum() + z["b"].sum()
                reads += 1
            except FileNotFoundError:
                pass
            except Exception:  # noqa: BLE001 - a partial or corrupt file
                partial += 1
    out.put((partial, reads))


def test_two_processes_writing_one_cache_key_leave_whole_files_and_agree(tmp_path):
    run_dir = str(tmp_path / "run")
    rounds = 40
    # fork, not spawn: after an AppTest run, __main__ may be a dashboard script that spawn would re-run
    ctx = mp.get_context("fork")
    out, stop = ctx.Queue(), ctx.Event()
    reader = ctx.Process(target=_strict_reader, args=(run_dir, rounds, stop, out))
    writers = [ctx.Process(target=_compute_and_write, args=(run_dir, rounds, s, out)) for s in (1, 2)]
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=120)
        assert w.exitcode == 0
    stop.set()
    reader.join(timeout=60)
    got = [out.get(timeout=10) for _ in range(3)]
    (partial, reads), = [g for g in got if len(g) == 2]
    written = sorted(g for g in got if len(g) == 3)
    assert partial == 0 and reads > 0
    assert written[0][2] == written[1][2] == 0
    assert written[0][1] == written[1][1]                    # both processes got the same result
    leftovers = [p.name for p in acache.cache_dir(run_dir).iterdir() if ".tmp-" in p.name]
    assert leftovers == []
