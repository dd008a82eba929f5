"""torchrun data-parallel training (gloo, 2 CPU processes) against the single-process trainer as reference.

Two processes with per-rank batch 32 take the SGD step on the averaged gradient of the same 64
examples that one process with batch 64 sees, so their runs agree up to float summation order.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from model import runs, train

REPO = Path(__file__).resolve().parent.parent
TORCHRUN = Path(sys.executable).parent / "torchrun"
ARGS = ["--subset", "512", "--eval-subset", "100", "--seed", "3", "--lr", "0.05", "--momentum", "0.9",
        "--log-every", "2", "--device", "cpu"]
RTOL = 1e-4   # losses: observed ~1e-6 relative (float summation order); a wrong shard or step is off by >1e-2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(tmp: Path, *argv: str) -> None:
    """torchrun with 2 processes; its agent's temporary files (torchelastic_*) go to `tmp`, not the system's /tmp."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp)}
    out = subprocess.run([str(TORCHRUN), "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                          "--master-port", str(free_port()), "-m", "model.train", *argv],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]


def test_two_processes_with_resume_match_one_process(tmp_path, mnist_root):
    assert train.main(ARGS + ["--epochs", "2", "--runs-dir", str(tmp_path / "one"), "--name", "one"]) == 0
    (one,) = (tmp_path / "one").iterdir()
    torchrun(tmp_path, *ARGS, "--epochs", "1", "--runs-dir", str(tmp_path / "ddp"), "--name", "ddp")
    (ddp,) = (tmp_path / "ddp").iterdir()
    torchrun(tmp_path, "--resume", str(ddp), "--epochs", "2",   # all ranks load epoch 1; rank 0 picks epoch 2
             "--runs-dir", str(tmp_path / "ddp"))

    assert runs.load_status(ddp)["state"] == "completed"
    assert json.loads(runs.config_path(ddp).read_text())["world_size"] == 2
    assert runs.load_config(ddp).train.batch_size == 64   # the global batch
    a, b = runs.load_metrics(one), runs.load_metrics(ddp)
    assert list(b["epoch"]) == [1, 2]
    for col in ("train_loss", "val_loss", "test_loss"):
        np.testing.assert_allclose(b[col], a[col], rtol=RTOL)
    np.testing.assert_allclose(b["train_acc"], a["train_acc"], atol=1 / 512)   # at most one borderline example
    np.testing.assert_allclose(runs.load_steps(ddp)["loss"], runs.load_steps(one)["loss"], rtol=RTOL)
    wa, wb = load_file(str(runs.checkpoint_path(one, 2))), load_file(str(runs.checkpoint_path(ddp, 2)))
    # weights: observed 1e-8 after epoch 1, 2e-5 after epoch 2 (lr 0.05 with momentum amplifies rounding);
    # one step more or less moves them by lr * grad, about 1e-3
    assert all(torch.allclose(wa[k], wb[k], rtol=0, atol=1e-4) for k in wa)
    runs.load_model(ddp, 2)

    for epoch in (1, 2):
        pa, pb = runs.load_predictions(one, epoch), runs.load_predictions(ddp, epoch)
        # every training example was trained on by exactly one rank, half by each
        assert np.bincount(pb["train_rank"], minlength=2).tolist() == [256, 256]
        np.testing.assert_allclose(pb["train_true_prob"].astype(np.float32), pa["train_true_prob"].astype(np.float32),
                                   atol=2e-3)   # float16 storage
        assert np.array_equal(pb["train_index"], pa["train_index"])


def test_batch_size_must_divide_over_the_processes(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert train.main(["--batch-size", "64", "--runs-dir", str(tmp_path)]) == 1
    assert "divide evenly over 3 processes" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
