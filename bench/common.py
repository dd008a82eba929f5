"""What the benchmarks share: which model to measure."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from model import runs
from model.net import Net


def pick_model(run: str | None) -> tuple[torch.nn.Module, str]:
    """The model of --run, else of the newest run with a checkpoint, else a random seed Net."""
    if run:
        return runs.load_model(run), run
    for info in runs.list_runs():
        if runs.checkpoint_epochs(info.path):
            return runs.load_model(info.path), str(info.path)
    torch.manual_seed(0)
    return Net().eval(), "random init (no run with a checkpoint)"


def browser_bench_parser(doc: str, run_help: str, wait_for: str) -> argparse.ArgumentParser:
    """The argument parser every real-browser benchmark starts from: --run and --timeout.

    Args:
        doc: the benchmark's module docstring (its first line describes it).
        run_help: what the default run is, for --run's help.
        wait_for: what one timeout covers, e.g. "one page".
    """
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--run", type=Path, default=None, help=f"run folder (default: {run_help})")
    ap.add_argument("--timeout", type=float, default=300.0, help=f"seconds to wait for {wait_for} (default: 300)")
    return ap


def chosen_run(given: Path | None, default: Callable[[Path], Path]) -> Path | None:
    """The run to measure (--run, else default(runs/)), or None after saying why no browser can run."""
    from tests.browser_util import browser_missing
    why = browser_missing()
    if why:
        print(f"cannot run: {why}", file=sys.stderr)
        return None
    return (given or default(runs.REPO_ROOT / "runs")).resolve()
