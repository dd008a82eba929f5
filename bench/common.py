"""What the benchmarks share: which model to measure."""
from __future__ import annotations

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
