"""Steps that ``torch.amp.GradScaler`` skips: make them visible to attached tracers.

Under mixed precision the interesting steps are the ones whose gradients overflowed, and
GradScaler skips ``optimizer.step()`` for exactly those, so no optimizer hook fires and a
tracer would never see them.  While at least one tracer listens, GradScaler's private
``_maybe_opt_step`` is wrapped: after it ran, if it skipped the step, listeners are told
which optimizer it was (its gradients are unscaled by then).  The original method is put
back when the last listener leaves.  If torch renames that method, nothing is wrapped and
tracing goes on without this feature.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

Listener = Callable[[torch.optim.Optimizer], None]

_listeners: list[Listener] = []
_original: Any = None


def _skipped(optimizer_state: dict[str, Any]) -> bool:
    # GradScaler already synchronised on these values to decide; reading them again is cheap.
    return bool(sum(v.item() for v in optimizer_state.get("found_inf_per_device", {}).values()))


def _wrapped(self: Any, optimizer: torch.optim.Optimizer, optimizer_state: dict[str, Any],
             *args: Any, **kwargs: Any) -> Any:
    result = _original(self, optimizer, optimizer_state, *args, **kwargs)
    if _listeners and _skipped(optimizer_state):
        for fn in list(_listeners):
            fn(optimizer)
    return result


def listen(fn: Listener) -> Callable[[], None]:
    """Call ``fn(optimizer)`` for each step GradScaler skips; returns the function that stops it."""
    global _original
    scaler = getattr(torch.amp, "GradScaler", None)
    if scaler is None or not hasattr(scaler, "_maybe_opt_step"):
        return lambda: None
    if _original is None:
        _original = scaler._maybe_opt_step
        scaler._maybe_opt_step = _wrapped
    _listeners.append(fn)

    def stop() -> None:
        global _original
        if fn in _listeners:
            _listeners.remove(fn)
        if not _listeners and _original is not None:
            scaler._maybe_opt_step = _original
            _original = None

    return stop
