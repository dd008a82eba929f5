"""Networks of other people's kinds (tests/zoo/*.py) and a helper that imports one as a run.

    run_dir = import_zoo(tmp_path / "runs", "pytorch_examples", form="class")

Weights are the class's seeded initialisation unless `state` is given (pages render for any weights;
the accuracy test trains its own). Forms: "class" (state_dict + class file), "torchscript", "export".
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn as nn

ZOO = Path(__file__).resolve().parent / "zoo"
# file stem -> (class name, constructor kwargs, input normalisation or None)
MODELS = {
    "pytorch_examples": ("Net", {}, [0.1307, 0.3081]),
    "lenet": ("LeNet", {"hidden": 120}, None),
    "resnetish": ("SmallRes", {"width": 16}, None),
}


def zoo_class(stem: str) -> type[nn.Module]:
    spec = importlib.util.spec_from_file_location(f"zoo_{stem}", ZOO / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, MODELS[stem][0])


def zoo_model(stem: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return zoo_class(stem)(**MODELS[stem][1]).eval()


def save_form(model: nn.Module, folder: Path, form: str, name: str = "model") -> Path:
    """Save a model as a state_dict (.pt), TorchScript (.ts) or torch.export (.pt2) file; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    if form == "class":
        path = folder / f"{name}.pt"
        torch.save(model.state_dict(), path)
    elif form == "torchscript":
        path = folder / f"{name}.ts"
        torch.jit.save(torch.jit.script(model), str(path))
    elif form == "export":
        path = folder / f"{name}.pt2"
        batch = torch.export.Dim("batch", min=1, max=4096)
        ep = torch.export.export(model, (torch.zeros(2, 1, 28, 28),), dynamic_shapes={"x": {0: batch}}
                                 if "x" in model.forward.__code__.co_varnames else ({0: batch},))
        torch.export.save(ep, str(path))
    else:
        raise ValueError(form)
    return path


def import_zoo(runs_dir: Path, stem: str, form: str = "class", name: str | None = None,
               model: nn.Module | None = None, data_root: Path | None = None) -> Path:
    """Import a zoo network as a one-epoch run; returns the run folder."""
    from data.mnist import default_root
    from model.import_checkpoint import import_checkpoint
    cls_name, kwargs, norm = MODELS[stem]
    model = model if model is not None else zoo_model(stem)
    path = save_form(model, Path(runs_dir).parent / f"zoo-{stem}-{form}", form)
    extra = dict(model_file=ZOO / f"{stem}.py", model_class=cls_name, model_kwargs=kwargs) if form == "class" else {}
    return import_checkpoint(path, name or f"{stem}-{form}", Path(runs_dir), data_root or default_root(),
                             input_norm=norm, **extra)
