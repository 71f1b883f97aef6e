"""Where a traced call is and where it goes: the call-tree context, call ids, the active sink.

The enclosing call lives in a :class:`contextvars.ContextVar`, so the tree is right per
thread and per asyncio task.  A finished call goes to the active sink: the probe of the last
attached :class:`~dsnotebook.trace.ModelTracer` (its ``calls`` table, with the tracer's step),
or the default recorder that ``dsnotebook.trace.calls()`` reads.  A sink provides
``step()`` (the training step now, or None), ``add(call)`` (a finished call) and
``stats(tensors)`` (one batched statistics call, device in, device out).
"""
from __future__ import annotations

import contextvars
import itertools
import threading
from typing import Any

from dsnotebook.calls.record import Call

__all__ = ["current", "next_id", "STATE", "Overhead", "OVERHEAD"]

#: the call running in this thread / task (None outside every traced call)
current: "contextvars.ContextVar[Call | None]" = contextvars.ContextVar("dsnotebook_call", default=None)
#: call ids, unique in the process (``next`` on an itertools counter is atomic)
next_id = itertools.count(1).__next__


class State:
    """Switch and sinks shared by every traced function."""

    def __init__(self) -> None:
        #: False: traced functions just call through (for a quick A/B of the tracing cost)
        self.enabled = True
        self._lock = threading.Lock()
        self._sinks: list[Any] = []
        self.default: Any = None
        #: where finished calls go now: the last attached sink, else the default recorder
        self.sink: Any = None

    def set_default(self, sink: Any) -> None:
        self.default = sink
        with self._lock:
            self.sink = self._sinks[-1] if self._sinks else sink

    def push(self, sink: Any) -> None:
        with self._lock:
            self._sinks.append(sink)
            self.sink = sink

    def remove(self, sink: Any) -> None:
        with self._lock:
            self._sinks = [s for s in self._sinks if s is not sink]
            self.sink = self._sinks[-1] if self._sinks else self.default

    @property
    def sinks(self) -> tuple[Any, ...]:
        return tuple(self._sinks)


STATE = State()


class Overhead:
    """The cost of tracing itself, measured once when the first traced call starts.

    Per kind of call: ``inner`` is the wall time an empty call reports (part of the wrapper
    runs between its two clock readings) and ``full`` what one traced call costs its caller
    beyond the undecorated call.  A call's reported time has its own ``inner`` and the
    ``full`` cost of every traced call below it subtracted (clipped at 0), so nesting does not
    inflate small parents.
    """

    KINDS = ("function", "span", "module", "op")

    def __init__(self) -> None:
        self.ready = False
        self.ops_ready = False  # the op mode is measured when the first "trace" call is sampled
        self.device = False  # measured with CUDA events taken (they cost; measured again when CUDA comes up)
        self.inner: dict[str, float] = {k: 0.0 for k in self.KINDS}
        self.full: dict[str, float] = {k: 0.0 for k in self.KINDS}
        self.measured: dict[str, Any] = {}

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: seconds per kind (what the flame view and the run's metadata show)."""
        return {"ready": self.ready, "inner_s": dict(self.inner), "call_s": dict(self.full), **self.measured}

    def call_cost(self) -> float:
        """What one traced call at "info" costs its caller (the headline number)."""
        return self.full["function"]


OVERHEAD = Overhead()
