"""What the tracer records about the model and the machine before the first step."""
from __future__ import annotations

import os
import platform
from typing import Any

import torch
from torch import nn

from dsnotebook.core.modules import display_name


def describe_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[dict[str, Any]]]:
    """Unique parameters in model order, named by module path (shared ones listed once)."""
    seen: dict[int, int] = {}
    params: list[nn.Parameter] = []
    rows: list[dict[str, Any]] = []
    for name, p in model.named_parameters(remove_duplicate=False):
        name = display_name(name)
        if id(p) in seen:
            rows[seen[id(p)]]["aliases"].append(name)
            continue
        module, _, attr = name.rpartition(".")
        seen[id(p)] = len(rows)
        params.append(p)
        rows.append({"tensor_id": len(rows), "name": name, "module": module or "(root)", "tensor": attr,
                     "shape": list(p.shape), "dtype": str(p.dtype).replace("torch.", ""),
                     "numel": p.numel(), "trainable": bool(p.requires_grad), "aliases": []})
    return params, rows


def hardware_info() -> dict[str, Any]:
    """A few facts about the machine for the Run's metadata (``dsnotebook.perf.hardware`` has the full profile)."""
    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                            "cuda": torch.cuda.is_available()}
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda_version"] = torch.version.cuda
    return info
