"""The one packed buffer a rank sends to rank 0: fixed layout, preallocated, numpy views over it.

A packet is a flat ``uint8`` tensor (gloo gathers any dtype; bytes let one buffer mix float64
sums with uint32 histogram counts) made of three parts, each viewed as a numpy structured
array so packing and unpacking are field assignments, never per-value Python:

* ``head``: the sender's rank, its current step and phase, how many slots are filled;
* ``grads``: ``grad_slots`` slots, one per recorded step (``step``, ``count``), each with one
  :data:`RECORD` per parameter tensor: id, flags (contributes to the whole job, carries update
  sums, sharded), the local element count, the five additive gradient sums of the backend layout (sum,
  sumsq, absmax, nonfinite, zeros), the three update sums (diff^2, weight^2, changed) and the
  64 histogram counts (uint32: a local shard of up to 4e9 elements);
* ``phases``: ``phase_slots`` slots of one sampled step's seconds per :data:`PHASE_KEYS`.

Every rank builds the same layout from the same model, so rank 0 reads the others' bytes
with its own views.
"""
from __future__ import annotations

import numpy as np

from dsnotebook.core.clock import PHASES, STEP
from dsnotebook.stats.reference import HIST_BINS, HIST_OFFSET, UPDATE_COLS

__all__ = ["RECORD", "PHASE_KEYS", "FLAG_CONTRIBUTES", "FLAG_UPDATE", "FLAG_SHARDED", "Layout"]

FLAG_CONTRIBUTES = 1  # this rank's sums are part of the whole-job value of the tensor
FLAG_UPDATE = 2  # the record carries update sums (the optimizer updated the tensor)
FLAG_SHARDED = 4  # the tensor is a DTensor sharded over ranks (FSDP2): each rank holds a different part

RECORD = np.dtype([("id", "<i4"), ("flags", "<i4"), ("numel", "<i8"), ("grad", "<f8", (HIST_OFFSET,)),
                   ("upd", "<f8", (UPDATE_COLS,)), ("hist", "<u4", (HIST_BINS,))])
#: seconds per sampled step: the step phases, the step's wall time, and the compute inside the
#: forward and backward passes (leaf modules: no collective waits inside them)
PHASE_KEYS: tuple[str, ...] = (*PHASES, STEP, "fwd_compute", "bwd_compute")
HEAD = np.dtype([("rank", "<i4"), ("status", "<i4"), ("grad_slots", "<i4"), ("phase_slots", "<i4"),
                 ("step", "<i8")])
SLOT = np.dtype([("step", "<i8"), ("count", "<i8")])
PHASE_SLOT = np.dtype([("step", "<i8"), ("seconds", "<f8", (len(PHASE_KEYS),))])


class Layout:
    """Byte offsets of one packet for ``n`` tensors, ``grad_slots`` and ``phase_slots`` slots."""

    def __init__(self, n: int, grad_slots: int, phase_slots: int) -> None:
        if n < 0 or grad_slots < 1 or phase_slots < 1:
            raise ValueError(f"a packet needs n >= 0 and at least one slot each, got {n}, {grad_slots}, {phase_slots}")
        self.n, self.grad_slots, self.phase_slots = n, grad_slots, phase_slots
        self._slots_at = HEAD.itemsize
        self._records_at = self._slots_at + grad_slots * SLOT.itemsize
        self._phases_at = self._records_at + grad_slots * n * RECORD.itemsize
        self.nbytes = self._phases_at + phase_slots * PHASE_SLOT.itemsize

    def views(self, buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(head [1], slot headers [G], records [G, n], phase slots [P]) over a uint8 array of ``nbytes``."""
        if buf.dtype != np.uint8 or buf.shape != (self.nbytes,):
            raise ValueError(f"packet buffer must be uint8[{self.nbytes}], got {buf.dtype}{list(buf.shape)}")
        head = buf[:self._slots_at].view(HEAD)
        slots = buf[self._slots_at:self._records_at].view(SLOT)
        records = buf[self._records_at:self._phases_at].view(RECORD).reshape(self.grad_slots, self.n)
        phases = buf[self._phases_at:].view(PHASE_SLOT)
        return head, slots, records, phases
