"""Turn a bare state_dict from the seed notebook into a one-epoch run the dashboard can show.

    python -m model.import_checkpoint PATH.pth --name NAME

The file is read with `torch.load(..., weights_only=True)`: a file that needs more than tensors
(a pickled model object, custom classes) is refused. The weights are evaluated on the validation
and test sets and saved as epoch 1 of a run whose status is "imported".
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from data.mnist import DataError, default_root, load_mnist, source_info
from model import runs
from model.config import DataConfig, TrainConfig
from model.net import VARIANTS, Net, NetConfig
from model.train import evaluate, select_data


class CheckpointImportError(Exception):
    """The checkpoint cannot be imported; the message says why."""


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a bare state_dict safely (weights_only); refuse anything that is not name -> tensor."""
    if not path.is_file():
        raise CheckpointImportError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for code-carrying pickles, RuntimeError for non-torch files
        raise CheckpointImportError(f"{path}: refused: not a plain state_dict of tensors "
                           f"(torch.load with weights_only=True said: {str(e).splitlines()[0][:200]})") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointImportError(f"{path}: expected a dict of parameter name -> tensor (model.state_dict())")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def infer_config(state: dict[str, torch.Tensor]) -> NetConfig:
    """Recover the architecture from the tensor shapes (seed, small-fc, batchnorm)."""
    try:
        return NetConfig(conv1_channels=state["conv1.weight"].shape[0], conv2_channels=state["conv2.weight"].shape[0],
                         fc1_units=state["fc1.weight"].shape[0], batch_norm="bn1.weight" in state)
    except KeyError as e:
        raise CheckpointImportError(f"missing parameter {e}; expected the seed's names conv1.weight ... fc2.bias") from e


def import_checkpoint(path: Path, name: str, runs_dir: Path, data_root: Path, split: str = "classic") -> Path:
    """Import a state_dict as a one-epoch run; returns the run folder."""
    state = read_state_dict(path)
    config = infer_config(state)
    net = Net(config)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointImportError(f"{path}: weights do not fit the seed CNN: {str(e)[:300]}") from e
    data = load_mnist(data_root, split)
    sel = select_data(data, 0, 0)
    (vx, vy, vi), (sx, sy, si) = sel["val"], sel["test"]
    t0 = time.time()
    va, te = evaluate(net, vx, vy, torch.device("cpu")), evaluate(net, sx, sy, torch.device("cpu"))
    run_id = runs.new_run_id(runs_dir, name)
    variant = next((k for k, v in VARIANTS.items() if v == config), "custom")
    writer = runs.RunWriter(runs_dir / run_id, runs.RunConfig(
        run_id=run_id, name=name, variant=variant, model=config,
        train=TrainConfig(epochs=1, imported_from=str(path.resolve())),
        data=DataConfig(split, str(data_root), source_info(data_root).get("source")),
        versions={"python": platform.python_version(), "torch": torch.__version__},
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), command=" ".join(sys.argv)))
    row = {"train_loss": float("nan"), "train_acc": float("nan"), "val_loss": va["loss"], "val_acc": va["acc"],
           "test_loss": te["loss"], "test_acc": te["acc"], "lr": float("nan"), "epoch_seconds": round(time.time() - t0, 3)}
    preds = {"val_logits": va["logits"].numpy().astype(np.float16), "val_labels": vy.numpy().astype(np.uint8),
             "val_index": vi.astype(np.int32), "test_logits": te["logits"].numpy().astype(np.float16),
             "test_labels": sy.numpy().astype(np.uint8), "test_index": si.astype(np.int32)}
    writer.write_epoch(1, row, net.state_dict(), preds)
    writer.set_status("imported", last_epoch=1)
    return writer.dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Import a seed-notebook state_dict (.pth) as a run.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("path", type=Path, help="file saved with torch.save(model.state_dict(), PATH)")
    p.add_argument("--name", default="imported", help="run name")
    p.add_argument("--split", choices=["classic", "seed"], default="classic", help="which val/test sets to score")
    p.add_argument("--runs-dir", default=None, help="where runs are saved (default: $DIGIT_LENS_RUNS or runs/)")
    p.add_argument("--data-root", default=None, help="MNIST root (default: $DIGIT_LENS_DATA or .data/)")
    args = p.parse_args(argv)
    runs_dir = Path(args.runs_dir) if args.runs_dir else runs.default_runs_dir()
    data_root = Path(args.data_root) if args.data_root else default_root()
    try:
        run_dir = import_checkpoint(args.path, args.name, runs_dir, data_root, args.split)
    except (CheckpointImportError, DataError, runs.RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    m = runs.load_metrics(run_dir).iloc[0]
    print(f"imported {args.path} as {run_dir}: val acc {m['val_acc']:.2%}, test acc {m['test_acc']:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
