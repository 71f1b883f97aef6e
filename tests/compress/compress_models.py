"""Small models for the compression tests (CPU, milliseconds per call)."""
from __future__ import annotations

import torch
from torch import nn

#: latency measurement kept minimal where a test is not about latency
FAST = dict(rounds=1, block_s=0.001, sensitivity=False)


class ConvNet(nn.Module):
    """conv -> BN -> ReLU -> conv -> ReLU -> pool -> flatten -> Linear -> ReLU -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Residual(nn.Module):
    """A residual add couples the channels of ``a`` with the block input; ``b`` stays prunable."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 32)
        self.c = nn.Linear(32, 16)
        self.out = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + torch.relu(self.a(x))
        return self.out(self.c(torch.relu(self.b(h))))
