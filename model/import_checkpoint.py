"""Import a trained MNIST model, ours or anyone's, as a run the dashboard can show.

    python -m model.import_checkpoint PATH --name NAME [--model-file FILE.py --model-class NAME]
                                      [--model-kwargs JSON] [--input-norm MEAN STD] [--outputs KIND]

PATH is one of
  1. a bare state_dict (.pt, .pth, .safetensors) with --model-file/--model-class: the Python file that
     defines the class. Importing that file RUNS IT, as your own script would: only import files you trust.
     The weights themselves are read with torch.load(weights_only=True) (no code in them runs);
  2. a TorchScript archive (torch.jit.save), no Python file needed;
  3. a torch.export archive (.pt2, torch.export.save), no Python file needed;
  4. a state_dict of one of our own variants (model.net), no extra flags;
  or a folder of such files with a number in their names (epoch_1.pt, ..., or ckpt-500.pt, ...): each
  becomes an epoch, in number order, so the over-epochs views work for an imported training history.

Everything is checked before anything is written: the class imports and builds, the weights fit (every
misfitting tensor is named), the output is 10 class scores. The run keeps a copy of the class file or
archive (with its SHA-256) in `<run>/source/`, the conventions in config.json's "source" section, and
each checkpoint's weights, so it rebuilds without the original files (docs/run-format.md).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from data.mnist import DataError, default_root, load_mnist, source_info
from model import external, runs
from model.config import DataConfig, TrainConfig
from model.external import ModelError, ModelSource
from model.net import VARIANTS, Net, NetConfig, to_input
from model.train import evaluate, select_data

WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors", ".pt2", ".ts", ".bin", ".ckpt")


class CheckpointImportError(Exception):
    """The checkpoint cannot be imported; the message says why."""


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a bare state_dict safely (weights_only / safetensors); refuse anything that is not name -> tensor."""
    if not path.is_file():
        raise CheckpointImportError(f"{path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            obj = load_file(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for code-carrying pickles, RuntimeError for non-torch files
        raise CheckpointImportError(f"{path}: refused: not a plain state_dict of tensors "
                                    f"(torch.load with weights_only=True said: {type(e).__name__}: "
                                    f"{(str(e).splitlines() or [''])[0][:200]})") from e
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
        raise CheckpointImportError(
            f"missing parameter {e}: these are not the weights of one of digit-lens's own networks. For your own "
            "network pass --model-file FILE.py --model-class NAME (or import a TorchScript / .pt2 archive)") from e


def checkpoint_files(path: Path) -> list[Path]:
    """The file itself, or a folder's checkpoint files with a number in their names, in number order."""
    if not path.is_dir():
        return [path]
    numbered = []
    for p in path.iterdir():
        m = re.findall(r"\d+", p.stem)
        if p.is_file() and p.suffix in WEIGHT_SUFFIXES and m:
            numbered.append((int(m[-1]), p.name, p))
    if not numbered:
        raise CheckpointImportError(f"{path}: no checkpoint files with a number in their name "
                                    f"(suffixes {', '.join(WEIGHT_SUFFIXES)})")
    return [p for _, _, p in sorted(numbered)]


def probe_images(data_root: Path, split: str, n: int = 256) -> torch.Tensor:
    """n real validation images (n,1,28,28) in [0,1], for checking a model before it is saved."""
    data = load_mnist(data_root, split)
    return to_input(data.val_x[:n])


def check_model(net: nn.Module, source: ModelSource, probe: torch.Tensor, where: str) -> ModelSource:
    """Check a user's network on real images and settle its conventions; returns the completed source.

    Output must be (B,10) for batches of 1 and of len(probe); `outputs` is detected unless given; the
    network is rewritten one module per non-linearity (model.external.modularize) and the rewrite must give
    the same outputs, else the hook methods are marked unavailable with the reason.
    """
    external.set_eval(net)
    mean, std = source.input_norm or (0.0, 1.0)
    x = (probe - mean) / std
    try:
        out, one = _run_any_batch(net, x), _run_any_batch(net, x[:1])
    except Exception as e:
        hint = (" (export it with a dynamic batch dimension: torch.export.export(model, (x,), dynamic_shapes="
                "({0: torch.export.Dim('batch')},)))" if source.kind == "export" and "Guard failed" in str(e) else "")
        raise ModelError(f"{where}: running it on a batch of MNIST images (B,1,28,28) raised "
                         f"{type(e).__name__}: {str(e)[:300]}{hint}") from e
    external.check_outputs(out, where)
    external.check_outputs(one, f"{where} (batch of one)")
    if torch.isnan(out).any() or torch.isnan(one).any():
        raise ModelError(f"{where}: returns NaN on real MNIST images (given (x - {mean:g}) / {std:g} of images in "
                         "[0, 1]): check --input-norm and that the weights are the trained ones")
    detected = external.detect_outputs(out)
    outputs = source.outputs if source.outputs != "auto" else detected
    hook_methods, note = True, ""
    try:
        rewritten, stripped, note = external.modularize(net)
        with torch.no_grad():
            diff = float((torch.log_softmax(rewritten(x), 1) -
                          torch.log_softmax(out if not stripped else _logits_of(out, outputs), 1)).abs().max())
        if diff > 1e-4:
            hook_methods, note = False, f"the rewrite to one module per non-linearity changed the outputs by {diff:.2g}"
    except ModelError as e:
        hook_methods, note = False, str(e)
    except Exception as e:  # the rewritten graph failed to run (e.g. a shape fixed at export time)
        hook_methods, note = False, f"the rewritten model failed to run ({type(e).__name__}: {str(e)[:200]})"
    return ModelSource(**{**source.to_dict(), "outputs": outputs, "hook_methods": hook_methods, "note": note})


def _run_any_batch(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """net(x); for a network that accepts only one batch size (a torch.export archive exported with a fixed
    batch), x in chunks of the first size in 1, 2, 4, ... that it accepts."""
    with torch.no_grad():
        try:
            return net(x)
        except Exception as first:
            for k in (1, 2, 4, 8, 16, 32, 64, 128):
                if len(x) % k:
                    continue
                try:
                    return torch.cat([net(x[i:i + k]) for i in range(0, len(x), k)])
                except Exception:
                    continue
            raise first


def _logits_of(out: torch.Tensor, outputs: str) -> torch.Tensor:
    return torch.log(out.clamp_min(1e-12)) if outputs == "probs" else out


def _source_for(files: list[Path], model_file: Path | None, model_class: str | None, kwargs: dict,
                input_norm: list[float] | None, outputs: str) -> tuple[ModelSource | None, Path | None]:
    """(source section without file/sha, the definition file to copy) or (None, None) for our own networks."""
    if model_file is not None:
        if not model_class:
            raise CheckpointImportError("--model-file needs --model-class NAME (the nn.Module class in the file)")
        return ModelSource("class", class_name=model_class, kwargs=kwargs, input_norm=input_norm,
                           outputs=outputs), Path(model_file)
    kind = external.archive_kind(files[0])
    if kind is not None:
        return ModelSource(kind, input_norm=input_norm, outputs=outputs), None
    if input_norm or outputs != "auto":
        raise CheckpointImportError("--input-norm/--outputs describe a network of your own: give its class with "
                                    "--model-file/--model-class, or a TorchScript / .pt2 archive")
    return None, None


def import_checkpoint(path: Path, name: str, runs_dir: Path, data_root: Path, split: str = "classic",
                      model_file: Path | None = None, model_class: str | None = None, model_kwargs: dict | None = None,
                      input_norm: list[float] | None = None, outputs: str = "auto") -> Path:
    """Import a checkpoint (or a folder of them) as a run; returns the run folder. Nothing is written on error."""
    path = Path(path)
    files = checkpoint_files(path)
    source, definition = _source_for(files, model_file, model_class, model_kwargs or {}, input_norm, outputs)
    runs.check_name(name)

    # ---- everything checked before anything is written
    states: list[dict[str, torch.Tensor]] = []
    if source is None:                                   # one of our own variants
        config = None
        for f in files:
            state = read_state_dict(f)
            config = config or infer_config(state)
            try:
                Net(config).load_state_dict(state)
            except RuntimeError as e:
                raise CheckpointImportError(f"{f}: weights do not fit the seed CNN: {str(e)[:300]}") from e
            states.append(state)
    else:
        config = NetConfig()
        if source.kind == "class":
            template = external.instantiate(external.load_class(definition, model_class), source.kwargs, definition)
            for f in files:
                state = read_state_dict(f)
                external.load_weights(template, state, str(f))
                states.append(state)
        else:
            definition = files[0]
            template = external.load_archive(files[0], source.kind)
            for f in files:
                if external.archive_kind(f) != source.kind:
                    raise CheckpointImportError(f"{f}: not a {source.kind} archive like {files[0].name}")
                states.append({k: v.detach().clone() for k, v in external.load_archive(f, source.kind).state_dict().items()})
            for f, state in zip(files[::-1], states[::-1]):     # every epoch must fit the copy of the first archive
                external.load_weights(template, state, str(f))  # (the last one loaded: states[0])
        source = check_model(template, source, probe_images(data_root, split), str(definition))

    # ---- write the run
    data = load_mnist(data_root, split)
    sel = select_data(data, 0, 0)
    (vx, vy, vi), (sx, sy, si) = sel["val"], sel["test"]
    run_id = runs.new_run_id(runs_dir, name)
    run_dir = runs_dir / run_id
    try:
        return _write_run(run_dir, run_id, name, path, files, states, source, definition, config, data, data_root,
                          split, (vx, vy, vi), (sx, sy, si))
    except BaseException:               # no half run: a folder without its last epoch would look like a run
        shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _write_run(run_dir: Path, run_id: str, name: str, path: Path, files: list[Path], states: list[dict],
               source: ModelSource | None, definition: Path | None, config: NetConfig, data, data_root: Path,
               split: str, val: tuple, test: tuple) -> Path:
    """Write the checked import as run folder `run_dir` (which must not exist yet); returns it."""
    (vx, vy, vi), (sx, sy, si) = val, test
    if source is not None:
        blob = Path(definition).read_bytes()             # read once: the copy is exactly what the SHA-256 is of
        copy = Path(external.SOURCE_DIR) / Path(definition).name
        source.file, source.sha256 = str(copy), hashlib.sha256(blob).hexdigest()
    variant = "imported" if source is not None else next((k for k, v in VARIANTS.items() if v == config), "custom")
    writer = runs.RunWriter(run_dir, runs.RunConfig(
        run_id=run_id, name=name, variant=variant, model=config, source=source,
        train=TrainConfig(epochs=len(files), imported_from=str(path.resolve())),
        data=DataConfig(split, str(data_root), source_info(data_root).get("source")),
        versions={"python": platform.python_version(), "torch": torch.__version__},
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), command=" ".join(sys.argv)))
    if source is not None:
        (run_dir / external.SOURCE_DIR).mkdir(exist_ok=True)
        runs.atomic_write_bytes(run_dir / source.file, blob)
    for epoch, (f, state) in enumerate(zip(files, states), start=1):
        t0 = time.time()
        if source is not None:
            net = external.build_model(source, run_dir, state)    # rebuilt from the run's own copy
        else:
            net = Net(config)
            net.load_state_dict(state)
        va, te = evaluate(net, vx, vy, torch.device("cpu")), evaluate(net, sx, sy, torch.device("cpu"))
        row = {"train_loss": float("nan"), "train_acc": float("nan"), "val_loss": va["loss"], "val_acc": va["acc"],
               "test_loss": te["loss"], "test_acc": te["acc"], "lr": float("nan"),
               "epoch_seconds": round(time.time() - t0, 3)}
        preds = {"val_logits": va["logits"].numpy().astype(np.float16), "val_labels": vy.numpy().astype(np.uint8),
                 "val_index": vi.astype(np.int32), "test_logits": te["logits"].numpy().astype(np.float16),
                 "test_labels": sy.numpy().astype(np.uint8), "test_index": si.astype(np.int32)}
        writer.write_epoch(epoch, row, state, preds)
        print(f"[import] epoch {epoch}/{len(files)} from {f.name}: val acc {va['acc']:.2%}, test acc {te['acc']:.2%}",
              flush=True)
    writer.set_status("imported", last_epoch=len(files))
    return writer.dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Import a trained MNIST model as a run: a state_dict of your own class (--model-file, "
                    "--model-class), a TorchScript or torch.export (.pt2) archive, a state_dict of one of our "
                    "variants, or a folder of numbered checkpoints (one epoch each).",
        epilog="--model-file imports and RUNS that Python file, exactly as your own script would: import only "
               "files you trust. The weights are read with torch.load(weights_only=True). The web UI never "
               "imports code.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("path", type=Path, help="a checkpoint file, or a folder of numbered checkpoint files")
    p.add_argument("--name", default="imported", help="run name")
    p.add_argument("--model-file", type=Path, default=None, help="Python file defining the model class (it is run)")
    p.add_argument("--model-class", default=None, help="name of the nn.Module class in --model-file")
    p.add_argument("--model-kwargs", default="{}", help="JSON object of the class's constructor arguments")
    p.add_argument("--input-norm", nargs=2, type=float, metavar=("MEAN", "STD"), default=None,
                   help="the model expects (x - MEAN) / STD of images in [0,1] (pytorch/examples: 0.1307 0.3081)")
    p.add_argument("--outputs", choices=("auto",) + external.OUTPUTS, default="auto",
                   help="what the last layer returns; auto: probabilities if rows sum to 1, log-probabilities "
                        "if their exp does, else logits")
    p.add_argument("--split", choices=["classic", "seed"], default="classic", help="which val/test sets to score")
    p.add_argument("--runs-dir", default=None, help="where runs are saved (default: $DIGIT_LENS_RUNS or runs/)")
    p.add_argument("--data-root", default=None, help="MNIST root (default: $DIGIT_LENS_DATA or .data/)")
    args = p.parse_args(argv)
    runs_dir = Path(args.runs_dir) if args.runs_dir else runs.default_runs_dir()
    data_root = Path(args.data_root) if args.data_root else default_root()
    try:
        kwargs = json.loads(args.model_kwargs)
        if not isinstance(kwargs, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        print(f"error: --model-kwargs must be a JSON object like '{{\"hidden\": 128}}' ({e})", file=sys.stderr)
        return 2
    if args.input_norm and not (args.input_norm[1] > 0 and all(np.isfinite(args.input_norm))):
        print(f"error: --input-norm MEAN STD needs a finite mean and a positive std, got {args.input_norm}",
              file=sys.stderr)
        return 2
    try:
        run_dir = import_checkpoint(args.path, args.name, runs_dir, data_root, args.split, args.model_file,
                                    args.model_class, kwargs, args.input_norm, args.outputs)
    except (CheckpointImportError, ModelError, DataError, runs.RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:                # unreadable file, disk full: a run folder begun is removed again
        print(f"error: {e} (no run was written)", file=sys.stderr)
        return 1
    m = runs.load_metrics(run_dir).iloc[-1]
    config = runs.load_config(run_dir)
    print(f"imported {args.path} as {run_dir} ({config.architecture}): val acc {m['val_acc']:.2%}, "
          f"test acc {m['test_acc']:.2%}")
    if config.source is not None and not config.source.hook_methods:
        print(f"note: DeepLift, Guided Backprop, Deconvolution and Guided Grad-CAM will be unavailable: "
              f"{config.source.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
