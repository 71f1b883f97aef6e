"""Fixtures of the compression tests (the models live in compress_models.py)."""
from __future__ import annotations

import pytest
import torch

from compress_models import ConvNet


@pytest.fixture
def convnet() -> ConvNet:
    torch.manual_seed(0)
    m = ConvNet()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        m.features[1].running_mean.uniform_(-0.5, 0.5)
        m.features[1].running_var.uniform_(0.5, 2.0)
    return m


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
