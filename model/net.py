"""The seed CNN for MNIST, and its variants, described by one dataclass config.

Reference: the seed study project (conv 1->32 3x3, max-pool, conv 32->64 3x3, max-pool,
fc 1600->4608, fc 4608->10), itself close to pytorch/examples' mnist/main.py.

Parameter names and shapes are the seed's (`conv1.weight`, ..., `fc2.bias`), so a `state_dict`
saved by the original notebook loads unchanged into `Net(NetConfig())`. Every ReLU and pool is its
own nn.Module used once (no F.relu, no in-place), as Captum's DeepLift and Guided Backprop need.

A property worth knowing: the network never sees the last two rows and columns of its input. The
second max-pool turns conv2's 11x11 map into 5x5 and drops its last row and column, which are the
only ones that depend on input pixels 26 and 27. Every gradient-based map is zero there.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


@dataclass
class NetConfig:
    conv1_channels: int = 32   # seed: 32 kernels of 3x3 on the 1-channel input
    conv2_channels: int = 64   # seed: 64 kernels of 3x3
    fc1_units: int = 4608      # seed: 1600 -> 4608
    dropout: float = 0.0       # seed: none; dropout before fc1 and fc2 when > 0
    batch_norm: bool = False   # seed: none; BatchNorm2d after each conv when True
    normalize: bool = False    # seed: none (inputs in [0,1]); when True, (x - mean) / std in forward

    @classmethod
    def from_dict(cls, d: dict) -> "NetConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict:
        return asdict(self)


VARIANTS: dict[str, NetConfig] = {
    "seed": NetConfig(),
    "dropout": NetConfig(dropout=0.25),
    "small-fc": NetConfig(fc1_units=128),
    "batchnorm": NetConfig(batch_norm=True),
    "normalized": NetConfig(normalize=True),
}

INPUT_SHAPE = (1, 28, 28)
# The forward path, in order, as (module name, what it is); analysis walks this to show every stage.
LAYERS = ("conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "fc1", "relu3", "fc2")


class Net(nn.Module):
    """conv1 -> ReLU -> pool -> conv2 -> ReLU -> pool -> flatten -> fc1 -> ReLU -> fc2 (logits)."""

    def __init__(self, config: NetConfig | None = None):
        super().__init__()
        self.config = c = config or NetConfig()
        self.conv1 = nn.Conv2d(1, c.conv1_channels, 3)             # (B,1,28,28) -> (B,32,26,26)
        self.bn1 = nn.BatchNorm2d(c.conv1_channels) if c.batch_norm else nn.Identity()
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)                                # -> (B,32,13,13)
        self.conv2 = nn.Conv2d(c.conv1_channels, c.conv2_channels, 3)  # -> (B,64,11,11)
        self.bn2 = nn.BatchNorm2d(c.conv2_channels) if c.batch_norm else nn.Identity()
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)                                # -> (B,64,5,5)
        self.flatten = nn.Flatten()                                 # -> (B,1600)
        self.drop1 = nn.Dropout(c.dropout) if c.dropout > 0 else nn.Identity()
        self.fc1 = nn.Linear(c.conv2_channels * 5 * 5, c.fc1_units)  # -> (B,4608)
        self.relu3 = nn.ReLU()
        self.drop2 = nn.Dropout(c.dropout) if c.dropout > 0 else nn.Identity()
        self.fc2 = nn.Linear(c.fc1_units, 10)                       # -> (B,10) logits
        self.register_buffer("mean", torch.tensor(MNIST_MEAN if c.normalize else 0.0), persistent=False)
        self.register_buffer("std", torch.tensor(MNIST_STD if c.normalize else 1.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std                    # (B,1,28,28) floats in [0,1]
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        x = self.drop1(self.flatten(x))
        x = self.drop2(self.relu3(self.fc1(x)))
        return self.fc2(x)


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (B,28,28) -> float model input (B,1,28,28) in [0,1], as the seed's ToTensor."""
    return images.unsqueeze(1).float().div_(255.0)
