"""ModelTracer: the composition root.  It owns the optimizer hooks and the step clock and
calls a list of probes (:mod:`dsnotebook.core.probe`); every capability is a probe.

Step boundaries come from the optimizers: right before an optimizer updates its
parameters (step pre-hook) their gradients are final, and right after it (post-hook) the
weights are updated.  With several optimizers a step ends when one of them steps again.
Without an optimizer the user marks step ends with :meth:`ModelTracer.step`.  Probes
hand device results to :class:`~dsnotebook.core.transfer.HostCopier` (asynchronous on
CUDA), whose callbacks write to the :class:`~dsnotebook.run.Run`.
"""
from __future__ import annotations

import os
import warnings
import weakref
from typing import Any, Sequence

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from dsnotebook.core.probe import Probe, ProbeContext, StepBatch
from dsnotebook.core.transfer import HostCopier, resolve
from dsnotebook.kernels.choice import BACKENDS, make_backend
from dsnotebook.run import Run
from dsnotebook.stats import helper as stats_helper
from dsnotebook.trace import gradscaler
from dsnotebook.trace.compose import default_probes, validate_options
from dsnotebook.trace.describe import describe_parameters, describe_run
from dsnotebook.trace.ownership import Ownership
from dsnotebook.trace.results import TracerResults

__all__ = ["ModelTracer", "BACKENDS", "describe_parameters"]


