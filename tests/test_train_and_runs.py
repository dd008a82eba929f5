"""model.train and model.runs: the trainer writes complete, atomic, resumable runs that read back."""
from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from data.mnist import load_mnist
from model import import_checkpoint, runs, train
from model.net import Net, to_input

REPO = Path(__file__).resolve().parent.parent
TINY = ["--subset", "256", "--eval-subset", "200", "--seed", "3", "--log-every", "2"]


def test_fixture_run_is_complete(fixture_run):
    cfg = runs.load_config(fixture_run)
    assert cfg.model.fc1_units == 4608 and cfg.train.lr == 0.05 and cfg.train.batch_size == 64
    assert cfg.data.split == "classic" and cfg.versions["torch"] == torch.__version__
    raw = json.loads((fixture_run / "config.json").read_text())       # the file itself, as documented
    assert raw["data"]["val_source"] == "train[50000:]" and raw["train"]["epochs"] == 3
    m = runs.load_metrics(fixture_run)
    assert list(m["epoch"]) == [1, 2, 3]
    assert set(runs.METRIC_COLUMNS) <= set(m.columns)
    assert runs.checkpoint_epochs(fixture_run) == [1, 2, 3] == runs.prediction_epochs(fixture_run)
    assert runs.load_status(fixture_run)["state"] == "completed"
    steps = runs.load_steps(fixture_run)
    assert len(steps) > 3 and steps["step"].is_monotonic_increasing
    p = runs.load_predictions(fixture_run, 3)
    assert p["val_logits"].shape == (500, 10) and p["test_logits"].shape == (500, 10)
    assert p["train_true_prob"].shape == (1000,) and p["train_correct"].dtype == bool
    assert p["val_index"][0] == 50000  # classic split: validation is official train[50000:]


def test_saved_logits_and_metrics_match_a_fresh_evaluation(fixture_run, mnist_root):
    """Reference: re-run the epoch-2 checkpoint over the val images and compare with what was saved."""
    data = load_mnist(mnist_root)
    model = runs.load_model(fixture_run, 2)
    with torch.no_grad():
        logits = model(to_input(data.val_x[:500]))
    saved = runs.load_predictions(fixture_run, 2)
    assert np.allclose(saved["val_logits"].astype(np.float32), logits.numpy(), atol=2e-2)
    assert np.array_equal(saved["val_labels"], data.val_y[:500].numpy())
    val_acc = (logits.argmax(1) == data.val_y[:500]).float().mean().item()
    assert runs.load_metrics(fixture_run).set_index("epoch").loc[2, "val_acc"] == pytest.approx(val_acc)


def test_training_is_deterministic_for_a_seed(tmp_path, mnist_root):
    for name in ("a", "b"):
        assert train.main(TINY + ["--epochs", "1", "--runs-dir", str(tmp_path), "--name", name]) == 0
    a, b = sorted(tmp_path.iterdir())
    wa, wb = load_file(str(runs.checkpoint_path(a, 1))), load_file(str(runs.checkpoint_path(b, 1)))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    pd.testing.assert_frame_equal(runs.load_metrics(a).drop(columns="epoch_seconds"),
                                  runs.load_metrics(b).drop(columns="epoch_seconds"))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_continues_exactly(tmp_path, mnist_root, optimizer):
    """Two epochs in one go equal one epoch, then --resume for the second (optimizer state included)."""
    opts = TINY + ["--optimizer", optimizer, "--lr", "0.001" if optimizer == "adam" else "0.05", "--runs-dir",
                   str(tmp_path)]
    assert train.main(opts + ["--epochs", "2", "--name", "whole"]) == 0
    assert train.main(opts + ["--epochs", "1", "--name", "split"]) == 0
    whole, split = sorted(tmp_path.iterdir(), key=lambda p: p.name.endswith("split"))
    assert train.main(["--resume", str(split), "--epochs", "2", "--runs-dir", str(tmp_path)]) == 0
    a, b = load_file(str(runs.checkpoint_path(whole, 2))), load_file(str(runs.checkpoint_path(split, 2)))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert list(runs.load_metrics(split)["epoch"]) == [1, 2]


