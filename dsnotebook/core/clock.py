"""Timestamps that are cheap to take inside hooks and resolved later, in one batch.

On CPU a mark is ``time.perf_counter()``.  On a GPU it is a timing event of the device's
own runtime, recorded on its current stream: ``torch.cuda.Event`` (NVIDIA, and AMD under
ROCm), ``torch.mps.Event`` (Apple), ``torch.xpu.Event`` (Intel).  Taking one costs no
synchronisation; the elapsed times between marks are read after a single synchronisation
of that device when a sampled step is finalised.  A device whose torch module has no
timing events is synchronised before each ``perf_counter`` mark instead (sampled steps only).

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


_GPU_MODULES = ("cuda", "mps", "xpu")


def _runtime(device: torch.device) -> Any:
    """``torch.cuda`` / ``torch.mps`` / ``torch.xpu`` for a device of that type, else None."""
    return getattr(torch, device.type, None) if device.type in _GPU_MODULES else None


def synchronize(device: torch.device | str) -> None:
    """Wait until ``device`` has finished its queued work (nothing to wait for on CPU)."""
    runtime = _runtime(torch.device(device))
    if runtime is not None and hasattr(runtime, "synchronize"):
        runtime.synchronize()


class Clock:
    """perf_counter marks on CPU, the device's timing events on a GPU; resolved to seconds later.

    ``mode`` says which: "host" (perf_counter), "events" (device events), "sync" (a device
    synchronisation before each perf_counter mark, where the runtime has no timing events).
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        runtime = _runtime(self.device)
        self._event = getattr(runtime, "Event", None)
        self.mode = "host" if runtime is None else "events" if self._event is not None else "sync"

    def mark(self) -> Any:
        if self.mode == "events":
            ev = self._event(enable_timing=True)
            ev.record()
            return ev
        if self.mode == "sync":
            synchronize(self.device)
        return time.perf_counter()

    def sync(self) -> None:
        if self.mode != "host":
            synchronize(self.device)

    def seconds(self, a: Any, b: Any) -> float:
        if a is None or b is None:
            return 0.0
        return a.elapsed_time(b) / 1e3 if self.mode == "events" else b - a
