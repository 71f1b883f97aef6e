"""CallsProbe: ties ``@dsnotebook.trace`` calls to a tracer's steps and writes the Run's ``calls`` table.

While a tracer is attached its probe is the active sink (the last attached tracer wins):
every traced call made meanwhile, in any thread, gets the tracer's step at its start and is
handed here when it ends.  Rows are made at step boundaries (the first optimizer of a step, or
``tracer.step()``) from the calls whose CUDA events completed, so reading device times never
synchronises; the rest wait for the next boundary, and ``flush``/``detach`` wait for all.  Debug
statistics come from the tracer's backend and reach the host through its copier (no sync on
CUDA).  At most ``max_calls_per_step`` calls are kept per step (a warning event says how many were
not); the Run keeps the rows of its last ``keep`` steps.
"""
from __future__ import annotations

import time
from typing import Any

import torch

from dsnotebook.calls.device import DEVICE
from dsnotebook.calls.record import Call
from dsnotebook.calls.recorder import stats_by_device
from dsnotebook.calls.rows import Collector, fetch_stats
from dsnotebook.calls.state import OVERHEAD, STATE
from dsnotebook.calls.wrap import HOOKS
from dsnotebook.core.probe import Probe, ProbeContext, StepBatch

__all__ = ["CallsProbe"]


class CallsProbe(Probe):
    """The ``calls`` table of a tracer's Run (see the module docstring)."""

    name = "calls"

    def __init__(self, max_calls_per_step: int = 10_000) -> None:
        if isinstance(max_calls_per_step, bool) or not isinstance(max_calls_per_step, int) or max_calls_per_step < 1:
            raise ValueError(f"max_calls_per_step must be a positive integer, got {max_calls_per_step!r}")
        self.max_calls_per_step = max_calls_per_step
        self._collector = Collector(4 * max_calls_per_step)
        self._count_step: int | None = None
        self._count = 0
        self.skipped = 0  # calls beyond max_calls_per_step
        self._warned = False
        self.origin = time.perf_counter()
        self.calls_seen = 0
        self._unread: list[Any] = []  # event pairs of calls not kept
        self._backends: dict[torch.device, Any] = {}

    def attach(self, ctx: ProbeContext) -> None:
        super().attach(ctx)
        self.run = ctx.run
        self._step = ctx.step()
        model = ctx.model()
        if model is not None:
            HOOKS.name_model(model)  # module calls named by their path in the graph
        self.origin = time.perf_counter()
        STATE.push(self)

    def detach(self) -> None:
        STATE.remove(self)
        self.deliver(wait=True)

    # -- the sink ----------------------------------------------------------------------------
    def step(self) -> int:
        """The training step in progress (its forward may run before the tracer's step count moves)."""
        return self._step

    def add(self, rec: Call) -> None:
        if rec.step != self._count_step:
            self._count_step, self._count = rec.step, 0
        self._count += 1
        if self._count > self.max_calls_per_step:
            self.skipped += 1
            if rec.ev is not None:  # its event pair goes back to the pool at the next delivery
                self._unread.append(rec.ev)
            return
        self._collector.add(rec)

    def stats(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """The tracer's kind of backend, in an instance of our own: its buffers and plans are per tensor
        layout, and the many layouts of traced calls must not evict the gradients' ones (nor
        overwrite a result the backend reuses: a CuPy result is copied)."""
        return stats_by_device(self._stats_for, tensors)

    def _stats_for(self, device: torch.device) -> Any:
        fn = self._backends.get(device)
        if fn is None:
            shared = self.ctx.backend(device)
            try:
                own = type(shared)()
            except TypeError:  # a backend we cannot make a second of: the tracer's own
                own = shared
            exact = getattr(own, "grad_stats_exact", None)
            fn = self._backends[device] = exact if exact is not None else (lambda ts: own.grad_stats(ts).clone())
        return fn

    # -- the step clock ----------------------------------------------------------------------
    def before_forward(self, step: int) -> None:
        self._step = step

    def pre_step(self, batch: StepBatch) -> None:
        if batch.first:
            self.deliver(wait=False)

    def flush(self) -> None:
        self.deliver(wait=True)

    def deliver(self, wait: bool) -> None:
        """Rows of the finished calls whose device times are known (all of them with ``wait``)."""
        calls = self._collector.take(wait)
        if wait:
            DEVICE.wait(self._unread)
        unread, self._unread = self._unread, []
        for pair in unread:
            if DEVICE.done(pair):
                DEVICE.read(pair)
            else:
                self._unread.append(pair)
        if self.skipped and not self._warned:
            self._warned = True
            self.run.add_event(self._count_step, "warning", None,
                               f"function tracing: more than {self.max_calls_per_step} traced calls in one step; "
                               "the rest of the step's calls are not kept (CallsProbe(max_calls_per_step=...))")
        if not calls:
            return
        self.calls_seen += len(calls)
        self.run.meta["calls_overhead"] = OVERHEAD.as_dict()
        rows = Collector.rows(calls, self.origin)
        pending = fetch_stats(calls)
        if not pending:
            self.run.add_records("calls", rows)
            return
        left = [len(pending)]

        def arrived(host: Any, apply: Any) -> None:
            apply(host)
            left[0] -= 1
            if left[0] == 0:
                self.run.add_records("calls", rows)

        for values, apply in pending:
            self.ctx.submit(values, lambda host, apply=apply: arrived(host, apply))
