"""model.net: the seed's architecture exactly, variants, Captum-friendly modules."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.net import VARIANTS, Net, NetConfig, to_input


class SeedNotebookNet(nn.Module):
    """The seed notebook's network as written there (F.relu, F.max_pool2d): the reference."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(1600, 4608)
        self.fc2 = nn.Linear(4608, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


def test_parameter_names_and_shapes_are_the_seeds():
    shapes = {k: tuple(v.shape) for k, v in Net().state_dict().items()}
    assert shapes == {"conv1.weight": (32, 1, 3, 3), "conv1.bias": (32,), "conv2.weight": (64, 32, 3, 3),
                      "conv2.bias": (64,), "fc1.weight": (4608, 1600), "fc1.bias": (4608,),
                      "fc2.weight": (10, 4608), "fc2.bias": (10,)}


def test_seed_notebook_state_dict_loads_unchanged_and_computes_the_same():
    torch.manual_seed(0)
    seed = SeedNotebookNet().eval()
    net = Net().eval()
    net.load_state_dict(seed.state_dict())  # strict: any name or shape mismatch raises
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(net(x), seed(x), atol=1e-6)


def test_relus_and_pools_are_separate_non_inplace_modules():
    net = Net()
    relus = [m for m in net.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 3 and len({id(m) for m in relus}) == 3
    assert not any(m.inplace for m in relus)
    assert len([m for m in net.modules() if isinstance(m, nn.MaxPool2d)]) == 2


def test_variants_run_and_normalisation_lives_in_forward():
    x = torch.rand(2, 1, 28, 28)
    for name, cfg in VARIANTS.items():
        assert Net(cfg).eval()(x).shape == (2, 10), name
    torch.manual_seed(0)
    plain = Net(NetConfig()).eval()
    normed = Net(NetConfig(normalize=True)).eval()
    normed.load_state_dict(plain.state_dict())
    assert torch.allclose(normed(x), plain((x - 0.1307) / 0.3081), atol=1e-5)
    assert NetConfig.from_dict({**NetConfig(fc1_units=128).to_dict(), "unknown": 1}) == NetConfig(fc1_units=128)


def test_to_input_matches_totensor_scaling():
    u8 = torch.tensor([[[0, 255], [128, 1]]], dtype=torch.uint8)
    x = to_input(u8)
    assert x.shape == (1, 1, 2, 2) and torch.allclose(x[0, 0], torch.tensor([[0.0, 1.0], [128 / 255, 1 / 255]]))
