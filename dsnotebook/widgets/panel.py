"""What the panels share: setting their data traits in one message, and a text fallback.

A panel's data traits are listed in ``STATE``; :func:`set_data` sets the ones that changed
in one comm message.  It is deliberately not ``set_state``: ipywidgets applies the browser's
updates (a click's selection) through ``Widget.set_state``, and shadowing it drops them.
:func:`with_text_fallback` puts a readable summary into ``text/plain`` beside the widget view,
what terminals, scripts and nbconvert show.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence


def set_data(widget: Any, state: dict[str, Any], allowed: Sequence[str]) -> None:
    """Set ``state``'s traits on ``widget`` in one message (only those that changed)."""
    unknown = set(state) - set(allowed)
    if unknown:
        raise KeyError(f"{type(widget).__name__}.set_data: unknown keys {sorted(unknown)}; "
                       f"expected some of {tuple(allowed)}")
    with widget.hold_sync():
        for k, v in state.items():
            if getattr(widget, k) != v:
                setattr(widget, k, v)


def with_text_fallback(bundle: Any, fallback: Callable[[], str] | None, what: str) -> Any:
    """``bundle`` (a widget's mime bundle, or (data, metadata)) with ``text/plain`` from ``fallback``."""
    if fallback is None:
        return bundle
    try:
        text = str(fallback())
    except Exception as exc:  # a broken fallback must not break display
        text = f"{what}: text summary failed ({type(exc).__name__}: {exc})"
    if isinstance(bundle, tuple):
        data, meta = bundle
        return {**(data or {}), "text/plain": text}, meta
    return {**(bundle or {}), "text/plain": text}