class ModelTracer(TracerResults):
    """Record gradient and update statistics of ``model`` at every ``every``-th training step.

    Also, through module hooks that exist only on the steps that need them:
    ``capture_graph`` records the dataflow graph of the first forward pass after attach
    (``run.graph``); ``activations_every=N`` records per-module activation statistics and
    dead units every N steps; ``nonfinite`` ("cheap", "strict", "off") localises the first
    module that produced a NaN/Inf and records it as an event; ``profile_every=N`` records
    per-layer times, step phases and memory every N steps.  ``every="auto"`` (or a ``budget``,
    e.g. 0.02) records every N-th step with N chosen from the measured cost so that recording
    stays within the budget; a sentinel keeps the global gradient norm and non-finite
    detection at every step (``to_dataframe("sentinel")``).  ``update_every=K`` records
    update statistics on every K-th recorded step only (they snapshot every weight: 16 B per
    fp32 parameter, 1-2% of a host-bound bf16 GPT-2 step on an H200 by themselves).  ``probes`` adds your own
    :class:`~dsnotebook.core.probe.Probe` objects.  ``log_dir`` streams the Run to a run
    directory while training (``Run.open`` / ``dsnotebook.follow`` read it, also from another
    process); it must be new or empty, and one writer holds it at a time.

    >>> with ModelTracer(model, optimizer) as tracer:
    ...     train()
    >>> tracer.to_dataframe("grads")
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer] | None = None,
                 *, every: int | str = 1, keep: int = 1000, backend: str = "auto", track_updates: bool = True,
                 activations_every: int | None = None, nonfinite: str = "cheap", capture_graph: bool = True,
                 profile_every: int | None = None, probes: Sequence[Probe] = (),
                 log_dir: str | os.PathLike[str] | None = None, budget: float | None = None,
                 update_every: int = 1) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"ModelTracer needs a torch.nn.Module, got {type(model).__module__}."
                            f"{type(model).__qualname__}: {model!r:.80}")
        validate_options(every=every, backend=backend, activations_every=activations_every, nonfinite=nonfinite,
                         profile_every=profile_every, budget=budget, update_every=update_every)
        if budget is not None and every == 1:
            every = "auto"  # a budget means: choose the stride for me
        params, rows = describe_parameters(model)
        if not params:
            raise ValueError(f"{type(model).__name__} has no parameters: there are no gradients to trace")
        if not any(p.requires_grad for p in params):
            warnings.warn(f"no parameter of {type(model).__name__} requires grad (all {len(params)} frozen): "
                          "gradient statistics will stay empty", stacklevel=2)
        optimizers = [] if optimizer is None else ([optimizer] if isinstance(optimizer, torch.optim.Optimizer)
                                                     else list(optimizer))
        for opt in optimizers:
            if not isinstance(opt, torch.optim.Optimizer):
                raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(opt).__qualname__}")
        self._model_ref = weakref.ref(model)
        self._optimizers = [weakref.ref(o) for o in optimizers]
        self.every, self.backend_choice, self.track_updates = every, backend, track_updates
        self._params = params
        options = {"every": every, "budget": budget, "activations_every": activations_every, "nonfinite": nonfinite,
                   "profile_every": profile_every, "update_every": update_every}
        self.run = Run(rows, describe_run(model, params, optimizers, options), keep=keep)
        self._copier = HostCopier(on_error=self._warn_internal)
        self._backends: dict[torch.device, Any] = {}
        self.probes: list[Probe] = default_probes(every=every, track_updates=track_updates,
                                                   capture_graph=capture_graph, activations_every=activations_every,
                                                   nonfinite=nonfinite, profile_every=profile_every, extra=probes,
                                                   log_dir=log_dir, budget=budget, update_every=update_every)
        self._ctx = ProbeContext(model=self._model_ref, run=self.run, params=params, optimizers=self._live_optimizers,
                                 backend=self._backend, stats=self._stats, submit=self._copier.submit,
                                 warn=self._warn_internal, step=lambda: self.step_count)
        self._ownership = Ownership(params, optimizers)
        self._handles: list[Any] = []
        self._attached = False
        self.step_count = 0  # index of the training step in progress
        self._stepped: set[int] = set()  # optimizers that stepped in the current step
        self._captured: set[int] = set()  # tensor ids whose grads were read this step
        self._forward_done: int | None = None  # step whose after_forward ran
        self._hook_steps = 0
        self._scaler_stop: Any = None  # stops the GradScaler skipped-step listener
        self.views: list[Any] = []  # live views of this tracer (the magic's dashboard among them)

    @property
    def model(self) -> nn.Module | None:
        return self._model_ref()

    def _live_optimizers(self) -> list[torch.optim.Optimizer]:
        return [o for o in (r() for r in self._optimizers) if o is not None]

    # -- lifecycle ----------------------------------------------------------------------
    def attach(self) -> "ModelTracer":
        """Install the optimizer hooks and attach every probe (idempotent)."""
        if self._attached:
            return self
        if self._optimizers:
            for opt in self._live_optimizers():
                self._handles.append(opt.register_step_pre_hook(self._pre_step))
                self._handles.append(opt.register_step_post_hook(self._post_step))
        else:  # any optimizer that updates this model's parameters
            self._handles.append(register_optimizer_step_pre_hook(self._pre_step))
            self._handles.append(register_optimizer_step_post_hook(self._post_step))
        self._scaler_stop = gradscaler.listen(self._scaler_skipped_step)
        self._attached = True
        for probe in self.probes:
            self._call(probe.attach, self._ctx)
        # the optimizer of step_count may have run already: then the next step is coming
        self._before_forward(self.step_count + (1 if self._stepped else 0))
        return self

    def detach(self) -> None:
        """Remove every hook, deliver all statistics still in flight; safe to call twice."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if self._scaler_stop is not None:
            self._scaler_stop()
            self._scaler_stop = None
        was_attached, self._attached = self._attached, False
        for probe in reversed(self.probes):
            self._call(probe.detach)
        self._ownership.forget_frames()
        self.flush(wait=True)
        if was_attached and not self.run.steps and self._hook_steps == 0 and self.step_count == 0:
            warnings.warn("no training step was seen while tracing: pass the optimizer that steps this model, "
                          "or call tracer.step() after each backward pass", stacklevel=2)

    @property
    def attached(self) -> bool:
        return self._attached

    @property
    def hook_count(self) -> int:
        """Optimizer hooks held now (module hooks: :attr:`module_hook_count`)."""
        return len(self._handles)

    @property
    def module_hook_count(self) -> int:
        """Per-module and tensor hooks the probes hold now (0 between sampled steps)."""
        return sum(p.hook_count for p in self.probes)

    def __enter__(self) -> "ModelTracer":
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    # -- calling probes -----------------------------------------------------------------
    def _call(self, fn: Any, *args: Any) -> None:
        """A probe's hook: its errors become warning events, never the user's exception."""
        try:
            fn(*args)
        except Exception as exc:
            self._warn_internal(exc)

    def _before_forward(self, step: int) -> None:
        for probe in self.probes:
            self._call(probe.before_forward, step)

    def _after_forward(self, step: int) -> None:
        if self._forward_done == step:
            return
        self._forward_done = step
        for probe in reversed(self.probes):
            self._call(probe.after_forward, step)

    def _pre(self, batch: StepBatch) -> None:
        for probe in self.probes:
            self._call(probe.pre_step, batch)

    def _post(self, batch: StepBatch) -> None:
        for probe in reversed(self.probes):
            self._call(probe.post_step, batch)

    # -- the step clock -----------------------------------------------------------------
    def _scaler_skipped_step(self, opt: torch.optim.Optimizer) -> None:
        """GradScaler skipped opt.step() (inf/NaN gradients): record the step all the same.

        The probes see it as if the optimizer had stepped, so the non-finite gradients are
        recorded and the update statistics say, truthfully, that nothing changed.
        """
        if self._optimizers and not any(r() is opt for r in self._optimizers):
            return
        if not self._ownership.owned(opt):
            return
        self._pre_step(opt, (), {}, skipped=True)
        self.run.add_event(self.step_count, "warning", None,
                           "GradScaler skipped optimizer.step(): inf/NaN in the unscaled gradients")
        self._post_step(opt, (), {}, skipped=True)

    def _pre_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any, skipped: bool = False) -> None:
        if self._ownership.nested_call(opt, pre=True):
            return
        try:
            owned = self._ownership.owned(opt)
            if not owned:
                return  # another model's optimizer (global hooks)
            self._ownership.saw(owned)
            if id(opt) in self._stepped:
                self._close_step()
            first = not self._stepped
            if first:  # forward and backward of this step are done
                self._after_forward(self.step_count)
            self._stepped.add(id(opt))
            self._hook_steps += 1
            params, captured = self._params, self._captured
            mine = [i for i in owned if params[i].grad is not None]
            todo = mine if first else [i for i in mine if i not in captured]
            if first:  # the first optimizer also reads parameters nobody owns
                todo = todo + [i for i in self._ownership.unowned() if params[i].grad is not None and i not in captured]
            captured.update(todo)
            batch = StepBatch(self.step_count, todo, mine, first, opt, skipped)
        except Exception as exc:  # never break the user's training from inside a hook
            self._warn_internal(exc)
            return
        self._pending_batch = batch
        self._pre(batch)

    def _post_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any, skipped: bool = False) -> None:
        if self._ownership.nested_call(opt, pre=False):
            return
        batch = getattr(self, "_pending_batch", None)
        if batch is None or batch.optimizer is not opt:
            return
        self._pending_batch = None
        self._post(batch)
        self._copier.poll()
        self._before_forward(self.step_count + 1)

    def _close_step(self) -> None:
        self.step_count += 1
        self._stepped.clear()
        self._captured.clear()

    def step(self) -> None:
        """Mark the end of a training step by hand (no optimizer, or a custom update rule)."""
        hooks_active = bool(self._stepped)
        self._after_forward(self.step_count)
        ids = [i for i, p in enumerate(self._params) if i not in self._captured and p.grad is not None]
        batch = StepBatch(self.step_count, ids, list(range(len(self._params))), not hooks_active, None)
        if hooks_active or self._hook_steps:
            batch.update_ids = []  # the optimizers' hooks measured the updates
        self._pre(batch)
        self._post(batch)
        self._close_step()
        self._copier.poll()
        if self._attached:
            self._before_forward(self.step_count)

    # -- statistics plumbing for the probes ---------------------------------------------
    def _backend(self, device: torch.device) -> Any:
        b = self._backends.get(device)
        if b is None:
            b = self._backends[device] = make_backend(self.backend_choice, device)
            if device.type == "cpu" and stats_helper.enabled() and hasattr(b, "use_helper"):
                b.use_helper(stats_helper.shared_helper())  # CPU statistics in a helper process (opt-in)
            self.run.meta.setdefault("backends", {})[str(device)] = b.name
        return b

    def _stats(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """The backend's statistics of tensors on any mix of devices, rows in input order."""
        devices = {t.device for t in tensors}
        if len(devices) == 1:
            return resolve(self._backend(tensors[0].device).grad_stats(tensors))
        first = tensors[0].device
        out: list[torch.Tensor | None] = [None] * len(tensors)
        for d in devices:
            idx = [i for i, t in enumerate(tensors) if t.device == d]
            vals = resolve(self._backend(d).grad_stats([tensors[i] for i in idx])).to(first)
            for k, i in enumerate(idx):
                out[i] = vals[k]
        return torch.stack(out)

    def _warn_internal(self, exc: BaseException) -> None:
        msg = f"dsnotebook: statistics skipped at step {self.step_count}: {type(exc).__name__}: {exc}"
        self.run.add_event(self.step_count, "warning", None, msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)

    def flush(self, wait: bool = False) -> None:
        """Deliver finished device->host copies (all of them with ``wait=True``) to the Run."""
        if wait:
            for probe in self.probes:
                self._call(probe.flush)
            self._copier.drain()
        else:
            self._copier.poll()
