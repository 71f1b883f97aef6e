"""What the table's columns measure, one function each: serialized size, stored weights, zeros,
output deviation from the original, the user's metric.  Nothing here is estimated: sizes are the
bytes ``torch.save`` writes, deviations are computed on the example inputs.
"""
from __future__ import annotations

import io
import math
import numbers
from typing import Any, Callable

import torch
from torch import nn

from dsnotebook.core.hooks import flatten_tensors

__all__ = ["serialized_bytes", "weight_counts", "deviation", "batch_of", "batch_size", "call_metric"]


def serialized_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: what a checkpoint of the model takes."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def _tensors(v: Any) -> list[torch.Tensor]:
    if isinstance(v, torch.Tensor):
        return [v]
    if isinstance(v, (tuple, list)):
        return [t for x in v for t in _tensors(x)]
    return []


def weight_counts(model: nn.Module) -> tuple[int, int]:
    """(stored weight and bias elements, how many of them are non-zero), over the state dict
    (quantized and packed weights included; BatchNorm statistics and quantization scales not)."""
    total = nonzero = 0
    seen: set[tuple[int, tuple[int, ...]]] = set()
    for key, v in model.state_dict().items():
        leaf = key.rsplit(".", 1)[-1]
        if leaf not in ("weight", "bias", "_packed_params", "in_proj_weight", "in_proj_bias"):
            continue
        for t in _tensors(v):
            try:  # a tied weight (GPT-2's lm_head and wte) appears under two keys: count it once
                key_ = (t.data_ptr(), tuple(t.shape))
            except (RuntimeError, NotImplementedError, TypeError):
                key_ = (id(t), tuple(t.shape))
            if key_ in seen:
                continue
            seen.add(key_)
            n = t.numel()
            total += n
            try:
                plain = t.int_repr() if t.is_quantized else t
                nonzero += int(torch.count_nonzero(plain)) if plain.dtype != torch.bool else n
            except (RuntimeError, NotImplementedError, TypeError):  # tensor subclasses without count_nonzero
                nonzero += n
    return total, nonzero


def _float_outputs(out: Any) -> list[tuple[str, torch.Tensor]]:
    return [(p, t) for p, t in flatten_tensors(out) if t.is_floating_point()]


def deviation(reference_out: Any, out: Any) -> dict[str, float]:
    """max |out - reference| over every float output, the same relative to max |reference|, and for
    class scores (a [N, C] or [N, T, V] output) the fraction of rows whose arg-max agrees with the reference."""
    ref, new = _float_outputs(reference_out), _float_outputs(out)
    if len(ref) != len(new) or any(a.shape != b.shape for (_, a), (_, b) in zip(ref, new)):
        shapes = ([list(t.shape) for _, t in ref], [list(t.shape) for _, t in new])
        raise ValueError(f"the compressed model's outputs {shapes[1]} differ in shape from the original's {shapes[0]}")
    if not ref:
        return {"max_abs_dev": math.nan, "rel_dev": math.nan, "agreement": math.nan}
    max_abs = max(float((b.float() - a.float()).abs().max()) if a.numel() else 0.0 for (_, a), (_, b) in zip(ref, new))
    scale = max(float(a.float().abs().max()) if a.numel() else 0.0 for _, a in ref)
    agree = math.nan
    a, b = ref[0][1], new[0][1]
    if a.dim() in (2, 3) and a.shape[-1] > 1:  # class scores [N, C] or token logits [N, T, V]
        agree = float((a.argmax(dim=-1) == b.argmax(dim=-1)).float().mean())
    return {"max_abs_dev": max_abs, "rel_dev": max_abs / scale if scale > 0 else math.nan, "agreement": agree}


def batch_size(args: tuple[Any, ...]) -> int:
    for a in args:
        if isinstance(a, torch.Tensor) and a.dim() > 0:
            return int(a.shape[0])
    raise ValueError("example_inputs holds no tensor with a batch dimension")


def batch_of(args: tuple[Any, ...], n: int) -> tuple[Any, ...]:
    """The first ``n`` samples of every tensor argument that has the batch dimension."""
    size = batch_size(args)
    return tuple(a[:n] if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == size else a for a in args)


def call_metric(eval_fn: Callable[[nn.Module], Any], model: nn.Module, which: str) -> float:
    """``eval_fn(model)`` as a float, or an error that says what went wrong and where."""
    try:
        with torch.no_grad():
            v = eval_fn(model)
    except Exception as exc:
        raise RuntimeError(f"eval_fn raised on the {which} model: {type(exc).__name__}: {exc} "
                           "(compress calls eval_fn(model) once per model and expects a number)") from exc
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"eval_fn must return a number (e.g. accuracy); on the {which} model it returned "
                        f"{type(v).__name__}: {v!r:.60}")
    return float(v)
