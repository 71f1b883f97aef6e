"""Timestamps that are cheap to take inside hooks and resolved later, in one batch.

On CPU a mark is ``time.perf_counter()``.  On CUDA it is an event recorded on the current
stream: taking it costs no synchronisation, and the elapsed times between marks are read
after a single ``torch.cuda.synchronize()`` when a sampled step is finalised.

The names of a step's phases live here, once: the timing probe writes them, the
measures read them, and the performance panel receives them (widgets import only core).
"""
from __future__ import annotations

import time
from typing import Any

import torch

#: The parts of one training step, in display order (rows of module "(step)" in the Run's
#: ``timings`` table).  ``data``: end of the previous optimizer step to the first forward;
#: ``fwd``/``bwd``: the model's forward and backward passes; ``opt``: every optimizer's
#: update; ``comm``: collective time (overlaps ``bwd``: not part of the sum); ``tracer``:
#: dsnotebook's own work (hook installation, statistics at the optimizer hooks); ``other``:
#: the rest of the user's loop (loss, clipping, logging).
PHASES: tuple[str, ...] = ("data", "fwd", "bwd", "opt", "comm", "tracer", "other")
#: The whole step's wall time, written beside the phases (tracer work included).
STEP = "step"
#: Phases that add up to the step's wall time (``comm`` overlaps backward).
ADDITIVE: tuple[str, ...] = tuple(p for p in PHASES if p != "comm")
#: What each phase is called where users read it.
PHASE_LABELS: dict[str, str] = {"data": "data loading", "fwd": "forward", "bwd": "backward", "opt": "optimizer",
                                "comm": "communication", "tracer": "dsnotebook", "other": "other host"}


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
