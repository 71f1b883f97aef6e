"""Timestamps that are cheap to take inside hooks and resolved later, in one batch.

On CPU a mark is ``time.perf_counter()``.  On CUDA it is an event recorded on the current
stream: taking it costs no synchronisation, and the elapsed times between marks are read
after a single ``torch.cuda.synchronize()`` when a sampled step is finalised.
"""
from __future__ import annotations

import time
from typing import Any

import torch


class Clock:
    """perf_counter marks on CPU, CUDA events on GPU; resolved to seconds later."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def mark(self) -> Any:
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def seconds(self, a: Any, b: Any) -> float:
        if a is None or b is None:
            return 0.0
        return a.elapsed_time(b) / 1e3 if self.cuda else b - a