def test_sigterm_leaves_an_interrupted_run_with_finished_epochs(tmp_path, mnist_root):
    cmd = [sys.executable, "-m", "model.train", "--subset", "640", "--eval-subset", "100", "--epochs", "50",
           "--runs-dir", str(tmp_path), "--name", "stopme"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            found = list(tmp_path.glob("*/predictions/epoch_002.npz"))
            if found:
                break
            time.sleep(0.2)
        assert found, "training never finished epoch 2"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
    finally:
        proc.kill()
    run_dir = found[0].parent.parent
    status = runs.load_status(run_dir)
    assert status["state"] == "interrupted"
    done = list(runs.load_metrics(run_dir)["epoch"])
    assert done == list(range(1, len(done) + 1)) and status["last_epoch"] == done[-1]
    for e in done:  # every finished epoch is intact
        runs.load_model(run_dir, e)
        runs.load_predictions(run_dir, e)
    assert not list(run_dir.rglob(".*.tmp-*"))


def test_killed_process_is_reported_interrupted(tmp_path):
    w = runs.RunWriter(tmp_path / "r", {"name": "r"})
    w.set_status("running")
    status = json.loads((tmp_path / "r" / "status.json").read_text())
    status["pid"] = 2 ** 22 + 12345  # no such process
    (tmp_path / "r" / "status.json").write_text(json.dumps(status))
    assert runs.load_status(tmp_path / "r")["state"] == "interrupted"


def test_a_run_killed_while_it_is_created_reads_as_interrupted(tmp_path, monkeypatch):
    """A trainer killed between a new run's first two files: the folder is either no run at all (no config.json,
    not listed) or a run whose status reads (CI once killed one right after config.json, before status.json)."""
    real = runs.atomic_write_json

    def killed_at_config(path, obj):
        if path.name == runs.CONFIG_FILE:
            raise KeyboardInterrupt                      # the folder stays as a SIGKILL here would leave it
        real(path, obj)
    monkeypatch.setattr(runs, "atomic_write_json", killed_at_config)
    with pytest.raises(KeyboardInterrupt):
        runs.RunWriter(tmp_path / "r", {"name": "r"})
    monkeypatch.undo()
    assert runs.list_runs(tmp_path) == []                # no config.json: not a run yet
    runs.atomic_write_json(tmp_path / "r" / runs.CONFIG_FILE, {"name": "r"})   # had the kill come just after it
    status = json.loads((tmp_path / "r" / runs.STATUS_FILE).read_text())
    status["pid"] = 2 ** 22 + 12345                      # the killed process
    (tmp_path / "r" / runs.STATUS_FILE).write_text(json.dumps(status))
    assert runs.load_status(tmp_path / "r")["state"] == "interrupted"
    assert [r.state for r in runs.list_runs(tmp_path)] == ["interrupted"]


@pytest.mark.parametrize("damage, match", [
    (lambda r: runs.checkpoint_path(r, 3).write_bytes(b"\x00garbage"), "epoch_003.safetensors"),
    (lambda r: runs.predictions_path(r, 3).write_bytes(runs.predictions_path(r, 3).read_bytes()[:100]),
     "epoch_003.npz"),
    (lambda r: (r / "config.json").write_text("{not json"), "config.json"),
    (lambda r: (r / "metrics.csv").write_text("a,b\n1,2\n"), "metrics.csv"),
    (lambda r: os.remove(runs.checkpoint_path(r, 3)), "epoch_003.safetensors: missing"),
    (lambda r: (r / "config.json").write_text(json.dumps({**runs.load_config(r).to_dict(), "model": {"fc1_units": "abc"}})),
     "config.json.*cannot build"),
])
def test_corrupt_or_missing_files_raise_runerror_naming_the_file(copy_run, damage, match):
    run = copy_run()
    damage(run)
    with pytest.raises(runs.RunError, match=match):
        runs.load_model(run, 3)
        runs.load_predictions(run, 3)
        runs.load_metrics(run)


def test_list_runs_newest_first_and_skips_junk(runs_dir, tmp_path):
    (runs_dir / "not-a-run").mkdir(exist_ok=True)
    listed = runs.list_runs(runs_dir)
    assert [r.name for r in listed] == ["fixture"] and listed[0].state == "completed"
    assert runs.list_runs(tmp_path / "missing") == []


def test_writer_refuses_to_overwrite_a_run(fixture_run):
    with pytest.raises(runs.RunError, match="exists already"):
        runs.RunWriter(fixture_run, {"name": "x"})


def test_dry_run_keeps_nothing(tmp_path, mnist_root):
    assert train.main(["--dry-run", "--runs-dir", str(tmp_path)]) == 0
    assert list(tmp_path.iterdir()) == []


def test_help_shows_every_default():
    out = subprocess.run([sys.executable, "-m", "model.train", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=60).stdout
    text = " ".join(out.split())                                 # argparse wraps lines
    expected = {"--epochs": "10", "--lr": "0.01", "--batch-size": "64", "--optimizer": "sgd", "--momentum": "0.0",
                "--seed": "1", "--subset": "0", "--eval-subset": "0", "--log-every": "50", "--variant": "seed",
                "--split": "classic", "--device": "auto", "--preset": "none", "--resume": "none"}
    for flag, default in expected.items():                     # each flag's own help ends with its default
        block = text.split(f" {flag} ", 1)[1].split(" --", 1)[0]
        assert block.rstrip().endswith(f"(default: {default})"), (flag, block)
    assert "(default: None)" not in text and text.count("(default:") == text.count("(default: ") > 0
    assert not re.search(r"\(default: [^)]*\) \(default:", text)   # never two defaults in a row


def test_import_seed_checkpoint(tmp_path, mnist_root):
    torch.manual_seed(0)
    net = Net().eval()
    torch.save(net.state_dict(), tmp_path / "seed.pth")
    assert import_checkpoint.main([str(tmp_path / "seed.pth"), "--name", "nb", "--runs-dir", str(tmp_path / "runs")]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert runs.load_status(run)["state"] == "imported"
    loaded = runs.load_model(run, 1)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in net.state_dict().items())
    assert runs.load_predictions(run, 1)["test_logits"].shape == (10000, 10)


def test_import_refuses_pickled_objects_and_wrong_shapes(tmp_path):
    torch.save(Net(), tmp_path / "whole_model.pth")  # a pickled module, not a state_dict
    with pytest.raises(import_checkpoint.CheckpointImportError, match="refused"):
        import_checkpoint.read_state_dict(tmp_path / "whole_model.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    assert import_checkpoint.main([str(tmp_path / "junk.pth"), "--runs-dir", str(tmp_path / "r")]) == 1
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "partial.pth")
    with pytest.raises(import_checkpoint.CheckpointImportError, match="missing parameter"):
        import_checkpoint.infer_config(import_checkpoint.read_state_dict(tmp_path / "partial.pth"))
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


# ----------------------------------------------------------------------------- faults: nothing lost

def test_a_diverging_run_stops_with_a_clear_message(tmp_path, mnist_root, capsys):
    """lr 1e4 blows the loss up to NaN/inf within the first epoch; lr 0.05 (the fixture's) does not."""
    assert train.main(TINY + ["--epochs", "2", "--lr", "10000", "--runs-dir", str(tmp_path), "--name", "boom"]) == 1
    (run,) = tmp_path.iterdir()
    status = runs.load_status(run)
    assert status["state"] == "failed" and status["diverged_epoch"] == 1
    assert "diverged at epoch 1" in status["error"] and "lower --lr" in status["error"]
    assert "diverged at epoch 1" in capsys.readouterr().err
    assert runs.checkpoint_epochs(run) == [] and not runs.metrics_path(run).exists()   # no garbage epoch saved


def test_a_failed_save_keeps_earlier_epochs_and_says_why(tmp_path, mnist_root, monkeypatch, capsys):
    real = runs.atomic_save_npz

    def disk_full_at_epoch_2(path, **arrays):
        if path.name == "epoch_002.npz":
            raise OSError(28, "No space left on device")
        real(path, **arrays)
    monkeypatch.setattr(runs, "atomic_save_npz", disk_full_at_epoch_2)
    assert train.main(TINY + ["--epochs", "3", "--runs-dir", str(tmp_path), "--name", "full"]) == 1
    (run,) = tmp_path.iterdir()
    status = runs.load_status(run)
    assert status["state"] == "failed" and "No space left on device" in status["error"]
    assert "could not save epoch 2" in capsys.readouterr().err
    assert list(runs.load_metrics(run)["epoch"]) == [1]                   # the commit point never moved past 1
    runs.load_model(run, 1)
    runs.load_predictions(run, 1)


@pytest.mark.parametrize("name", ["../escape", "/abs/path", "a/b", "..", "", "x" * 81])
def test_run_names_that_would_leave_the_runs_folder_are_refused(tmp_path, name, capsys):
    runs_dir = tmp_path / "runs"
    assert train.main(["--dry-run", "--runs-dir", str(runs_dir), "--name", name]) in (1,) or name == ""
    if name:
        assert "run name may hold only" in capsys.readouterr().err
    assert not (tmp_path / "escape").exists() and not any(p.is_dir() for p in runs_dir.rglob("*"))
    with pytest.raises(runs.RunError):
        runs.new_run_id(runs_dir, name)


def test_resume_and_listing_stay_inside_the_runs_folder(tmp_path, copy_run, capsys):
    outside = copy_run("elsewhere")                                   # tmp_path/runs/elsewhere
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "link").symlink_to(outside, target_is_directory=True)     # a symlink out of the runs folder
    config_before = (outside / "config.json").read_bytes()
    for ref in ("../runs/elsewhere", str(outside), "link"):
        assert train.main(["--resume", ref, "--runs-dir", str(mine), "--epochs", "4"]) == 1, ref
        assert "not a run of the runs folder" in capsys.readouterr().err, ref
    assert (outside / "config.json").read_bytes() == config_before      # nothing touched out there
    assert list(runs.load_metrics(outside)["epoch"]) == [1, 2, 3]
    assert runs.list_runs(mine) == []                                  # the link is not listed
    assert runs.resolve_run(outside.parent, "elsewhere") == outside.resolve()          # a run id
    assert runs.resolve_run(outside.parent, str(outside)) == outside.resolve()         # a path inside


@pytest.mark.parametrize("midway", [False, True])
def test_optimizer_state_read_while_the_trainer_commits_it(tmp_path, monkeypatch, midway):
    """The trainer renames optimizer.next over optimizer.safetensors when an epoch commits; a reader that
    looked just before the rename finds the state under the other name (seen by the polling fault test).
    The rename may land before the file is opened (FileNotFoundError) or midway through opening it, after
    safetensors opened it and before torch maps it by name again: torch then raises a RuntimeError (CI saw it)."""
    run = tmp_path / "run"
    runs.atomic_save_safetensors(runs.optimizer_path(run), {"m": torch.zeros(2)}, {"epoch": "1"})
    nxt = runs.optimizer_path(run).with_name("optimizer.next.safetensors")
    runs.atomic_save_safetensors(nxt, {"m": torch.ones(2)}, {"epoch": "2"})
    real, renamed = runs.safe_open, []

    def rename_first(path, *args, **kwargs):             # the commit lands between the look and the read
        if path == str(nxt) and not renamed:
            os.replace(nxt, runs.optimizer_path(run))
            renamed.append(True)
            if midway:                                  # torch's own words when it maps a vanished file
                raise RuntimeError(f"unable to open file <{path}> in read-only mode: No such file or directory (2)")
        return real(path, *args, **kwargs)
    monkeypatch.setattr(runs, "safe_open", rename_first)
    state = runs.load_optimizer_state(run, epoch=2)
    assert renamed and torch.equal(state["m"], torch.ones(2))


def test_corrupt_optimizer_state_is_still_called_corrupt(tmp_path):
    """Only a file that is gone counts as moved by the trainer; a garbage file that is still there is an error."""
    run = tmp_path / "run"
    runs.optimizer_path(run).parent.mkdir(parents=True)
    runs.optimizer_path(run).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(runs.RunError, match="corrupt optimizer state"):
        runs.load_optimizer_state(run)
