"""Training throughput: the seed notebook's loop vs our trainer, alternating, in one process.

    python bench/train_throughput.py [--batches 200] [--rounds 2]

(a) the seed's loop: torchvision's MNIST + ToTensor + DataLoader(batch_size=64, shuffle=True), written
    out here as torchvision does it per image (uint8 array -> PIL image -> float tensor / 255), since
    torchvision itself is not a dependency;
(b) our trainer's `train_epoch` on the same number of batches (uint8 tensor in memory, sliced).
Both train the same network with SGD lr 0.01 on the same data. Prints samples/s, the ratio, and
where our time goes (data, forward, backward, optimizer).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from data.mnist import default_root, load_mnist  # noqa: E402
from model.net import Net, to_input  # noqa: E402
from model.train import train_epoch  # noqa: E402


class SeedMNIST(Dataset):
    """torchvision.datasets.MNIST with transforms.ToTensor(), per image as torchvision does it."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = Image.fromarray(self.x[i].numpy(), mode="L")                  # what MNIST.__getitem__ does
        t = torch.from_numpy(np.array(img, np.uint8, copy=True))             # ToTensor: (28, 28) uint8
        return t.unsqueeze(0).float().div(255), int(self.y[i])               # (1, 28, 28) in [0, 1]


def seed_loop(x: torch.Tensor, y: torch.Tensor, batches: int) -> float:
    """The seed's training loop for `batches` batches; returns samples/s."""
    ds = SeedMNIST(x, y)
    loader = DataLoader(ds, batch_size=64, shuffle=True)
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    t0, n = time.perf_counter(), 0
    for i, (x, y) in enumerate(loader):
        if i == batches:
            break
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        n += len(x)
    return n / (time.perf_counter() - t0)


def our_loop(x: torch.Tensor, y: torch.Tensor, batches: int) -> float:
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    n = batches * 64
    t0 = time.perf_counter()
    train_epoch(model, opt, x[:n], y[:n], 64, torch.Generator().manual_seed(0), torch.device("cpu"), "ours",
                log_every=10 ** 9)
    return n / (time.perf_counter() - t0)


def breakdown(x: torch.Tensor, y: torch.Tensor, batches: int) -> dict[str, float]:
    """Seconds spent in each phase of our loop over `batches` batches."""
    torch.manual_seed(0)
    model = Net().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    perm = torch.randperm(len(x))
    t = dict(data=0.0, forward=0.0, backward=0.0, optimizer=0.0)
    for b in range(batches):
        t0 = time.perf_counter()
        idx = perm[b * 64:(b + 1) * 64]
        xb, yb = to_input(x[idx]), y[idx]
        t1 = time.perf_counter()
        loss = F.cross_entropy(model(xb), yb)
        t2 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        for k, dt in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            t[k] += dt
    return t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=200, help="batches per measurement (default: 200)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of (seed, ours) (default: 2)")
    args = p.parse_args()
    root = default_root()
    data = load_mnist(root, "seed")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.batches} batches of 64 per measurement")
    seed_rates, our_rates = [], []
    for r in range(args.rounds):
        seed_rates.append(seed_loop(data.train_x, data.train_y, args.batches))
        our_rates.append(our_loop(data.train_x, data.train_y, args.batches))
        print(f"round {r + 1}: seed loop {seed_rates[-1]:7.0f} samples/s   ours {our_rates[-1]:7.0f} samples/s")
    s, o = max(seed_rates), max(our_rates)
    print(f"best of {args.rounds}: seed loop {s:.0f} samples/s, ours {o:.0f} samples/s, ratio {o / s:.2f}x")
    t = breakdown(data.train_x, data.train_y, args.batches)
    total = sum(t.values())
    print("where our time goes: " + ", ".join(f"{k} {v / total:.0%}" for k, v in t.items()))


if __name__ == "__main__":
    main()
