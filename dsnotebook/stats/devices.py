"""Which devices can hold float64 tensors: the reference backend's exact path needs them.

Apple's MPS has no float64 at all; Intel GPUs report it per device (the Data Center GPU Max
has it, most Arc GPUs do not); Gaudi and unknown accelerators are not assumed to have it.
Where the answer is no (or cannot be read), the statistics take the float32 path
(:mod:`dsnotebook.stats.float32`), which runs on any device.
"""
from __future__ import annotations

import functools

import torch

_WITH_FLOAT64 = ("cpu", "cuda")  # cuda: NVIDIA and ROCm (HIP) builds alike


@functools.lru_cache(maxsize=None)
def _xpu_float64(index: int) -> bool:
    return bool(torch.xpu.get_device_properties(index).has_fp64)


def has_float64(device: torch.device | str) -> bool:
    """Whether tensors on ``device`` can be float64."""
    device = torch.device(device)
    if device.type in _WITH_FLOAT64:
        return True
    if device.type == "xpu":
        try:
            return _xpu_float64(torch.xpu.current_device() if device.index is None else device.index)
        except Exception:  # no XPU runtime to ask: the float32 path is safe everywhere
            return False
    return False
