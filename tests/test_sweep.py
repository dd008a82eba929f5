"""model.sweep: a grid becomes ordinary runs, a re-run continues instead of retraining, --parallel holds."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from model import runs, sweep

GRID = ["--lr", "0.1", "0.01", "--variant", "seed", "dropout", "--epochs", "1", "--subset", "256",
        "--eval-subset", "100", "--parallel", "2"]


def files_and_mtimes(runs_dir: Path) -> dict[str, int]:
    return {str(p.relative_to(runs_dir)): p.stat().st_mtime_ns for p in runs_dir.rglob("*") if p.is_file()}


def test_grid_makes_runs_and_a_rerun_continues_them(tmp_path, mnist_root, capsys):
    args = GRID + ["--runs-dir", str(tmp_path)]
    assert sweep.main(args) == 0
    found = {r.name: r for r in runs.list_runs(tmp_path)}
    assert sorted(found) == sorted(["sweep-lr0.1-seed", "sweep-lr0.1-dropout", "sweep-lr0.01-seed",
                                    "sweep-lr0.01-dropout"])
    for name, r in found.items():
        cfg = runs.load_config(r.path)
        assert cfg.train.lr == (0.1 if "lr0.1-" in name else 0.01)
        assert cfg.variant == name.rsplit("-", 1)[1] and (cfg.model.dropout > 0) == name.endswith("dropout")
        assert cfg.train.epochs == 1 and cfg.train.subset == 256
        assert runs.load_status(r.path)["state"] == "completed" and list(runs.load_metrics(r.path)["epoch"]) == [1]
    table = capsys.readouterr().out
    assert "best val acc" in table and all(n in table for n in found)

    before = files_and_mtimes(tmp_path)
    assert sweep.main(args) == 0                                   # the same command again: nothing to do
    assert files_and_mtimes(tmp_path) == before
    assert capsys.readouterr().out.count("completed, skipped") == 4

    stopped = found["sweep-lr0.01-seed"].path                      # as if killed mid-way
    runs.RunWriter(stopped, {}, resume=True).set_status("interrupted")
    assert sweep.main(args + ["--dry-run"]) == 0
    commands = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    assert len(commands) == 1 and f"--resume {stopped}" in commands[0]
    assert sweep.main(args) == 0
    assert runs.load_status(stopped)["state"] == "completed"
    after = files_and_mtimes(tmp_path)
    assert {k for k in after if after[k] != before.get(k)} <= {k for k in after if k.startswith(stopped.name)}
    assert len(runs.list_runs(tmp_path)) == 4


# A stand-in trainer: notes when it starts and stops, sleeps, makes no run.
FAKE = """
import sys, time
log = sys.argv[sys.argv.index('--runs-dir') + 1] + '/times.log'
start = time.time(); time.sleep(1.5)   # long enough to overlap even on a loaded machine
open(log, 'a').write(f'{start} {time.time()}\\n')
"""


@pytest.mark.parametrize("parallel", [1, 2])
def test_parallel_limits_trainers_running_at_once(tmp_path, parallel):
    args = ["--seed", "1", "2", "3", "4", "5", "--parallel", str(parallel), "--runs-dir", str(tmp_path)]
    assert sweep.main(args, trainer=[sys.executable, "-c", FAKE]) == 0
    spans = [tuple(map(float, line.split())) for line in (tmp_path / "times.log").read_text().splitlines()]
    assert len(spans) == 5
    at_once = max(sum(s <= t < e for s, e in spans) for t, _ in spans)   # trainers running at each start
    assert at_once == parallel


def test_bad_grids_are_refused(tmp_path, capsys):
    assert sweep.main(["--lr", "--epochs", "1", "--runs-dir", str(tmp_path)]) == 2
    assert sweep.main(["--name", "x", "--resume", "r", "--runs-dir", str(tmp_path)]) == 2
    assert "set by the sweep" in capsys.readouterr().err
    assert sweep.main(["--lr", "0.1", "--no-such-flag", "3", "--runs-dir", str(tmp_path)]) == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err   # checked before anything starts
    assert not any(tmp_path.iterdir())
