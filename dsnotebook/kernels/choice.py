"""Which statistics backend computes a device's statistics: CuPy kernels or the torch reference."""
from __future__ import annotations

import warnings
from typing import Any

import torch

from dsnotebook.stats.reference import TorchStatsBackend

BACKENDS = ("auto", "torch", "cupy")


def make_backend(choice: str, device: torch.device) -> Any:
    """Pick the statistics backend for tensors on ``device``."""
    if choice not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {choice!r}")
    if choice == "torch" or device.type != "cuda":
        if choice == "cupy":
            warnings.warn(f"backend='cupy' needs CUDA tensors; tensors on {device} use the torch backend",
                          stacklevel=3)
        return TorchStatsBackend()
    from dsnotebook import kernels

    if kernels.is_available():
        return kernels.CupyStatsBackend()
    if choice == "cupy":
        raise RuntimeError("backend='cupy' asked for, but cupy is not installed or sees no GPU "
                           "(pip install 'dsnotebook[gpu]')")
    return TorchStatsBackend()
