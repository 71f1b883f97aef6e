"""Finished calls -> rows of the ``calls`` table, in batches.

A sink keeps the finished :class:`~dsnotebook.calls.record.Call` objects as they are (the hot
path only appends) and turns them into rows when asked: at a step boundary (the tracer's
probe) or when ``dsnotebook.trace.calls()`` is called.  Then, for the whole batch, the CUDA
event pairs that completed are read (``wait``: after one synchronisation), the "debug"
statistics go to the host in one copy per device, and the instrumentation cost is subtracted
from each wall time (see :class:`~dsnotebook.calls.state.Overhead`).
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Iterable

import numpy as np
import torch

from dsnotebook.calls.data import apply_stats
from dsnotebook.calls.device import DEVICE
from dsnotebook.calls.record import LEVELS, Call
from dsnotebook.calls.state import OVERHEAD

__all__ = ["Collector", "to_row", "fetch_stats"]


def to_row(rec: Call, origin: float, device_s: float | None) -> dict[str, Any]:
    """The row of a finished call (times in seconds; ``start_s`` from the sink's origin, less the
    tracing time spent in its root call before it started, so a call's children line up with it)."""
    kind = rec.site.kind
    raw = max(0.0, rec.t1 - rec.t0)
    corr = min(raw, OVERHEAD.inner[kind] + rec.nested)
    parent = rec.parent
    return {"step": rec.step, "call": rec.id, "parent": None if parent is None else parent.id, "name": rec.site.name,
            "kind": kind, "level": LEVELS[rec.level], "depth": rec.depth, "thread": rec.thread,
            "start_s": rec.t0 - origin - rec.skew, "wall_s": raw - corr, "device_s": device_s,
            "inputs": rec.inputs if isinstance(rec.inputs, list) else None,
            "outputs": rec.outputs if isinstance(rec.outputs, list) else None, "error": rec.error,
            "overhead_s": corr}


def fetch_stats(recs: Iterable[Call]) -> list[tuple[torch.Tensor, Callable[[np.ndarray], None]]]:
    """The batch's pending statistics, one (device tensor, apply(host)) per device: callers copy each
    tensor to the host (at once, or without a sync through the tracer's copier) and call apply."""
    groups: dict[torch.device, list[Call]] = {}
    for r in recs:
        if r.stats is not None:
            groups.setdefault(r.stats[0].device, []).append(r)
    out = []
    for device, rs in groups.items():
        values = torch.cat([r.stats[0].reshape(len(r.stats[1]), -1) for r in rs])
        parts = [(r.stats[1], r.stats[2]) for r in rs]
        for r in rs:
            r.stats = None

        def apply(host: np.ndarray, parts: list = parts) -> None:
            i = 0
            for targets, numels in parts:
                apply_stats(host[i:i + len(targets)], targets, numels)
                i += len(targets)

        out.append((values, apply))
    return out


class Collector:
    """Finished calls of one sink: bounded, converted to rows on demand."""

    def __init__(self, max_calls: int) -> None:
        if isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 1:
            raise ValueError(f"max_calls must be a positive integer, got {max_calls!r}")
        self.max_calls = max_calls
        self.calls: deque[Call] = deque(maxlen=max_calls)
        #: calls dropped to keep memory bounded (the oldest go first)
        self.dropped = 0
        self._events = 0

    def add(self, rec: Call) -> None:
        calls = self.calls
        if len(calls) == self.max_calls:
            self.dropped += 1
            old = calls[0]
            if old.ev is not None and not isinstance(old.ev, float):
                DEVICE.wait([old.ev])
                DEVICE.read(old.ev)  # back to the pool
        calls.append(rec)
        if rec.ev is not None:
            self._events += 1
            if self._events >= 1024:  # give completed event pairs back to the pool now and then
                self._events = 0
                self.harvest()

    def harvest(self) -> None:
        """Read the completed CUDA event pairs (device time kept on the call as seconds)."""
        for r in list(self.calls):
            ev = r.ev
            if ev is not None and not isinstance(ev, float) and DEVICE.done(ev):
                r.ev = DEVICE.read(ev)

    def take(self, wait: bool) -> list[Call]:
        """Remove and return the calls whose device times are known (all of them with ``wait``).

        Other threads may append meanwhile: calls are popped from the left one by one (atomic),
        and those still waiting for the device go back at the right."""
        q = self.calls
        calls = [q.popleft() for _ in range(len(q))]
        if wait:
            DEVICE.wait([r.ev for r in calls if r.ev is not None and not isinstance(r.ev, float)])
        ready = []
        for r in calls:
            ev = r.ev
            if ev is None or isinstance(ev, float) or DEVICE.done(ev):
                ready.append(r)
            else:
                q.append(r)
        return ready

    @staticmethod
    def rows(calls: list[Call], origin: float) -> list[dict[str, Any]]:
        out = []
        for r in calls:
            ev = r.ev
            dev = ev if isinstance(ev, float) else (DEVICE.read(ev) if ev is not None else None)
            r.ev = None
            out.append(to_row(r, origin, dev))
        return out
