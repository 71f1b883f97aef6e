"""The dataflow capabilities as probes: graph capture, activation statistics, non-finite origin.

Each holds module hooks only on the steps it samples (see :mod:`dsnotebook.core.probe`).
A forward seen after the last step boundary (an evaluation pass, a step cut short by an
error) belongs to no training step: detach drops it.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from dsnotebook.core.modules import is_compiled
from dsnotebook.core.probe import Probe, ProbeContext, StepBatch
from dsnotebook.dataflow.activations import ActivationSampler
from dsnotebook.dataflow.episodes import NonFiniteEpisodes
from dsnotebook.dataflow.graph import CompiledGraphCapture, GraphRecorder
from dsnotebook.dataflow.nonfinite import NonFiniteLocator
from dsnotebook.dataflow.replay import StepCapture, replay
from dsnotebook.run.fields import ACT_FIELDS

_ACT_NONFINITE = ACT_FIELDS.index("nonfinite")
_COMPILED = ("{what} off for a torch.compile'd model (module hooks would recompile it): trace the eager model "
             "to get them")


def _record_notes(run: Any, notes: list[str], step: int, seen: set[str]) -> None:
    """Hook-side problems become one warning event each (hooks never raise)."""
    while notes:
        note = notes.pop(0)
        if note not in seen:
            seen.add(note)
            run.add_event(step, "warning", None, f"dsnotebook: {note}")


class GraphProbe(Probe):
    """The dataflow graph of the first forward pass after attach (``run.graph``)."""

    name = "graph"

    def attach(self, ctx: ProbeContext) -> None:
        super().attach(ctx)
        self._recorder: GraphRecorder | CompiledGraphCapture | None = None
        model = ctx.model()
        if ctx.run.graph is None and model is not None:
            cls = CompiledGraphCapture if is_compiled(model) else GraphRecorder
            self._recorder = cls(model, self._done).start()

    def _done(self, graph: dict[str, Any]) -> None:
        self.ctx.run.set_graph(graph)  # who listens: the dashboard's graph panel
        if graph.get("message"):
            self.ctx.run.add_event(None, "graph", None, graph["message"])

    def before_forward(self, step: int) -> None:
        if self._recorder is not None and self._recorder.result is not None:
            self._recorder.stop()  # hooks whose removal a raising forward deferred
            self._recorder = None

    def detach(self) -> None:
        if self._recorder is not None:
            self._recorder.stop()
            self._recorder = None

    @property
    def hook_count(self) -> int:
        return len(self._recorder.hooks) if self._recorder is not None else 0


class ActivationProbe(Probe):
    """Per-module output statistics and dead units every ``every``-th step."""

    name = "activations"

    def __init__(self, every: int) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"activations_every must be None or a positive integer, got {every!r}")
        self.every = every
        self._sampler: ActivationSampler | None = None
        self._seen: set[str] = set()

    def attach(self, ctx: ProbeContext) -> None:
        super().attach(ctx)
        ctx.run.meta["activations_every"] = self.every
        model = ctx.model()
        if model is not None and is_compiled(model):
            ctx.run.add_event(None, "warning", None, _COMPILED.format(what="activation statistics are"))
        elif model is not None and self._sampler is None:
            self._sampler = ActivationSampler(model)

    def wants(self, step: int) -> bool:
        return self._sampler is not None and step % self.every == 0

    def before_forward(self, step: int) -> None:
        if self.wants(step):
            self._sampler.arm()

    def after_forward(self, step: int) -> None:
        sampler = self._sampler
        if sampler is None or not sampler.armed:
            return
        try:
            got = sampler.collect(self.ctx.stats)
            _record_notes(self.ctx.run, sampler.notes, step, self._seen)
            if got is not None:
                flat, decode = got
                # who listens: Run.add_activations -> "append" -> the dashboard and the non-finite probe
                self.ctx.submit(flat, lambda host, s=step: self.ctx.run.add_activations(s, decode(host)))
        finally:
            if not self.wants(step + 1):
                sampler.disarm()

    def detach(self) -> None:
        if self._sampler is not None:
            self._sampler.disarm()
            self._sampler.discard()

    @property
    def hook_count(self) -> int:
        return len(self._sampler.hooks) if self._sampler is not None else 0


class NonFiniteProbe(Probe):
    """Names the first module whose output or gradient went NaN/Inf (one event per episode).

    ``strict`` checks every step.  ``cheap`` keeps references to each step's inputs
    (:class:`~dsnotebook.dataflow.replay.StepCapture`); when the step's gradient statistics
    reach the host before its optimizer update (CPU tensors; steps GradScaler skips) and
    show a non-finite value, the step is replayed with the checks on, so the event names
    the module at the step where it happened.  Otherwise (CUDA statistics arrive after the
    update) the checks are armed for the next steps.
    """

    name = "nonfinite"

    def __init__(self, mode: str = "cheap") -> None:
        self.episodes = NonFiniteEpisodes(mode)
        self.mode = mode
        self._locator: NonFiniteLocator | None = None
        self._capture: StepCapture | None = None
        self._unsubscribe: Any = None
        self._seen: set[str] = set()
        self._bad_step: int | None = None  # latest step whose statistics were non-finite
        self._checked_step: int | None = None  # latest step whose forward ran with the checks on

    def attach(self, ctx: ProbeContext) -> None:
        super().attach(ctx)
        ctx.run.meta["nonfinite"] = self.mode
        model = ctx.model()
        if self.mode == "off" or model is None:
            return
        if is_compiled(model):
            if self.mode == "strict":
                ctx.run.add_event(None, "warning", None, _COMPILED.format(what="per-module non-finite checks are"))
            return
        if self._locator is None:
            self._locator = NonFiniteLocator(model)
        if self.mode == "cheap" and self._unsubscribe is None:
            self._unsubscribe = ctx.run.subscribe(self._on_run)
        if self.mode == "cheap" and not _distributed(model):
            if self._capture is None:
                on_cpu = all(not p.is_cuda for p in model.parameters())
                self._capture = StepCapture(model, keep_output_grads=on_cpu)
            self._capture.start()

    def _on_run(self, kind: str, steps: list[int]) -> None:
        """Statistics reached the Run: a non-finite count arms the checks (cheap mode).

        "append": recorded gradient (or activation) statistics; "sentinel": the every-step
        gradient norms of steps the schedule does not record."""
        run = self.ctx.run
        if kind == "sentinel":
            rows = run.records.tables["sentinel"]
            for s in steps:
                row = next((r for r in reversed(rows) if r["step"] == s), None)
                if row is not None:
                    self._saw(s, row["nonfinite_tensors"] > 0)
            return
        if kind != "append":
            return
        for s in steps:
            acts = run.activations_at(s)
            acts_bad = acts is not None and bool(np.any(acts.values[:, _ACT_NONFINITE] > 0))
            if not acts_bad and not run.has_grads(s):
                continue  # no gradient statistics of this step (yet): no verdict
            self._saw(s, run.nonfinite_at(s) > 0 or acts_bad)

    def _saw(self, step: int, bad: bool) -> None:
        if bad:
            self._bad_step = step
        self.episodes.saw_statistics(step, bad, checking=self._locator is not None and self._locator.armed)

    def wants(self, step: int) -> bool:
        return self._locator is not None and self.episodes.wants_checks()

    def before_forward(self, step: int) -> None:
        if self._capture is not None:
            self._capture.new_step()
        if self.wants(step):
            self._locator.arm()

    def after_forward(self, step: int) -> None:
        loc = self._locator
        if loc is None or not loc.armed:
            return
        self._checked_step = step
        finding = loc.collect()
        _record_notes(self.ctx.run, loc.notes, step, self._seen)
        event = self.episodes.checked(step, finding.module if finding else None, finding.detail if finding else None)
        if event is not None:
            self.ctx.run.add_event(event.step, "nonfinite", event.module, event.detail)
        if not self.episodes.wants_checks():
            loc.disarm()

    def pre_step(self, batch: StepBatch) -> None:
        """Before the update: replay a step whose gradients are already known to be non-finite."""
        if self._capture is None or not batch.first or self._checked_step == batch.step:
            return
        if self._bad_step != batch.step and not batch.skipped:
            return
        if self.episodes.in_episode:
            return
        why = self._capture.replayable()
        if why is not None:
            _record_notes(self.ctx.run, [f"non-finite step {batch.step} not replayed ({why}): checks armed for the "
                                         "next steps"], batch.step, self._seen)
            return
        model, loc = self.ctx.model(), self._locator
        if model is None or loc is None:
            return
        was_armed = loc.armed
        loc.arm()
        try:
            replay(model, self._capture)
            finding = loc.collect()
        finally:
            if not was_armed:
                loc.disarm()
            self._capture.new_step()
        _record_notes(self.ctx.run, loc.notes, batch.step, self._seen)
        if finding is not None:
            event = self.episodes.found_by_replay(batch.step, finding.module, finding.detail)
            if event is not None:
                self.ctx.run.add_event(event.step, "nonfinite", event.module, event.detail)

    def detach(self) -> None:
        if self._locator is not None:
            self._locator.disarm()
        if self._capture is not None:
            self._capture.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    @property
    def hook_count(self) -> int:
        n = len(self._locator.hooks) if self._locator is not None else 0
        return n + (self._capture.hook_count if self._capture is not None else 0)


def _distributed(model: nn.Module) -> bool:
    """DDP/FSDP models: a replayed backward would start collectives the other ranks never join."""
    return isinstance(model, nn.parallel.DistributedDataParallel) or any(
        type(m).__name__.startswith(("FSDP", "FullyShardedDataParallel")) for m in model.modules())
