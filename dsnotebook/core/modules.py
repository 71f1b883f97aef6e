"""The one place that walks a model's modules and normalises their names.

``torch.compile`` wraps a model in an ``OptimizedModule`` whose attribute ``_orig_mod``
would otherwise show up in every name; hooks must go on the eager module behind it.
"""
from __future__ import annotations

from torch import nn

#: names of places outside any module, as events report them
LOSS = "(loss)"  # the loss computation after the model's output
INPUT = "(input)"  # the data the model was called with


def display_name(name: str) -> str:
    """Module path as the user wrote it (torch.compile's ``_orig_mod.`` hidden)."""
    name = name.replace("_orig_mod.", "")
    return "" if name == "_orig_mod" else name


def eager_module(model: nn.Module) -> nn.Module:
    """The eager module behind a ``torch.compile``d one (the model itself otherwise)."""
    return getattr(model, "_orig_mod", model) if is_compiled(model) else model


def is_compiled(model: nn.Module) -> bool:
    try:
        from torch._dynamo.eval_frame import OptimizedModule
    except Exception:  # pragma: no cover - dynamo missing on exotic builds
        return False
    return isinstance(model, OptimizedModule)


def named_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every module once (shared ones under their first name), display names."""
    return [(display_name(n), m) for n, m in model.named_modules()]
