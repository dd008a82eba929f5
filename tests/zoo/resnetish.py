"""A small network with batch norm, a residual addition and adaptive average pooling."""
import torch.nn as nn
import torch.nn.functional as F


class SmallRes(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(width)
        self.conv_a = nn.Conv2d(width, width, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(width)
        self.conv_b = nn.Conv2d(width, width, 3, padding=1)
        self.bn_b = nn.BatchNorm2d(width)
        self.down = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, 10)

    def forward(self, x):
        x = F.relu(self.bn0(self.stem(x)))                 # (B,w,28,28)
        h = F.relu(self.bn_a(self.conv_a(x)))
        x = F.relu(x + self.bn_b(self.conv_b(h)))          # residual addition
        x = F.relu(self.down(x))                           # (B,2w,14,14)
        return self.fc(self.pool(x).flatten(1))            # logits
