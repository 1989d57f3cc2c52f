"""Tiny model families with known lineage, built in seconds from sklearn's bundled digits.

Used by the tests only (the lineage zoo builds the real ones). Everything is seeded and the torch
thread count pinned, so the same weights come out every run.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import nn


@cache
def digits() -> tuple[np.ndarray, np.ndarray]:
    """Digits as (n, 1, 8, 8) float32 in [0, 1] and int64 labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32)[:, None], d.target.astype(np.int64)


def probes(n: int = 96) -> np.ndarray:
    """Held-out digits (the last n) used as probes."""
    return digits()[0][-n:]


def probe_labels(n: int = 96) -> np.ndarray:
    """The true classes of ``probes(n)``."""
    return digits()[1][-n:]


class SmallCNN(nn.Module):
    """A small CNN for 1x8x8 inputs."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(2 * width * 16, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def small_cnn() -> SmallCNN:
    """Architecture factory (``arch="families:small_cnn"``)."""
    return SmallCNN()


def train(model: nn.Module, seed: int, epochs: int = 4, lr: float = 3e-3, part: slice = slice(0, 1200)) -> nn.Module:
    """Adam on a slice of the digits; deterministic for a seed."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    x, y = (torch.from_numpy(a[part]) for a in digits())
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = order[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def trained(seed: int) -> SmallCNN:
    """An independently trained source: its own init and data order."""
    torch.manual_seed(seed)
    return train(SmallCNN(), seed)


def accuracy(model: nn.Module) -> float:
    """Accuracy on the held-out digits."""
    x, y = (torch.from_numpy(a[1400:]) for a in digits())
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def fine_tuned(parent: nn.Module, seed: int = 100) -> nn.Module:
    """All layers fine-tuned on data the parent did not see."""
    return train(copy.deepcopy(parent), seed, epochs=2, lr=1e-3, part=slice(1200, 1500))


def pruned(parent: nn.Module, sparsity: float = 0.5) -> nn.Module:
    """Global magnitude pruning of the weight matrices."""
    child = copy.deepcopy(parent)
    with torch.no_grad():
        for p in child.parameters():
            if p.ndim > 1:
                k = max(1, int(sparsity * p.numel()))
                threshold = p.abs().flatten().kthvalue(k).values
                p.mul_((p.abs() > threshold).float())
    return child


def noised(parent: nn.Module, scale: float = 0.1, seed: int = 7) -> nn.Module:
    """Gaussian noise of ``scale`` x each tensor's std added to every weight."""
    child = copy.deepcopy(parent)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in child.parameters():
            p.add_(scale * p.std() * torch.randn(p.shape, generator=gen))
    return child


def permuted(parent: SmallCNN, seed: int = 3) -> SmallCNN:
    """Hidden units of every layer permuted: the same function, shuffled weights."""
    child = copy.deepcopy(parent)
    gen = torch.Generator().manual_seed(seed)
    c1 = torch.randperm(child.conv1.out_channels, generator=gen)
    c2 = torch.randperm(child.conv2.out_channels, generator=gen)
    f1 = torch.randperm(child.fc1.out_features, generator=gen)
    cols = torch.arange(child.fc1.in_features).reshape(child.conv2.out_channels, -1)[c2].reshape(-1)
    with torch.no_grad():
        child.conv1.weight.copy_(parent.conv1.weight[c1])
        child.conv1.bias.copy_(parent.conv1.bias[c1])
        child.conv2.weight.copy_(parent.conv2.weight[c2][:, c1])
        child.conv2.bias.copy_(parent.conv2.bias[c2])
        child.fc1.weight.copy_(parent.fc1.weight[f1][:, cols])
        child.fc1.bias.copy_(parent.fc1.bias[f1])
        child.fc2.weight.copy_(parent.fc2.weight[:, f1])
    return child


@dataclass
class Family:
    """A parent, its derived children and independently trained models of the same recipe."""

    parent: SmallCNN
    children: dict[str, nn.Module]
    independents: list[SmallCNN]


@cache
def family() -> Family:
    """The shared test family (built once per test session, ~10 s on 2 cores)."""
    parent = trained(0)
    children = {
        "fine-tuned": fine_tuned(parent),
        "pruned-50": pruned(parent, 0.5),
        "noised": noised(parent, 0.1),
        "permuted": permuted(parent),
    }
    return Family(parent, children, [trained(s) for s in range(1, 7)])
