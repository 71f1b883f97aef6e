"""Per-layer sensitivity: the metric (and the output deviation) when only one layer is compressed.

A layer whose compression alone costs much accuracy is the one to leave in float (or prune
less); one that costs nothing can be compressed harder.  Each row compresses one layer of a fresh
copy of the original with one method and measures it exactly as the table measures whole models.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable

import torch
from torch import nn

from dsnotebook.compress.measure import call_metric, deviation
from dsnotebook.compress.methods import Context, Method, NotApplicable

__all__ = ["layer_sensitivity"]


def layer_sensitivity(reference: nn.Module, methods: list[Method], ctx: Context, reference_out: Any,
                      eval_fn: Callable[[nn.Module], Any] | None, base_metric: float,
                      max_layers: int = 64) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, problems): one row per (method, layer) for every method that compresses single layers."""
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for m in methods:
        if not m.per_layer:
            continue
        try:
            names = m.layers(reference, ctx)
        except NotApplicable:
            continue
        except Exception as exc:
            problems.append(f"sensitivity of {m.name}: {type(exc).__name__}: {exc}")
            continue
        for name in names[:max_layers]:
            try:
                out = m.apply(copy.deepcopy(reference), ctx, only={name})
                model = out.model.eval()
                with torch.no_grad():
                    dev = deviation(reference_out, model(*ctx.args))
                metric = call_metric(eval_fn, model, f"{m.name} ({name} only)") if eval_fn is not None else math.nan
            except NotApplicable:
                continue
            except Exception as exc:
                problems.append(f"sensitivity of {m.name} on {name}: {type(exc).__name__}: {exc}")
                continue
            rows.append({"method": m.name, "layer": name, "type": type(reference.get_submodule(name)).__name__,
                         "metric": metric, "metric_delta": metric - base_metric, **dev})
        if len(names) > max_layers:
            problems.append(f"sensitivity of {m.name}: the first {max_layers} of {len(names)} layers")
    return rows, problems
