"""A LeNet-5 style network as an nn.Sequential: padding 2, Tanh, average pooling."""
import torch.nn as nn


class LeNet(nn.Sequential):
    def __init__(self, hidden: int = 120):
        super().__init__(
            nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),      # (B,6,14,14)
            nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),                 # (B,16,5,5)
            nn.Flatten(), nn.Linear(16 * 5 * 5, hidden), nn.Tanh(),
            nn.Linear(hidden, 84), nn.Tanh(), nn.Linear(84, 10))
