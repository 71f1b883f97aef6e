"""The decorator users put on their functions, with ``.span()`` and ``.calls()``.

Users reach it as ``dsnotebook.trace``: the trace package (``ModelTracer``'s) is a callable
module that forwards to one :class:`FunctionTrace` (see ``dsnotebook/trace/__init__.py``).
The flame view lives in the views layer, above this one: it is passed in as ``viewer``.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, overload

import pandas as pd

from dsnotebook.calls.record import LEVELS, Site
from dsnotebook.calls.recorder import DEFAULT
from dsnotebook.calls.state import OVERHEAD, STATE
from dsnotebook.calls.span import Span
from dsnotebook.calls.wrap import HOOKS, ops_active, wrap

__all__ = ["FunctionTrace"]

#: "trace" records the ops of every n-th call by default (the first call is always sampled)
TRACE_SAMPLE_EVERY = 10


def _level(level: object) -> int:
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    return LEVELS.index(level)  # type: ignore[arg-type]


class FunctionTrace:
    """``@trace``, ``@trace(level="info" | "debug" | "trace", name=None)`` and ``with trace.span(name):``.

    * ``info``: wall time per call (and device time from CUDA events when CUDA is in use);
      nested traced calls and the modules called inside form a call tree.
    * ``debug``: plus inputs and outputs (shapes, dtypes, devices) and their statistics
      (norm, mean, std, absmax, non-finite count, zero fraction) from one batched call.
    * ``trace``: plus the torch ops inside, on every ``sample_every``-th call.

    ``modules``: record module calls inside (None: yes, but a function whose call saw none
    skips the hooks for its next 63 calls; True: always; False: never).  Calls go to the
    attached tracer's Run (its ``calls`` table), else to a default recorder: :meth:`calls`.
    """

    def __init__(self, viewer: Callable[..., Any] | None = None) -> None:
        self._viewer = viewer

    @overload
    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]: ...

    @overload
    def __call__(self, fn: None = None, *, level: str = "info", name: str | None = None, modules: bool | None = None,
                 sample_every: int | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...

    def __call__(self, fn: Any = None, *, level: str = "info", name: str | None = None, modules: bool | None = None,
                 sample_every: int | None = None) -> Any:
        lvl = _level(level)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        if modules not in (None, True, False):
            raise TypeError(f"modules must be None, True or False, got {modules!r}")
        every = TRACE_SAMPLE_EVERY if sample_every is None else sample_every
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"sample_every must be a positive integer, got {sample_every!r}")
        if fn is None:
            return lambda f: self._decorate(f, lvl, name, modules, every)
        if isinstance(fn, str):
            raise TypeError(f"@trace({fn!r}): give the name as a keyword, @trace(name={fn!r}), "
                            f"or a level as @trace(level=...)")
        return self._decorate(fn, lvl, name, modules, every)

    @staticmethod
    def _decorate(fn: Any, level: int, name: str | None, modules: bool | None, every: int) -> Any:
        if isinstance(fn, (staticmethod, classmethod)):
            return type(fn)(FunctionTrace._decorate(fn.__func__, level, name, modules, every))
        if inspect.isclass(fn):
            raise TypeError(f"@trace decorates functions and methods, not the class {fn.__qualname__}: "
                            "put it on the method (e.g. forward)")
        if not callable(fn):
            raise TypeError(f"@trace needs a function or method, got {type(fn).__name__}")
        label = name or getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
        label = label.replace(".<locals>", "")  # outer.<locals>.inner -> outer.inner
        return wrap(fn, Site(label, "function", level, modules=modules, sample_every=every))

    def span(self, name: str, level: str | None = None) -> Span:
        """``with trace.span("branch"):`` times a block as a child of the enclosing call."""
        if not isinstance(name, str):
            raise TypeError(f"span name must be a string, got {type(name).__name__}")
        return Span(name, None if level is None else _level(level))

    # -- the default recorder ------------------------------------------------------------
    def calls(self) -> pd.DataFrame:
        """Calls recorded without a tracer (the Run's ``calls`` columns; ``attrs["overhead"]``: the
        measured cost of tracing; ``attrs["dropped"]``: calls dropped to bound memory)."""
        return DEFAULT.frame()

    def clear(self) -> None:
        """Forget the calls recorded without a tracer."""
        DEFAULT.clear()

    def overhead(self) -> dict[str, Any]:
        """The measured cost of tracing (seconds per call, per kind), subtracted from nested times."""
        return OVERHEAD.as_dict()

    def flame(self, calls: pd.DataFrame | None = None) -> Any:
        """A flame view of ``calls`` (default: :meth:`calls`); a text tree outside a browser."""
        if self._viewer is None:
            raise RuntimeError("no flame viewer: use dsnotebook.trace.flame(), not a bare FunctionTrace")
        return self._viewer(self.calls() if calls is None else calls)

    @property
    def enabled(self) -> bool:
        """False: traced functions call straight through (nothing recorded)."""
        return STATE.enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        STATE.enabled = bool(value)

    @staticmethod
    def active() -> dict[str, int]:
        """What tracing holds right now: module hook holders, op modes, sinks (all 0 when idle)."""
        return {"module_hooks": HOOKS.installed, "op_modes": ops_active(), "sinks": len(STATE.sinks)}

    def __repr__(self) -> str:
        return "<dsnotebook.trace: @trace(level='info'|'debug'|'trace'), trace.span(name), trace.calls()>"
