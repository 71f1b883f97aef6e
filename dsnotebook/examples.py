"""Small real training jobs for tutorials, the demo and benchmarks (CPU-friendly).

Data: scikit-learn's handwritten digits (1,797 8x8 images that ship with the package,
no download).  Models are defined here rather than taken from torchvision so they run
wherever torch runs.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn


def load_digits_tensors(test_fraction: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test): images as float32 [N, 1, 8, 8] in [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # scikit-learn is only needed for these examples
        raise ImportError("the digits examples need scikit-learn: pip install 'dsnotebook[examples]'") from exc

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_test = int(len(x) * test_fraction)
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test]


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One shuffled epoch of mini-batches."""
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    for i in range(0, len(x), batch_size):
        idx = perm[i:i + batch_size]
        yield x[idx], y[idx]


class DigitsCNN(nn.Module):
    """Two conv blocks and a two-layer head: about 40k parameters, 8 tensors."""

    def __init__(self, channels: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * channels * 16, hidden), nn.ReLU(),
                                  nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class DigitsTransformer(nn.Module):
    """A small transformer encoder over the 8 image rows (tokens of 8 pixels)."""

    def __init__(self, d_model: int = 64, layers: int = 4, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(8, d_model)
        self.pos = nn.Parameter(torch.zeros(1, 8, d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=2 * d_model, dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.view(x.shape[0], 8, 8)) + self.pos
        return self.head(self.encoder(h).mean(dim=1))
