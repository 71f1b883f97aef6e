"""Update statistics: ||Δw|| / ||w|| and the fraction of elements that changed, per tensor.

The weights an optimizer is about to update are snapshotted in its pre-step hook and
compared in its post-step hook (one batched backend call per device each).  Without an
optimizer (``tracer.step()`` by hand) the snapshot is taken at the end of one step and
compared at the end of the next, after the user's own update rule ran.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from dsnotebook.core.probe import Probe, ProbeContext, StepBatch
from dsnotebook.params.devices import by_device
from dsnotebook.params.schedule import Schedule

Snapshot = list[tuple[Any, Any, np.ndarray, list[torch.Tensor]]]  # (backend, before, ids, tensors) per device


class UpdateStatsProbe(Probe):
    name = "updates"

    def __init__(self, schedule: Schedule | int = 1) -> None:
        self.schedule = schedule if isinstance(schedule, Schedule) else Schedule(schedule)
        self._pending: dict[int, Snapshot] = {}  # id(optimizer) -> its snapshot
        self._manual: Snapshot | None = None  # tracer.step() without optimizers
        self._saw_optimizer = False

    def attach(self, ctx: ProbeContext) -> None:
        super().attach(ctx)
        self._single = len({p.device for p in ctx.params}) == 1

    def detach(self) -> None:
        self._pending.clear()
        self._manual = None

    def _snapshot(self, ids: list[int]) -> Snapshot:
        out: Snapshot = []
        if not ids:
            return out
        params = [self.ctx.params[i] for i in ids]
        for device, sub in by_device(ids, params, self._single).items():
            tensors = params if len(sub) == len(ids) else [self.ctx.params[i] for i in sub]
            backend = self.ctx.backend(device)
            out.append((backend, backend.snapshot(tensors), np.array(sub, dtype=np.int32), tensors))
        return out

    def _compare(self, step: int, snaps: Snapshot) -> None:
        for backend, before, idx, tensors in snaps:
            values = backend.update_stats(before, tensors)
            self.ctx.submit(values, lambda host, s=step, idx=idx: self.ctx.run.add_updates(s, idx, host))

    def pre_step(self, batch: StepBatch) -> None:
        if batch.optimizer is None:  # by hand: compare with the end of the previous step
            if self._manual is not None and not self._saw_optimizer:
                self._compare(batch.step, self._manual)
            self._manual = None
            return
        self._saw_optimizer = True
        if self.schedule.records(batch.step):
            t0 = time.perf_counter()
            self._pending[id(batch.optimizer)] = self._snapshot(batch.update_ids)
            self.schedule.charge(time.perf_counter() - t0)

    def post_step(self, batch: StepBatch) -> None:
        if batch.optimizer is None:
            if not self._saw_optimizer and self.schedule.records(batch.step + 1):
                self._manual = self._snapshot(list(range(len(self.ctx.params))))
            return
        snaps = self._pending.pop(id(batch.optimizer), None)
        if snaps:
            t0 = time.perf_counter()
            self._compare(batch.step, snaps)
            self.schedule.charge(time.perf_counter() - t0)
