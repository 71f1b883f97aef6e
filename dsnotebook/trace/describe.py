"""What the tracer records about the model and the machine before the first step."""
from __future__ import annotations

import datetime
import platform
from typing import Any

import torch
from torch import nn

from dsnotebook.core.modules import display_name
from dsnotebook.perf.hardware import detect_gpu


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


def describe_run(model: nn.Module, params: list[nn.Parameter], optimizers: list[Any],
                 options: dict[str, Any]) -> dict[str, Any]:
    """The Run's metadata: model summary, the tracer's options, versions, the machine."""
    meta: dict[str, Any] = {
        "model": type(model).__name__, "parameters": int(sum(p.numel() for p in params)), "tensors": len(params),
        "trainable": int(sum(p.numel() for p in params if p.requires_grad)),
        "optimizers": [type(o).__name__ for o in optimizers], **options,
        "torch": torch.__version__, "python": platform.python_version(),
        "started": datetime.datetime.now().isoformat(timespec="seconds")}
    try:
        meta["hardware_profile"] = detect_gpu().to_dict()
    except Exception as exc:  # pragma: no cover - exotic platforms: the run is still useful without it
        meta["hardware_profile"] = None
        meta["hardware_error"] = f"{type(exc).__name__}: {exc}"
    return meta
