"""Gradient statistics of every parameter, read once per recorded step.

Right before an optimizer updates its parameters every ``p.grad`` it owns is final, so
no per-module hook is needed: the probe reads the gradients the tracer lists in the step
batch (those not read earlier in this step) in one batched backend call per device.
Results travel to the host asynchronously and land in the Run's ``grads`` table.

An optimizer that unscales inside its own fused step under ``torch.amp.GradScaler``
carries the loss scale as ``optimizer.grad_scale`` while its gradients are still scaled:
the scale travels to the host with the statistics (no synchronisation) and is divided out
there (:mod:`dsnotebook.stats.scaling`), so the recorded values are the true gradients'.

On steps the schedule does not record (``every`` > 1 or "auto"), a sentinel keeps the
global gradient norm and the count of tensors with a non-finite norm at every step: one
``torch._foreach_norm`` per device, copied with the others, into the ``sentinel`` table
(the non-finite probe listens to it too).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from dsnotebook.core.probe import Probe, ProbeContext, StepBatch
from dsnotebook.core.transfer import resolve
from dsnotebook.params.devices import by_device
from dsnotebook.params.schedule import Schedule
from dsnotebook.stats.scaling import unscale_grad_stats


class GradStatsProbe(Probe):
    """Norm, mean, std, abs-max, non-finite count, zero fraction and log2 histogram per tensor."""

    name = "grads"

    def __init__(self, schedule: Schedule | int = 1) -> None:
        self.schedule = schedule if isinstance(schedule, Schedule) else Schedule(schedule)

    def attach(self, ctx: ProbeContext) -> None:
        super().attach(ctx)
        self._single = len({p.device for p in ctx.params}) == 1

    def records(self, step: int) -> bool:
        return self.schedule.records(step)

    def flush(self) -> None:
        ctx = getattr(self, "ctx", None)  # flush() may come before the first attach
        if ctx is not None:
            ctx.run.meta["schedule"] = self.schedule.describe()

    def detach(self) -> None:
        self.flush()
        self.schedule.pause()

    def pre_step(self, batch: StepBatch) -> None:
        if batch.first:
            self.schedule.tick(batch.step)
        if not batch.grad_ids:
            return
        t0 = time.perf_counter()
        if self.records(batch.step):
            self._record(batch)
            self.schedule.charge(time.perf_counter() - t0)
        elif self.schedule.auto or self.schedule.every > 1:
            self._sentinel(batch)
            self.schedule.charge(time.perf_counter() - t0, sentinel=True)

    def _sentinel(self, batch: StepBatch) -> None:
        """Global gradient norm and non-finite tensors of an unrecorded step: one fused norm per device."""
        params, ids, step = self.ctx.params, batch.grad_ids, batch.step
        grads = [params[i].grad for i in ids]
        groups = by_device(ids, grads, self._single)
        first = grads[0].device
        parts = []
        for device, sub in groups.items():
            tensors = grads if len(sub) == len(ids) else [params[i].grad for i in sub]
            parts.append(torch.stack(torch._foreach_norm(tensors)).float().to(first))
        norms = parts[0] if len(parts) == 1 else torch.cat(parts)
        scale = _loss_scale(batch.optimizer)
        if scale is not None:
            norms = norms / scale.detach().to(norms.device, norms.dtype)
        self.ctx.submit(norms, lambda host, s=step: self.ctx.run.add_records("sentinel", [_sentinel_row(s, host)]))

    def _record(self, batch: StepBatch) -> None:
        params, ids, step = self.ctx.params, batch.grad_ids, batch.step
        grads = [params[i].grad for i in ids]
        scale = _loss_scale(batch.optimizer)
        for device, sub in by_device(ids, grads, self._single).items():
            tensors = grads if len(sub) == len(ids) else [params[i].grad for i in sub]
            values = self.ctx.backend(device).grad_stats(tensors)
            idx = np.array(sub, dtype=np.int32)
            if scale is None:
                # who listens: Run.add_grads -> "append" -> live views and the non-finite probe
                self.ctx.submit(values, lambda host, s=step, idx=idx: self.ctx.run.add_grads(s, idx, host))
            else:  # rare (CPU fused optimizer under GradScaler): the scale travels with the values
                values = resolve(values)
                packed = torch.cat([values.reshape(-1), scale.detach().to(values.device, values.dtype).reshape(1)])
                self.ctx.submit(packed, lambda host, s=step, idx=idx, shape=values.shape:
                                self.ctx.run.add_grads(s, idx, unscale_grad_stats(host[:-1].reshape(shape),
                                                                                  float(host[-1]))))


def _sentinel_row(step: int, norms: np.ndarray) -> dict[str, float | int]:
    n = np.asarray(norms, dtype=np.float64).reshape(-1)
    total = float(np.dot(n, n))  # every step on unrecorded steps: the common, finite case in one call
    if math.isfinite(total):
        return {"step": step, "grad_norm": math.sqrt(total), "nonfinite_tensors": 0, "tensors": int(n.size)}
    bad = ~np.isfinite(n)
    total = float(np.sqrt(np.sum(np.square(n[~bad])))) if (~bad).any() else 0.0
    return {"step": step, "grad_norm": float("nan") if bad.any() else total, "nonfinite_tensors": int(bad.sum()),
            "tensors": int(n.size)}


def _loss_scale(optimizer: torch.optim.Optimizer | None) -> torch.Tensor | None:
    """The loss scale GradScaler handed a self-unscaling optimizer for this step (its grads are scaled)."""
    if optimizer is None or not getattr(optimizer, "_step_supports_amp_scaling", False):
        return None
    scale = getattr(optimizer, "grad_scale", None)
    return scale if isinstance(scale, torch.Tensor) else None
