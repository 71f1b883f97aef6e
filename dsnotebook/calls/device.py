"""Device time of traced calls: CUDA events from a preallocated pool, read once per step.

A traced call on a machine whose CUDA context is initialised takes a pair of timing events
from the pool and records one on the current stream when it starts and one when it ends:
no synchronisation per call.  The pairs are read in one batch (``resolve``) when the tracer
closes a step or when ``dsnotebook.trace.calls()`` is asked, and go back to the pool.  The
pool is preallocated in chunks (creating an event costs more than recording one) up to
``cap`` pairs; a call that finds it empty gets no device time (``device_s`` None) rather than
an allocation on the hot path.

The event class is injectable, so everything here is tested on CPU with a fake event; the
real one is ``torch.cuda.Event(enable_timing=True)``.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Iterable

import torch

__all__ = ["EventPool", "DEVICE"]


class EventPool:
    """Timing event pairs for traced calls (``factory()`` makes one event)."""

    def __init__(self, factory: Callable[[], Any] | None = None, chunk: int = 256, cap: int = 65536) -> None:
        self.factory = factory
        self.chunk, self.cap = chunk, cap
        self._free: list[tuple[Any, Any]] = []
        self._made = 0
        self._lock = threading.Lock()
        #: True while traced calls take events (CUDA initialised, or forced by a test)
        self.on = False
        self.forced: bool | None = None
        #: calls that found the pool empty
        self.missed = 0

    def refresh(self) -> bool:
        """Whether calls starting now take events: CUDA is initialised (checked at root calls)."""
        if self.forced is not None:
            self.on = self.forced
        elif not self.on:
            self.on = torch.cuda.is_initialized()
        return self.on

    def _event(self) -> Any:
        if self.factory is not None:
            return self.factory()
        return torch.cuda.Event(enable_timing=True)

    def _grow(self) -> None:
        n = min(self.chunk, self.cap - self._made)
        if n > 0:
            self._free.extend((self._event(), self._event()) for _ in range(n))
            self._made += n

    def start(self) -> tuple[Any, Any] | None:
        """A pair whose first event is recorded now, or None when the pool is exhausted."""
        free = self._free
        try:
            pair = free.pop()
        except IndexError:
            with self._lock:
                if not free:
                    self._grow()
                if not free:
                    self.missed += 1
                    return None
                pair = free.pop()
        pair[0].record()
        return pair

    @staticmethod
    def stop(pair: tuple[Any, Any] | None) -> None:
        if pair is not None:
            pair[1].record()

    @staticmethod
    def done(pair: tuple[Any, Any] | None) -> bool:
        """Whether the pair's end event has completed (no pair: nothing to wait for)."""
        return pair is None or bool(pair[1].query())

    @staticmethod
    def wait(pairs: Iterable[tuple[Any, Any] | None]) -> None:
        """Block until the given pairs completed (in practice one wait: the rest are done by then)."""
        for p in pairs:
            if p is not None and not p[1].query():
                p[1].synchronize()

    def read(self, pair: tuple[Any, Any] | None) -> float | None:
        """Seconds between a completed pair's events; the pair goes back to the pool."""
        if pair is None:
            return None
        seconds = pair[0].elapsed_time(pair[1]) / 1e3
        self._free.append(pair)
        return seconds

    @property
    def size(self) -> int:
        """Pairs made so far (free or in use)."""
        return self._made

    @property
    def free(self) -> int:
        return len(self._free)


#: the pool every traced call uses
DEVICE = EventPool()
