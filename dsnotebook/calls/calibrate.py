"""Measure what tracing itself costs, once, when the first traced call starts (a few ms).

For each kind of call (function, span, module, op) two numbers, from empty calls made inside
a traced parent (children are what gets subtracted, and children are always nested):

* ``full``: how much longer the parent's loop of N traced empty calls takes than the same
  loop of undecorated calls, interleaved, median over repetitions;
* ``inner``: the wall time an empty call reports (part of the wrapper runs between its two
  clock readings), median over the calls.

The calibration's own records go nowhere: a sink that drops them is pushed for the time of
the measurement, and every other call is passed on to the sink that was active.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch

from dsnotebook.calls.device import DEVICE
from dsnotebook.calls.record import INFO, TRACE, Site
from dsnotebook.calls.state import OVERHEAD, STATE, current
from dsnotebook.core.hooks import internal

__all__ = ["calibrate"]

N, REPS = 200, 5


class _Discard:
    """Drops the calibration's calls, passes every other call on."""

    def __init__(self, sites: set[int], prev: Any) -> None:
        self.sites, self.prev = sites, prev
        self.kept: list[Any] = []

    def step(self) -> int | None:
        return self.prev.step() if self.prev is not None else None

    def stats(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return self.prev.stats(tensors)

    def add(self, rec: Any) -> None:
        if id(rec.site) in self.sites or (rec.parent is not None and _ours(rec, self.sites)):
            self.kept.append(rec)
        elif self.prev is not None:
            self.prev.add(rec)


def _ours(rec: Any, sites: set[int]) -> bool:
    p = rec.parent
    while p is not None:
        if id(p.site) in sites:
            return True
        p = p.parent
    return False


def _time(fn: Callable[[int], Any], n: int) -> float:
    t = time.perf_counter()
    fn(n)
    return time.perf_counter() - t


def _full(plain: Callable[[int], Any], traced: Callable[[int], Any]) -> float:
    diffs = []
    for _ in range(REPS):
        a = _time(plain, N)
        b = _time(traced, N)
        diffs.append((b - a) / N)
    return max(0.0, statistics.median(diffs))


def _inner(recs: list[Any], kind: str) -> float:
    walls = [r.t1 - r.t0 for r in recs if r.site.kind == kind and getattr(r, "t1", None) is not None]
    return statistics.median(walls) if walls else 0.0


def calibrate(device: bool = False, ops: bool = False) -> None:
    """Fill :data:`~dsnotebook.calls.state.OVERHEAD` (``device``: CUDA events are being taken).

    ``ops``: measure the op mode only (done when the first "trace" call is sampled: the first
    ``TorchFunctionMode`` call costs torch tens of milliseconds of set-up)."""
    from dsnotebook.calls.span import Span  # the wrappers measured here call this module
    from dsnotebook.calls.wrap import wrap

    if ops:
        OVERHEAD.ops_ready = True
    else:
        OVERHEAD.ready, OVERHEAD.device = True, device  # first: the calls below must not calibrate again
    t_start = time.perf_counter()

    def empty() -> None:
        return None

    f_site = Site("(calibration)", "function", INFO, modules=False)
    traced_empty = wrap(empty, f_site)
    ident = torch.nn.Identity()
    with internal():  # made inside the user's call, maybe under a graph capture: not theirs
        x = torch.zeros(1)

    def plain_calls(n: int) -> None:
        for _ in range(n):
            empty()

    def traced_calls(n: int) -> None:
        for _ in range(n):
            traced_empty()

    def spans(n: int) -> None:
        for _ in range(n):
            with Span("(calibration)"):
                pass

    def no_spans(n: int) -> None:
        for _ in range(n):
            pass

    def modules(n: int) -> None:
        for _ in range(n):
            ident(x)

    def op_calls(n: int) -> None:
        for _ in range(n):
            torch.neg(x)

    outer = Site("(calibration outer)", "function", INFO, modules=False)
    outer_mod = Site("(calibration outer)", "function", INFO, modules=True)
    outer_ops = Site("(calibration outer)", "function", TRACE, modules=False, sample_every=1)
    sites = {id(f_site), id(outer), id(outer_mod), id(outer_ops)}
    sink = _Discard(sites, STATE.sink)
    STATE.push(sink)
    outside = current.set(None)  # measured as calls of their own, never children of the user's call
    try:
        with torch.no_grad(), internal():  # not the user's ops: a graph capture running now ignores them
            if ops:
                OVERHEAD.full["op"] = _full(wrap(op_calls, outer), wrap(op_calls, outer_ops))
            else:
                OVERHEAD.full["function"] = _full(wrap(plain_calls, outer), wrap(traced_calls, outer))
                OVERHEAD.full["span"] = _full(wrap(no_spans, outer), wrap(spans, outer))
                OVERHEAD.full["module"] = _full(wrap(modules, outer), wrap(modules, outer_mod))
        for kind in (("op",) if ops else ("function", "span", "module")):
            OVERHEAD.inner[kind] = _inner(sink.kept, kind)
    finally:
        current.reset(outside)
        STATE.remove(sink)
        pairs = [r.ev for r in sink.kept if r.ev is not None]
        DEVICE.wait(pairs)
        for pair in pairs:  # back to the pool
            DEVICE.read(pair)
    key = "ops_calibration_s" if ops else "calibration_s"
    OVERHEAD.measured.update({key: time.perf_counter() - t_start, "calls_per_kind": N * REPS, "device_events": device})
