"""What the layers above lend the compress layer: the tracer and the widget.

The compress layer sits below ``trace`` and ``views`` and may not import them; the package's front
door (``dsnotebook/__init__.py``) hands them in with :func:`configure`: ``ModelTracer`` (the
distillation student's training is traced with it) and the compression widget's factory
(``result.widget()``).
"""
from __future__ import annotations

from typing import Any, Callable

__all__ = ["configure", "tracer_factory", "widget_factory"]

_SET: dict[str, Callable[..., Any] | None] = {"tracer": None, "widget": None}
_UNSET: Any = object()


def configure(*, tracer: Callable[..., Any] | None = _UNSET, widget: Callable[..., Any] | None = _UNSET) -> None:
    """``tracer(model, optimizer)`` -> a context manager that traces training (``ModelTracer``);
    ``widget(result, on_choose=None)`` -> the compression widget."""
    if tracer is not _UNSET:
        _SET["tracer"] = tracer
    if widget is not _UNSET:
        _SET["widget"] = widget


def tracer_factory() -> Callable[..., Any] | None:
    return _SET["tracer"]


def widget_factory() -> Callable[..., Any] | None:
    return _SET["widget"]
