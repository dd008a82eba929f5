"""The trainer's options and the data protocol, each listed once as a dataclass.

`TrainConfig` is the `train` section of a run's config.json, the trainer's command-line flags
(model/train.py builds its argparse from these fields) and the dashboard's training form. `DataConfig`
is the `data` section: which protocol split MNIST into train / validation / test. The model section is
`model.net.NetConfig`. `model.runs.RunConfig` puts the three together.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from data.mnist import CLASSIC_TRAIN_SIZE, SPLITS

OPTIMIZERS = ("sgd", "adam")


def _opt(default: Any, help: str, choices: tuple | None = None) -> Any:
    """A dataclass field whose metadata carries the flag's help text and choices."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    epochs: int = _opt(10, "epochs to train")                             # seed notebook: ~10
    lr: float = _opt(0.01, "learning rate")                               # seed: SGD lr 0.01
    batch_size: int = _opt(64, "batch size")                              # seed: 64
    optimizer: str = _opt("sgd", "optimizer", OPTIMIZERS)                 # seed: plain SGD
    momentum: float = _opt(0.0, "SGD momentum")                           # seed: none
    seed: int = _opt(1, "random seed of initialisation, shuffle order and dropout")
    subset: int = _opt(0, "train on the first N training examples, 0 = all")
    eval_subset: int = _opt(0, "evaluate on the first N validation/test examples, 0 = all")
    log_every: int = _opt(50, "training steps per steps.csv row")
    folds: int = _opt(0, "cross-validation: hold out one of K folds of the training set, 0 = none")
    fold: int = _opt(0, "the fold held out (0..folds-1) when --folds is set")
    imported_from: str | None = None   # set instead of training for a run made by model.import_checkpoint

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in known})

    def to_dict(self) -> dict:
        out = asdict(self)
        if out["imported_from"] is None:
            del out["imported_from"]
        return out


def train_options() -> list[tuple[str, type, Any, str, tuple | None]]:
    """(name, type, default, help, choices) of every trainer option: the CLI and the form are built from this."""
    types = {"int": int, "float": float, "str": str}
    return [(f.name, types[f.type] if isinstance(f.type, str) else f.type, f.default, f.metadata["help"],
             f.metadata["choices"]) for f in fields(TrainConfig) if f.metadata]


@dataclass
class DataConfig:
    split: str = "classic"     # "classic": 50k train / 10k val (official train[50000:]) / 10k test; "seed": 60k / test / test
    root: str | None = None    # where MNIST was read from
    source: str | None = None  # how MNIST got there (data.mnist.source_info)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"unknown split {self.split!r}; choose one of {SPLITS}")

    @classmethod
    def from_dict(cls, d: dict) -> "DataConfig":
        d = d or {}
        return cls(split=d.get("split", "classic"), root=d.get("root"), source=d.get("source"))

    def to_dict(self) -> dict:
        return {**asdict(self), "val_source": self.val_source}

    @property
    def val_is_test(self) -> bool:
        """True when validation is the official test set (the seed protocol)."""
        return self.split == "seed"

    @property
    def val_source(self) -> str:
        """Where validation images come from, as written in config.json: "train[50000:]" or "test"."""
        return "test" if self.val_is_test else f"train[{CLASSIC_TRAIN_SIZE}:]"

    def official_file(self, part: str) -> str:
        """The official MNIST file ("train" or "test") whose rows a part ("train", "val", "test") indexes."""
        if part not in ("train", "val", "test"):
            raise ValueError(f"unknown part {part!r}")
        if part == "val":
            return "test" if self.val_is_test else "train"
        return part

    def first_row(self, part: str) -> int:
        """The row of the official file where a part starts (50000 for classic validation, else 0)."""
        return CLASSIC_TRAIN_SIZE if part == "val" and not self.val_is_test else 0
