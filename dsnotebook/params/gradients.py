"""Gradient statistics of every parameter, read once per recorded step.

Right before an optimizer updates its parameters every ``p.grad`` it owns is final, so
no per-module hook is needed: the probe reads the gradients the tracer lists in the step
batch (those not read earlier in this step) in one batched backend call per device.
Results travel to the host asynchronously and land in the Run's ``grads`` table.

An optimizer that unscales inside its own fused step under ``torch.amp.GradScaler``
carries the loss scale as ``optimizer.grad_scale`` while its gradients are still scaled:
the scale travels to the host with the statistics (no synchronisation) and is divided out
there (:mod:`dsnotebook.stats.scaling`), so the recorded values are the true gradients'.
"""
from __future__ import annotations

import numpy as np
import torch

from dsnotebook.core.probe import Probe, ProbeContext, StepBatch
from dsnotebook.params.devices import by_device
from dsnotebook.stats.scaling import unscale_grad_stats


class GradStatsProbe(Probe):
    """Norm, mean, std, abs-max, non-finite count, zero fraction and log2 histogram per tensor."""

    name = "grads"

    def __init__(self, every: int = 1) -> None:
        self.every = every

    def attach(self, ctx: ProbeContext) -> None:
        super().attach(ctx)
        self._single = len({p.device for p in ctx.params}) == 1

    def records(self, step: int) -> bool:
        return step % self.every == 0

    def pre_step(self, batch: StepBatch) -> None:
        if not batch.grad_ids or not self.records(batch.step):
            return
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
            else:
                packed = torch.cat([values.reshape(-1), scale.detach().to(values.device, values.dtype).reshape(1)])
                self.ctx.submit(packed, lambda host, s=step, idx=idx, shape=values.shape:
                                self.ctx.run.add_grads(s, idx, unscale_grad_stats(host[:-1].reshape(shape),
                                                                                  float(host[-1]))))


def _loss_scale(optimizer: torch.optim.Optimizer | None) -> torch.Tensor | None:
    """The loss scale GradScaler handed a self-unscaling optimizer for this step (its grads are scaled)."""
    if optimizer is None or not getattr(optimizer, "_step_supports_amp_scaling", False):
        return None
    scale = getattr(optimizer, "grad_scale", None)
    return scale if isinstance(scale, torch.Tensor) else None
