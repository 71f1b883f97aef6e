"""The tracer's per-module features on one step clock: graph, activations, non-finite.

:class:`~dsnotebook.trace.tracer.ModelTracer` calls :meth:`Dataflow.end_step` when a step's
forward and backward are done (first optimizer pre-step hook, or ``tracer.step()``) and
:meth:`Dataflow.begin_step` when the next one is about to start (optimizer post-step
hook).  Module hooks exist only between an arming ``begin_step`` and the next
``end_step``: on steps that sample nothing the model runs without any of them.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from dsnotebook.core.modules import is_compiled
from dsnotebook.dataflow.activations import ActivationSampler
from dsnotebook.dataflow.graph import CompiledGraphCapture, GraphRecorder
from dsnotebook.dataflow.nonfinite import MODES, NonFiniteLocator
from dsnotebook.run.store import Run
from dsnotebook.stats.reference import COL_NONFINITE


class Dataflow:
    def __init__(self, model: nn.Module, run: Run, backend: Callable[[torch.device], Any], copier: Any,
                 *, activations_every: int | None, nonfinite: str, capture_graph: bool,
                 warn: Callable[[BaseException], None]) -> None:
        if activations_every is not None and (isinstance(activations_every, bool) or not isinstance(activations_every, int)
                                              or activations_every < 1):
            raise ValueError(f"activations_every must be None or a positive integer, got {activations_every!r}")
        if nonfinite not in MODES:
            raise ValueError(f"nonfinite must be one of {MODES}, got {nonfinite!r}")
        self._model = weakref.ref(model)  # like the tracer: never keep the user's model alive
        self.run, self._backend, self._copier, self._warn = run, backend, copier, warn
        self.activations_every, self.nonfinite_mode, self.capture = activations_every, nonfinite, capture_graph
        self.compiled = is_compiled(model)
        self._graph: GraphRecorder | CompiledGraphCapture | None = None
        self.sampler: ActivationSampler | None = None
        self.locator: NonFiniteLocator | None = None
        if self.compiled and (activations_every or nonfinite == "strict"):
            run.add_event(None, "warning", None, "activation statistics and per-module non-finite checks are off for a "
                                                 "torch.compile'd model (module hooks would recompile it): trace the "
                                                 "eager model to get them")
        elif not self.compiled:
            if activations_every:
                self.sampler = ActivationSampler(model)
            if nonfinite != "off":
                self.locator = NonFiniteLocator(model, nonfinite)
        self._ended: int | None = None
        self._notes_seen: set[str] = set()

    @property
    def hook_count(self) -> int:
        n = 0
        for part in (self._graph, self.sampler, self.locator):
            if part is not None:
                n += len(part.hooks)
        return n

    # -- lifecycle ----------------------------------------------------------------------
    def attach(self, step: int) -> None:
        model = self._model()
        if self.capture and self.run.graph is None and self._graph is None and model is not None:
            cls = CompiledGraphCapture if self.compiled else GraphRecorder
            self._graph = cls(model, self._graph_done).start()
        self.begin_step(step)

    def detach(self, step: int) -> None:
        """Remove every module hook.  A forward seen after the last step boundary (an
        evaluation pass, a step cut short by an error) belongs to no training step: dropped."""
        if self._graph is not None:
            self._graph.stop()
            self._graph = None
        if self.sampler is not None:
            self.sampler.disarm()
            self.sampler._rows = []
        if self.locator is not None:
            self.locator.disarm()

    def _graph_done(self, graph: dict[str, Any]) -> None:
        self.run.set_graph(graph)
        if graph.get("message"):
            self.run.add_event(None, "graph", None, graph["message"])
        self._graph = None

    # -- step clock ---------------------------------------------------------------------
    def begin_step(self, step: int) -> None:
        """Arm what the coming step ``step`` samples."""
        if self.sampler is not None and step % self.activations_every == 0:
            self.sampler.arm()
        if self.locator is not None and self.locator.wants_arm():
            self.locator.arm()

    def end_step(self, step: int) -> None:
        """Collect what ``step`` recorded and take the hooks out (once per step)."""
        if self._ended == step:
            return
        self._ended = step
        if self.sampler is not None and self.sampler.armed:
            try:
                self._collect_activations(step)
            finally:
                if (step + 1) % self.activations_every:
                    self.sampler.disarm()
        if self.locator is not None and self.locator.armed:
            self._collect_nonfinite(step)

    def _collect_activations(self, step: int) -> None:
        got = self.sampler.collect(self._stats)
        self._notes(self.sampler.notes, step)
        if got is None:
            return
        flat, decode = got

        def deliver(host: np.ndarray, s: int = step) -> None:
            rows = decode(host)
            self.run.add_activations(s, rows)
            if self.locator is not None and any(r["nonfinite"] > 0 for r in rows):
                self.locator.trigger(s)

        self._copier.submit(flat, deliver)

    def _stats(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """The tracer's backend over tensors on any mix of devices, rows in input order."""
        devices = {t.device for t in tensors}
        if len(devices) == 1:
            return self._backend(tensors[0].device).grad_stats(tensors)
        first = tensors[0].device
        out: list[torch.Tensor | None] = [None] * len(tensors)
        for d in devices:
            idx = [i for i, t in enumerate(tensors) if t.device == d]
            vals = self._backend(d).grad_stats([tensors[i] for i in idx]).to(first)
            for k, i in enumerate(idx):
                out[i] = vals[k]
        return torch.stack(out)

    def _collect_nonfinite(self, step: int) -> None:
        loc = self.locator
        finding = loc.collect()
        self._notes(loc.notes, step)
        if loc.mode == "cheap":
            loc._armed_left = max(0, loc._armed_left - 1)
        if finding is not None:
            if not loc.in_episode:
                detail = finding.detail
                if loc.mode == "cheap" and loc.trigger_step is not None:
                    detail += f" (checks armed after non-finite statistics at step {loc.trigger_step})"
                self.run.add_event(step, "nonfinite", finding.module, detail)
            loc.in_episode = True
            loc._armed_left = 0
        elif loc.mode == "strict":
            loc.in_episode = False
        elif loc._armed_left == 0 and not loc.in_episode:
            self.run.add_event(step, "nonfinite", None,
                               f"non-finite statistics at step {loc.trigger_step}, but the per-module checks of the "
                               f"next {loc.arm_steps} steps saw none (it did not repeat); use nonfinite='strict' to "
                               "check every step")
            loc.in_episode = True
        if not loc.wants_arm():
            loc.disarm()

    def on_grad_stats(self, step: int, host: np.ndarray) -> None:
        """Per-step gradient statistics reached the host: the cheap mode's trigger."""
        loc = self.locator
        if loc is None or loc.mode != "cheap":
            return
        if np.any(host[:, COL_NONFINITE] > 0):
            loc.trigger(step)
        elif not loc.armed:
            loc.in_episode = False  # a clean step ends the episode: the next one is reported again

    def _notes(self, notes: list[str], step: int) -> None:
        while notes:
            note = notes.pop(0)
            if note not in self._notes_seen:
                self._notes_seen.add(note)
                self.run.add_event(step, "warning", None, f"dsnotebook: {note}")
