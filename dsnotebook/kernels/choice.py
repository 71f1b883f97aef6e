"""Which statistics backend computes a device's statistics: CuPy kernels or the torch reference.

The CuPy kernels are CUDA C for NVIDIA GPUs: they run only under an NVIDIA CUDA build of torch
(``torch.version.cuda`` set, ``torch.version.hip`` unset).  Under ROCm ``torch.cuda`` is the HIP
device and a ROCm cupy may even import, but the kernels were never built or checked there, so
AMD GPUs get the torch reference (float64 path).  Devices without float64 (Apple MPS, Intel
GPUs without fp64) get the reference's float32 path.
"""
from __future__ import annotations

import warnings
from typing import Any

import torch

from dsnotebook.stats.devices import has_float64
from dsnotebook.stats.reference import TorchStatsBackend

BACKENDS = ("auto", "torch", "cupy")


def nvidia_cuda_build() -> bool:
    """Whether this torch is an NVIDIA CUDA build (not ROCm, whose ``torch.cuda`` is HIP)."""
    return bool(torch.version.cuda) and not getattr(torch.version, "hip", None)


def _reference(device: torch.device) -> TorchStatsBackend:
    return TorchStatsBackend(float32=not has_float64(device))


def make_backend(choice: str, device: torch.device) -> Any:
    """Pick the statistics backend for tensors on ``device``."""
    if choice not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {choice!r}")
    if choice == "torch" or device.type != "cuda":
        if choice == "cupy":
            warnings.warn(f"backend='cupy' needs CUDA tensors; tensors on {device} use the torch backend",
                          stacklevel=3)
        return _reference(device)
    if not nvidia_cuda_build():
        if choice == "cupy":
            raise RuntimeError(f"backend='cupy' runs on NVIDIA CUDA builds of torch only; this torch is built for "
                               f"ROCm (HIP {torch.version.hip}): use backend='torch' (or 'auto')")
        return _reference(device)
    from dsnotebook import kernels

    if kernels.is_available():
        return kernels.CupyStatsBackend()
    if choice == "cupy":
        raise RuntimeError("backend='cupy' asked for, but cupy is not installed or sees no GPU "
                           "(pip install 'dsnotebook[gpu]')")
    return _reference(device)
