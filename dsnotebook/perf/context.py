"""What the timing probe reads once or hooks globally: the running settings, the optimizer entry.

Kept apart from :mod:`dsnotebook.perf.timing` (the per-step clock work) because neither
depends on a sampled step.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from dsnotebook.perf.hardware import tf32_enabled


def running_settings(model: nn.Module, device: torch.device, compiled: bool) -> dict[str, Any]:
    """Autocast, TF32, cuDNN benchmark, channels_last and parameter dtypes as the model runs now
    (read inside its first sampled forward, so autocast is the one the user's loop set)."""
    dev = device.type
    amp = torch.is_autocast_enabled(dev) if dev in ("cuda", "cpu") else False
    amp_dtype = str(torch.get_autocast_dtype(dev)).replace("torch.", "") if amp else None
    convs = [p for p in model.parameters() if p.dim() == 4]
    return {
        "device": dev, "autocast": amp_dtype, "compiled": compiled,
        "tf32_matmul": tf32_enabled("matmul"),
        "tf32_cudnn": tf32_enabled("conv"),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "channels_last": bool(convs) and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs),
        "param_dtypes": sorted({str(p.dtype).replace("torch.", "") for p in model.parameters()}),
    }


def first_optimizer_pre_hook(hook: Callable[..., None]) -> Any:
    """A global optimizer pre-hook that runs before every other one, the tracer's included.

    Global pre-hooks run before per-optimizer ones; moving ours to the front of torch's
    registry also puts it before a global hook registered earlier (the tracer's when it
    watches every optimizer).  Without that registry the hook still runs, later.
    """
    handle = register_optimizer_step_pre_hook(hook)
    try:
        from torch.optim import optimizer as _torch_optimizer

        _torch_optimizer._global_optimizer_pre_hooks.move_to_end(handle.id, last=False)
    except Exception:  # pragma: no cover - a torch without the registry
        pass
    return handle
