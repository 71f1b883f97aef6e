"""The training thread's half of offloaded CPU statistics: shared slots, jobs, answers.

A :class:`Region` is one tensor layout's shared memory (a memfd the helper maps too):
``SLOTS`` slots, each with two float32 input arrays (gradients, or weights before and
after an optimizer step) and one float64 output array.  The training thread fills a slot
with one ``torch._foreach_copy_`` and sends a job (:mod:`dsnotebook.stats.helper`); the
:class:`HelperJob` it gets back is a :class:`~dsnotebook.core.transfer.Deferred`.  Taking
its result copies the answer out and frees the slot.  A job whose helper went away is
computed here from the same slot (same numpy code, same numbers).
"""
from __future__ import annotations

import itertools
import mmap
import os
from typing import Any, Callable, Sequence

import numpy as np
import torch

from dsnotebook.core.transfer import Deferred
from dsnotebook.stats import hostmath
from dsnotebook.stats.helper import HelperProcess
from dsnotebook.stats.layout import GRAD_COLS, UPDATE_COLS

SLOTS = 6  # jobs of about three steps in flight; more means the helper fell behind
MAX_TOTAL = 1 << 22  # elements per layout above which the statistics stay in this process
_ids = itertools.count(1)
NONFINITE = object()  # grad_job's answer when a gradient is not finite (the exact path decides)


def _align(nbytes: int) -> int:
    return (nbytes + 63) // 64 * 64


class Region:
    """Shared slots of one layout (see the module docstring)."""

    def __init__(self, shapes: Sequence[torch.Size], seg: hostmath.Segments) -> None:
        self.lid, self.seg = next(_ids), seg
        total, n = seg.total, seg.n
        self.slot_bytes = 2 * _align(4 * total) + _align(8 * n * GRAD_COLS)
        self.fd = os.memfd_create("dsnotebook-stats", os.MFD_CLOEXEC)
        os.ftruncate(self.fd, self.slot_bytes * SLOTS)
        self.map = mmap.mmap(self.fd, self.slot_bytes * SLOTS)
        self.arrays: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.views: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []
        for k in range(SLOTS):
            base = k * self.slot_bytes
            a = np.frombuffer(self.map, np.float32, total, base)
            b = np.frombuffer(self.map, np.float32, total, base + _align(4 * total))
            out = np.frombuffer(self.map, np.float64, n * GRAD_COLS, base + 2 * _align(4 * total)).reshape(n, GRAD_COLS)
            self.arrays.append((a, b, out))
            self.views.append(tuple([v.view(s) for v, s in zip(torch.from_numpy(x).split(seg.sizes), shapes)]
                                    for x in (a, b)))
        self.free = list(range(SLOTS - 1, -1, -1))
        self.generation = 0  # helper generation this region is registered with
        self.scratch: hostmath.Scratch | None = None  # for jobs computed here after all

    def __del__(self) -> None:
        try:
            os.close(self.fd)
        except (OSError, AttributeError):
            pass

    def ready(self, helper: HelperProcess) -> bool:
        """Registered with the running helper (registers when it restarted)."""
        if self.generation != helper.generation:
            if not helper.register(self.lid, self.fd, self.seg.sizes, self.slot_bytes, SLOTS):
                return False
            self.generation = helper.generation
        return True

    def fill(self, slot: int, which: int, tensors: Sequence[torch.Tensor]) -> np.ndarray:
        with torch.no_grad():
            torch._foreach_copy_(self.views[slot][which], list(tensors))
        return self.arrays[slot][which]

    def compute_here(self, kind: bytes, slot: int) -> np.ndarray | None:
        if self.scratch is None:
            self.scratch = hostmath.Scratch(self.seg.total)
        a, b, _ = self.arrays[slot]
        if kind == b"G":
            return hostmath.grad_stats(a, self.seg, self.scratch)
        return hostmath.update_stats(a, b, self.seg, self.scratch)


class HelperJob(Deferred):
    """Statistics of one slot, being computed by the helper (see the module docstring)."""

    __slots__ = ("helper", "region", "slot", "kind", "exact", "answered", "status", "text", "result")
    LOST = -1

    def __init__(self, helper: HelperProcess, region: Region, slot: int, kind: bytes,
                 exact: Callable[[torch.Tensor, list[torch.Tensor]], torch.Tensor] | None) -> None:
        self.helper, self.region, self.slot, self.kind, self.exact = helper, region, slot, kind, exact
        self.answered, self.status, self.text = False, 0, ""
        self.result: torch.Tensor | None = None

    def answer(self, status: int, text: str) -> None:
        self.answered, self.status, self.text = True, status, text

    def lost(self) -> None:
        self.answer(self.LOST, "")

    def done(self) -> bool:
        if not self.answered:
            self.helper.poll()
        return self.answered

    def wait(self) -> torch.Tensor:
        if self.result is None:
            if not self.answered:
                self.helper.wait_for(self)
                if not self.answered:
                    self.lost()
            self.result = self._take()
        return self.result

    def _take(self) -> torch.Tensor:
        region, slot = self.region, self.slot
        try:
            cols = GRAD_COLS if self.kind == b"G" else UPDATE_COLS
            if self.status == 0:
                return torch.from_numpy(region.arrays[slot][2][:, :cols].copy())
            if self.status == 2:
                raise RuntimeError(f"statistics helper process failed: {self.text.strip().splitlines()[-1:]}")
            out = region.compute_here(self.kind, slot) if self.status == self.LOST else None
            if out is not None:
                return torch.from_numpy(out)
            assert self.exact is not None  # an update with non-finite weights: the exact path, on the copies
            a, b, _ = region.arrays[slot]
            return self.exact(torch.from_numpy(a), [v.view(-1) for v in torch.from_numpy(b).split(region.seg.sizes)])
        finally:
            region.free.append(slot)


def take_slot(region: Region | None, helper: HelperProcess | None) -> int | None:
    """A free slot of a region registered with a running helper, or None (compute here)."""
    if region is None or helper is None or not region.free or not helper.available() or not region.ready(helper):
        return None
    return region.free.pop()


def grad_job(region: Region, slot: int, helper: HelperProcess, tensors: Sequence[torch.Tensor]) -> Any:
    """Copy gradients into ``slot`` and send the job; NONFINITE when one is not finite."""
    buf = region.fill(slot, 0, tensors)
    if not hostmath.all_finite(buf):
        region.free.append(slot)
        return NONFINITE
    return submit(HelperJob(helper, region, slot, b"G", None))


def submit(job: HelperJob) -> HelperJob:
    """Send ``job``; one whose helper is gone (or restarted before it was registered) is computed here."""
    helper = job.helper
    if not (helper.available() and job.region.ready(helper) and helper.submit(job, job.kind, job.region.lid, job.slot)):
        job.lost()  # computed here when taken
    return job
