"""Update statistics: ||Δw|| / ||w|| and the fraction of elements that changed, per tensor.

The weights an optimizer is about to update are snapshotted in its pre-step hook and
compared in its post-step hook (one batched backend call per device each).  Without an
optimizer (``tracer.step()`` by hand) the snapshot is taken at the end of one step and
compared at the end of the next, after the user's own update rule ran.

Cost: the exact comparison reads and writes every weight: 16 bytes per fp32 parameter and
recorded step (snapshot: read + write; comparison: two reads), about 0.5 ms per step on
GPT-2 124M on an H200 -- more than 1% of a 40 ms step by memory traffic alone.  Two
explicit options make it cheaper, each measured in ``benchmarks/kernel_variants.py``:

* ``stride=k``: update statistics on every k-th recorded step only (gradient statistics
  keep the schedule's stride).  Same quantities, fewer steps.
* ``carry=True`` (CUDA kernels only): the comparison also writes the new weights over the
  snapshot, which becomes the next step's "before" when nothing changed the weights in
  between: same parameter objects, same data pointers and the same autograd version
  counters (``p._version``) as right after the comparison.  12 bytes per parameter
  instead of 16, and no snapshot launch.  Not seen by that check: in-place changes made
  through ``p.data`` (``p.data.clamp_()``), whose version counter is not the parameter's;
  with them between two steps the next update would include that change.  Hence opt-in.
"""
from __future__ import annotations

import time
from operator import attrgetter
from typing import Any

import numpy as np
import torch

from dsnotebook.core.probe import Probe, ProbeContext, StepBatch
from dsnotebook.params.devices import by_device
from dsnotebook.params.schedule import Schedule

Snapshot = list[tuple[Any, Any, np.ndarray, list[torch.Tensor]]]  # (backend, before, ids, tensors) per device

_version = attrgetter("_version")
_data_ptr = torch.Tensor.data_ptr


class UpdateStatsProbe(Probe):
    name = "updates"

    def __init__(self, schedule: Schedule | int = 1, *, stride: int = 1, carry: bool = False) -> None:
        self.schedule = schedule if isinstance(schedule, Schedule) else Schedule(schedule)
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.stride = int(stride)
        self.carry = bool(carry)
        self._pending: dict[int, Snapshot] = {}  # id(optimizer) -> its snapshot
        self._carried: dict[int, tuple[tuple[int, ...], Snapshot, tuple, tuple]] = {}  # see _reuse
        self._manual: Snapshot | None = None  # tracer.step() without optimizers
        self._saw_optimizer = False
        self._recorded_steps = 0
        self._last_step = -1
        self.reused = 0  # snapshots skipped thanks to carry (tests, benchmarks)

    def attach(self, ctx: ProbeContext) -> None:
        super().attach(ctx)
        self._single = len({p.device for p in ctx.params}) == 1
        self._lists: dict[tuple[int, ...], list[torch.Tensor]] = {}

    def detach(self) -> None:
        self._pending.clear()
        self._carried.clear()
        self._manual = None

    def _records(self, step: int) -> bool:
        """The schedule's answer, thinned by ``stride`` (counted in recorded steps)."""
        if not self.schedule.records(step):
            return False
        if self.stride == 1:
            return True
        if step != self._last_step:
            self._last_step = step
            self._recorded_steps += 1
        return (self._recorded_steps - 1) % self.stride == 0

    def _params(self, ids: list[int]) -> list[torch.Tensor]:
        """The parameters of ``ids`` as one list object per id set (the backend's cheapest path)."""
        key = tuple(ids)
        found = self._lists.get(key)
        if found is None:
            if len(self._lists) > 64:
                self._lists.clear()
            found = self._lists[key] = [self.ctx.params[i] for i in ids]
        return found

    def _snapshot(self, ids: list[int]) -> Snapshot:
        out: Snapshot = []
        if not ids:
            return out
        params = self._params(ids)
        for device, sub in by_device(ids, params, self._single).items():
            tensors = params if len(sub) == len(ids) else self._params(sub)
            backend = self.ctx.backend(device)
            out.append((backend, backend.snapshot(tensors), np.array(sub, dtype=np.int32), tensors))
        return out

    def _compare(self, step: int, snaps: Snapshot, carry: bool = False) -> None:
        for backend, before, idx, tensors in snaps:
            if carry:
                values = backend.update_stats(before, tensors, carry=True)
            else:
                values = backend.update_stats(before, tensors)
            self.ctx.submit(values, lambda host, s=step, idx=idx: self.ctx.run.add_updates(s, idx, host))

    def _reuse(self, key: int, ids: list[int]) -> Snapshot | None:
        """The snapshot carried from this optimizer's last comparison, if the weights are unchanged since."""
        found = self._carried.pop(key, None)
        if found is None:
            return None
        ids_then, snaps, ptrs, versions = found
        if tuple(ids) != ids_then:
            return None
        for (_, _, _, tensors), p, v in zip(snaps, ptrs, versions):
            if tuple(map(_data_ptr, tensors)) != p or tuple(map(_version, tensors)) != v:
                return None
        self.reused += 1
        return snaps

    def _carries(self, snaps: Snapshot) -> bool:
        return self.carry and all(getattr(backend, "supports_carry", False) for backend, _, _, _ in snaps)

    def pre_step(self, batch: StepBatch) -> None:
        if batch.optimizer is None:  # by hand: compare with the end of the previous step
            if self._manual is not None and not self._saw_optimizer:
                self._compare(batch.step, self._manual)
            self._manual = None
            return
        self._saw_optimizer = True
        key = id(batch.optimizer)
        if self._records(batch.step):
            t0 = time.perf_counter()
            snaps = self._reuse(key, batch.update_ids) if self.carry else None
            self._pending[key] = snaps if snaps is not None else self._snapshot(batch.update_ids)
            self.schedule.charge(time.perf_counter() - t0)
        else:
            self._carried.pop(key, None)  # a step without statistics: the weights move on

    def post_step(self, batch: StepBatch) -> None:
        if batch.optimizer is None:
            if not self._saw_optimizer and self.schedule.records(batch.step + 1):
                self._manual = self._snapshot(list(range(len(self.ctx.params))))
            return
        key = id(batch.optimizer)
        snaps = self._pending.pop(key, None)
        if snaps:
            t0 = time.perf_counter()
            carry = self._carries(snaps)
            self._compare(batch.step, snaps, carry)
            if carry:  # the snapshot now holds these weights: usable next step if they stay put
                self._carried[key] = (tuple(batch.update_ids), snaps,
                                      tuple(tuple(map(_data_ptr, t)) for _, _, _, t in snaps),
                                      tuple(tuple(map(_version, t)) for _, _, _, t in snaps))
            self.schedule.charge(time.perf_counter() - t0)
