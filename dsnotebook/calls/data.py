"""What flows in and out of a call at "debug": shapes, dtypes, devices and statistics.

Inputs are taken when the call starts (their tensors, and each tensor's version counter, so
an input the call modified in place is marked ``modified``); outputs when it ends.  The
statistics of every floating-point tensor of the call, inputs and outputs together, come
from ONE batched call of the sink's statistics backend (the tracer's backend, CuPy on CUDA;
without a tracer the torch reference backend) when the call ends: device in, device out,
read by the sink later (no synchronisation per call).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np
import torch

from dsnotebook.core.hooks import flatten_tensors
from dsnotebook.run.fields import GRAD_FIELDS, derive_grad_fields
from dsnotebook.stats.reference import GRAD_COLS

__all__ = ["arg_names", "capture_inputs", "finish_data", "apply_stats", "MAX_TENSORS"]

#: tensors summarised per side of a call (a list of 10,000 tensors is summarised by its first ones)
MAX_TENSORS = 64


def arg_names(fn: Callable[..., Any]) -> tuple[str, ...]:
    """Names of the positional parameters (inputs are shown as ``x``, ``mask``, not ``args[1]``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return ()
    return tuple(p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def _tensors(obj: Any, path: str) -> list[tuple[str, torch.Tensor]]:
    return flatten_tensors(obj, path, limit=MAX_TENSORS)


def capture_inputs(args: tuple, kwargs: dict, names: tuple[str, ...]) -> list[tuple[str, torch.Tensor, int]]:
    """(name, tensor, version) of the tensors among the arguments."""
    out: list[tuple[str, torch.Tensor, int]] = []
    for i, a in enumerate(args):
        for p, t in _tensors(a, names[i] if i < len(names) else f"args[{i}]"):
            out.append((p, t, _version(t)))
    for k, v in kwargs.items():
        for p, t in _tensors(v, k):
            out.append((p, t, _version(t)))
    return out[:MAX_TENSORS]


def _version(t: torch.Tensor) -> int:
    try:
        return t._version
    except Exception:  # tensors without a version counter (some subclasses)
        return -1


def _describe(name: str, t: torch.Tensor) -> dict[str, Any]:
    return {"name": name, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""), "device": str(t.device)}


def _statable(t: torch.Tensor) -> bool:
    return (t.is_floating_point() and t.layout == torch.strided and t.device.type != "meta"
            and not isinstance(t, torch.nn.parameter.UninitializedTensorMixin))


def finish_data(inputs: list[Any] | None, output: Any, has_output: bool,
                stats: Callable[[list[torch.Tensor]], torch.Tensor] | None) -> tuple[list, list, Any]:
    """Summaries of inputs and outputs, plus the pending statistics ``(values, targets)``: values is
    the backend's device tensor (one row per target summary), or None when nothing is statable."""
    ins = []
    statable: list[tuple[dict[str, Any], torch.Tensor]] = []
    for item in inputs or ():
        if isinstance(item, dict):  # the capture failed: its error, as it is
            ins.append(item)
            continue
        name, t, version = item
        d = _describe(name, t)
        if version >= 0 and _version(t) != version:
            d["modified"] = True  # changed in place by the call: statistics are of the new values
        ins.append(d)
        if _statable(t):
            statable.append((d, t))
    outs = []
    if has_output:
        for name, t in _tensors(output, "out"):
            d = _describe(name, t)
            outs.append(d)
            if _statable(t):
                statable.append((d, t))
    pending = None
    if stats is not None and statable and not torch.compiler.is_compiling():
        with torch.no_grad():
            values = stats([t for _, t in statable])
        pending = (values, [d for d, _ in statable], np.array([t.numel() for _, t in statable], np.float64))
    return ins, outs, pending


def apply_stats(host: np.ndarray, targets: list[dict[str, Any]], numels: np.ndarray) -> None:
    """Put the derived statistics (GRAD_FIELDS: norm, mean, std, absmax, nonfinite, zero_frac) into
    the summaries, from the backend's raw rows on the host."""
    raw = np.asarray(host, dtype=np.float64).reshape(len(targets), GRAD_COLS)
    vals = derive_grad_fields(raw, numels)
    for d, row in zip(targets, vals):
        for k, f in enumerate(GRAD_FIELDS):
            v = float(row[k])
            d[f] = int(v) if f == "nonfinite" else v
