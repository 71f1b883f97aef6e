"""The probe protocol: how one capability plugs into the tracer's step clock.

The tracer (:class:`dsnotebook.trace.ModelTracer`) owns the optimizer hooks and the step
clock and holds a list of probes; it has no branch per feature.  A probe is one
capability's collector (gradient statistics, update statistics, graph capture, activation
statistics, non-finite localisation, per-layer timing, ...).  Every probe has the same
small lifecycle, called by the tracer for training step ``s``::

    attach(ctx)           once: take what you need from the context
    before_forward(s)     step s is about to run (after the previous step's optimizer); install
                          module hooks here if ``wants(s)``.  Called again after each further
                          optimizer of step s-1 (several optimizers): must be idempotent
    after_forward(s)      forward and backward of s are done (first optimizer's pre-step hook,
                          or tracer.step()): collect, and take module hooks out
    pre_step(batch)       gradients of batch.grad_ids are final, weights not yet updated
    post_step(batch)      the optimizer updated batch.update_ids
    flush()               deliver pending rows to the Run (detach, tracer.flush(wait=True))
    detach()              remove every hook; also on error; safe to call twice

Every probe sees every step; ``wants(s)`` is its schedule, and module hooks exist only on
the steps it wants.  ``before_forward`` and ``pre_step`` run over the probes in list
order, ``after_forward`` and ``post_step`` in reverse order, like nested context
managers: the last probe (the timing probe) starts its clocks after every other probe's
set-up and stops them before every other probe's collection, so the tracer's own work is
never charged to the user's phases.  A probe never raises from a hook:
the tracer catches and records a warning, and the user's training goes on.  Probes write
rows to the Run only through its public methods and never import one another; when one
needs another's result it listens to the Run (``run.subscribe``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn


@dataclass
class ProbeContext:
    """What the tracer hands every probe at attach.

    ``run`` is the :class:`dsnotebook.run.Run` the probe writes to; ``stats(tensors)``
    computes the backend's per-tensor statistics (device in, device out, one batched call
    per device, rows in input order); ``submit(values, callback)`` copies a device tensor to
    the host without a synchronisation and calls ``callback(host_array)`` later;
    ``warn(exc)`` records an internal error as a warning event instead of raising.
    """

    model: Callable[[], nn.Module | None]
    run: Any
    params: Sequence[nn.Parameter]
    optimizers: Callable[[], list[torch.optim.Optimizer]]
    backend: Callable[[torch.device], Any]
    stats: Callable[[list[torch.Tensor]], torch.Tensor]
    submit: Callable[[torch.Tensor, Callable[[Any], None]], None]
    warn: Callable[[BaseException], None]
    step: Callable[[], int]


@dataclass
class StepBatch:
    """One optimizer call (or one ``tracer.step()``) of training step ``step``.

    ``grad_ids``: parameter ids (index into ``ctx.params``) whose gradients became final and
    were not read before in this step; ``update_ids``: ids the optimizer is about to update
    (with a gradient); ``first``: the first optimizer call of the step; ``optimizer`` is
    None for ``tracer.step()``; ``skipped`` is True when GradScaler skipped the update.
    """

    step: int
    grad_ids: list[int]
    update_ids: list[int]
    first: bool
    optimizer: torch.optim.Optimizer | None = None
    skipped: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Probe:
    """Base class with no-op hooks: a probe overrides what it needs."""

    name = "probe"

    def attach(self, ctx: ProbeContext) -> None:
        self.ctx = ctx

    def detach(self) -> None:
        pass

    def wants(self, step: int) -> bool:
        """True if ``before_forward(step)`` should run (module hooks on that step)."""
        return False

    def before_forward(self, step: int) -> None:
        pass

    def after_forward(self, step: int) -> None:
        pass

    def pre_step(self, batch: StepBatch) -> None:
        pass

    def post_step(self, batch: StepBatch) -> None:
        pass

    def flush(self) -> None:
        pass

    @property
    def hook_count(self) -> int:
        """Module or tensor hooks this probe holds now (0 between sampled steps)."""
        return 0
