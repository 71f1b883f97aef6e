"""ModelTracer: owns hook lifecycles and the step clock; hands tensors to a stats backend.

Gradient statistics need no per-module hooks: right before an optimizer updates its
parameters (optimizer step pre-hook) every ``p.grad`` is final, so one batched backend
call per device reads them all.  The weights are snapshotted there too, and compared
after the step (post-hook) for the update statistics.  Without an optimizer the user
marks step ends with :meth:`ModelTracer.step`.  Results travel to the host through
:class:`~dsnotebook.core.transfer.HostCopier` (async on CUDA) and land in a :class:`Run`.
"""
from __future__ import annotations

import datetime
import platform
import sys
import warnings
import weakref
from collections import defaultdict
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from dsnotebook.trace import gradscaler as _gradscaler
from dsnotebook.dataflow.coordinator import Dataflow
from dsnotebook.kernels.choice import BACKENDS, make_backend
from dsnotebook.trace.describe import describe_parameters, hardware_info
from dsnotebook.run.store import Run
from dsnotebook.core.transfer import HostCopier

__all__ = ["ModelTracer", "BACKENDS", "describe_parameters"]

class ModelTracer:
    """Record gradient and update statistics of ``model`` at every ``every``-th training step.

    Also, through module hooks that exist only on the steps that need them:
    ``capture_graph`` records the dataflow graph of the first forward pass after attach
    (``run.graph``); ``activations_every=N`` records per-module activation statistics and
    dead units every N steps; ``nonfinite`` ("cheap", "strict", "off") localises the first
    module that produced a NaN/Inf and records it as an event.

    >>> with ModelTracer(model, optimizer) as tracer:
    ...     train()
    >>> tracer.to_dataframe("grads")
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer] | None = None,
                 *, every: int = 1, keep: int = 1000, backend: str = "auto", track_updates: bool = True,
                 activations_every: int | None = None, nonfinite: str = "cheap", capture_graph: bool = True,
                 profile_every: int | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"ModelTracer needs a torch.nn.Module, got {type(model).__module__}."
                            f"{type(model).__qualname__}: {model!r:.80}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
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
        self._index = {id(p): i for i, p in enumerate(params)}
        self.run = Run(rows, self._meta(model, params, optimizers), keep=keep)
        self._copier = HostCopier()
        self._backends: dict[torch.device, Any] = {}
        self._handles: list[Any] = []
        self._attached = False
        self.step_count = 0  # index of the training step in progress
        self._stepped: set[int] = set()  # optimizers that stepped in the current step
        self._captured: set[int] = set()  # tensor ids whose grads were read this step
        self._snapshots: dict[int, list[tuple[Any, Any, np.ndarray, list[torch.Tensor]]]] = {}
        self._explicit_snapshot: list[tuple[Any, Any, np.ndarray, list[torch.Tensor]]] | None = None
        self._hook_steps = 0
        self._scaler_stop: Any = None  # stops the GradScaler skipped-step listener
        self._outer_frames: dict[int, Any] = {}  # optimizer id -> frame of its running step() hooks
        self._owned_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._unowned_cache: tuple[int, list[int]] = (-1, [])
        self._single_device = len({p.device for p in params}) == 1
        self._known_owned: set[int] = set()  # tensors some optimizer of ours updates
        for opt in optimizers:
            self._known_owned.update(self._owned(opt))
        self._views: list[Any] = []
        self._dataflow = Dataflow(model, self.run, self._backend, self._copier, activations_every=activations_every,
                                  nonfinite=nonfinite, capture_graph=capture_graph, warn=self._warn_internal)
        self.run.meta.update(activations_every=activations_every, nonfinite=nonfinite)
        self._profiler = None  # per-layer timing and memory on sampled steps (dsnotebook.perf.timing)
        if profile_every is not None:
            from dsnotebook.perf.timing import StepProfiler

            self._profiler = StepProfiler(model, self.run, profile_every, warn=self._warn_internal,
                                          optimizers=lambda: [o for o in (r() for r in self._optimizers) if o])

    # -- metadata -----------------------------------------------------------------------
    def _meta(self, model: nn.Module, params: list[nn.Parameter], optimizers: list[Any]) -> dict[str, Any]:
        return {"model": type(model).__name__, "parameters": int(sum(p.numel() for p in params)),
                "tensors": len(params), "trainable": int(sum(p.numel() for p in params if p.requires_grad)),
                "optimizers": [type(o).__name__ for o in optimizers], "every": self.every,
                "torch": torch.__version__, "python": platform.python_version(), "hardware": hardware_info(),
                "started": datetime.datetime.now().isoformat(timespec="seconds")}

    @property
    def model(self) -> nn.Module | None:
        return self._model_ref()

    # -- lifecycle ----------------------------------------------------------------------
    def attach(self) -> "ModelTracer":
        """Install the optimizer hooks (idempotent)."""
        if self._attached:
            return self
        if self._optimizers:
            for ref in self._optimizers:
                opt = ref()
                if opt is not None:
                    self._handles.append(opt.register_step_pre_hook(self._pre_step))
                    self._handles.append(opt.register_step_post_hook(self._post_step))
        else:  # any optimizer that updates this model's parameters
            self._handles.append(register_optimizer_step_pre_hook(self._pre_step))
            self._handles.append(register_optimizer_step_post_hook(self._post_step))
        self._scaler_stop = _gradscaler.listen(self._scaler_skipped_step)
        self._attached = True
        try:
            self._dataflow.attach(self.step_count)
            if self._profiler is not None:  # the optimizer of step_count may have run already
                self._profiler.begin_step(self.step_count + (1 if self._stepped else 0))
        except Exception as exc:
            self._warn_internal(exc)
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
        try:
            self._dataflow.detach(self.step_count)
        except Exception as exc:
            self._warn_internal(exc)
        try:
            if self._profiler is not None:
                self._profiler.detach()
        except Exception as exc:
            self._warn_internal(exc)
        self._snapshots.clear()
        self._outer_frames.clear()
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
        """Per-module hooks held now (graph capture, activation sampling, non-finite checks)."""
        return self._dataflow.hook_count + (self._profiler.hook_count if self._profiler is not None else 0)

    def __enter__(self) -> "ModelTracer":
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    # -- the step clock -----------------------------------------------------------------
    def _recording(self) -> bool:
        return self.step_count % self.every == 0

    def _owned(self, opt: torch.optim.Optimizer) -> list[int]:
        """Model tensor ids that ``opt`` updates, deduplicated; cached while its groups keep their sizes.

        The hot path runs this every step: a cache hit costs one tuple of group sizes.
        """
        sig = tuple(len(g["params"]) for g in opt.param_groups)
        hit = self._owned_cache.get(opt)
        if hit is not None and hit[0] == sig:
            return hit[1]
        index = self._index
        ids = list(dict.fromkeys(index[id(p)] for g in opt.param_groups for p in g["params"] if id(p) in index))
        self._owned_cache[opt] = (sig, ids)
        return ids

    def _unowned(self) -> list[int]:
        """Tensors no optimizer seen so far updates (read at the first optimizer of a step)."""
        if self._unowned_cache[0] != len(self._known_owned):
            known = self._known_owned
            self._unowned_cache = (len(known), [i for i in range(len(self._params)) if i not in known])
        return self._unowned_cache[1]

    def _nested_call(self, opt: torch.optim.Optimizer, pre: bool) -> bool:
        """True for hooks of a step() running inside another step() of the same optimizer.

        An optimizer subclass whose step() calls super().step() fires the hooks twice per
        step.  The outer call's hook-wrapper frame is remembered; an inner call finds it up
        its own stack.  A frame (not a depth counter) so a step() that raised cannot leave
        the tracer thinking it is still nested.
        """
        wrapper = sys._getframe(2)
        outer = self._outer_frames.get(id(opt))
        if pre:
            if outer is not None:
                f = wrapper.f_back
                while f is not None:
                    if f is outer:
                        return True
                    f = f.f_back
            self._outer_frames[id(opt)] = wrapper
            return False
        if outer is not None and outer is not wrapper:
            return True
        self._outer_frames.pop(id(opt), None)
        return False

    def _scaler_skipped_step(self, opt: torch.optim.Optimizer) -> None:
        """GradScaler skipped opt.step() (inf/NaN gradients): record the step all the same.

        The hooks run as if the optimizer had stepped, so the non-finite gradients are
        recorded (and arm the non-finite checks) and the update statistics say, truthfully,
        that nothing changed.
        """
        if self._optimizers and not any(r() is opt for r in self._optimizers):
            return
        if not self._owned(opt):
            return
        self._pre_step(opt, (), {})
        self.run.add_event(self.step_count, "warning", None,
                           "GradScaler skipped optimizer.step(): inf/NaN in the unscaled gradients")
        self._post_step(opt, (), {})

    def _pre_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._nested_call(opt, pre=True):
            return
        try:
            owned = self._owned(opt)
            if not owned:
                return  # another model's optimizer (global hooks)
            self._known_owned.update(owned)
            if id(opt) in self._stepped:
                self._close_step()
            first = not self._stepped
            if first:  # forward and backward of this step are done
                self._end_dataflow(opt)
            extra = self._unowned() if first else []  # first optimizer also reads params nobody owns
            self._stepped.add(id(opt))
            self._hook_steps += 1
            if not self._recording():
                return
            params, captured = self._params, self._captured
            mine = [i for i in owned if params[i].grad is not None]
            todo = mine if first else [i for i in mine if i not in captured]
            if extra:
                todo = todo + [i for i in extra if params[i].grad is not None and i not in captured]
            self._grad_stats(todo)
            captured.update(todo)
            if self.track_updates:
                self._snapshots[id(opt)] = self._snapshot(mine)
        except Exception as exc:  # never break the user's training from inside a hook
            self._warn_internal(exc)
        finally:
            if self._profiler is not None:
                self._profiler.opt_begin()

    def _post_step(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._nested_call(opt, pre=False):
            return
        if self._profiler is not None:
            self._profiler.opt_done()
        try:
            snaps = self._snapshots.pop(id(opt), None)
            if snaps:
                self._update_stats(snaps)
            self._copier.poll()
            if id(opt) in self._stepped:
                self._dataflow.begin_step(self.step_count + 1)
                if self._profiler is not None:
                    self._profiler.begin_step(self.step_count + 1)
        except Exception as exc:
            self._warn_internal(exc)

    def _end_dataflow(self, opt: torch.optim.Optimizer | None = None) -> None:
        try:
            self._dataflow.end_step(self.step_count)
            if self._profiler is not None:
                self._profiler.end_step(self.step_count, opt)
        except Exception as exc:
            self._warn_internal(exc)

    def _close_step(self) -> None:
        self.step_count += 1
        self._stepped.clear()
        self._captured.clear()

    def step(self) -> None:
        """Mark the end of a training step by hand (no optimizer, or a custom update rule)."""
        hooks_active = bool(self._stepped)
        self._end_dataflow()
        if self._recording():
            ids = [i for i, p in enumerate(self._params) if i not in self._captured and p.grad is not None]
            self._grad_stats(ids)
            if self.track_updates and not hooks_active and self._hook_steps == 0:
                if self._explicit_snapshot is not None:
                    self._update_stats(self._explicit_snapshot)
        self._explicit_snapshot = None
        self._close_step()
        if self.track_updates and not hooks_active and self._hook_steps == 0 and self._recording():
            self._explicit_snapshot = self._snapshot(list(range(len(self._params))))
        self._copier.poll()
        if self._attached:
            try:
                self._dataflow.begin_step(self.step_count)
                if self._profiler is not None:
                    self._profiler.begin_step(self.step_count)
            except Exception as exc:
                self._warn_internal(exc)

    # -- statistics ---------------------------------------------------------------------
    def _by_device(self, ids: list[int], tensors: Sequence[torch.Tensor]) -> dict[torch.device, list[int]]:
        if self._single_device:  # the common case: skip a loop over every tensor
            return {tensors[0].device: ids}
        groups: dict[torch.device, list[int]] = defaultdict(list)
        for i, t in zip(ids, tensors):
            groups[t.device].append(i)
        return groups

    def _backend(self, device: torch.device) -> Any:
        b = self._backends.get(device)
        if b is None:
            b = self._backends[device] = make_backend(self.backend_choice, device)
            self.run.meta.setdefault("backends", {})[str(device)] = b.name
        return b

    def _grad_stats(self, ids: list[int]) -> None:
        if not ids:
            return
        grads = [self._params[i].grad for i in ids]
        step = self.step_count
        for device, sub in self._by_device(ids, grads).items():
            tensors = grads if len(sub) == len(ids) else [self._params[i].grad for i in sub]
            values = self._backend(device).grad_stats(tensors)
            idx = np.array(sub, dtype=np.int32)
            self._copier.submit(values, lambda host, s=step, idx=idx: self._on_grads(s, idx, host))

    def _on_grads(self, step: int, idx: np.ndarray, host: np.ndarray) -> None:
        self.run.add_grads(step, idx, host)
        self._dataflow.on_grad_stats(step, host)

    def _snapshot(self, ids: list[int]) -> list[tuple[Any, Any, np.ndarray, list[torch.Tensor]]]:
        out = []
        if not ids:
            return out
        params = [self._params[i] for i in ids]
        for device, sub in self._by_device(ids, params).items():
            # Parameters as they are: backends read them without recording autograd.
            tensors = params if len(sub) == len(ids) else [self._params[i] for i in sub]
            backend = self._backend(device)
            out.append((backend, backend.snapshot(tensors), np.array(sub, dtype=np.int32), tensors))
        return out

    def _update_stats(self, snaps: list[tuple[Any, Any, np.ndarray, list[torch.Tensor]]]) -> None:
        step = self.step_count
        for backend, before, idx, tensors in snaps:
            values = backend.update_stats(before, tensors)
            self._copier.submit(values, lambda host, s=step, idx=idx: self.run.add_updates(s, idx, host))

    def _warn_internal(self, exc: BaseException) -> None:
        msg = f"dsnotebook: statistics skipped at step {self.step_count}: {type(exc).__name__}: {exc}"
        self.run.add_event(self.step_count, "warning", None, msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)

    # -- results ------------------------------------------------------------------------
    def flush(self, wait: bool = False) -> None:
        """Deliver finished device->host copies (all of them with ``wait=True``) to the Run."""
        if wait:
            self._copier.drain()
        else:
            self._copier.poll()

    def to_dataframe(self, table: str = "grads") -> Any:
        self.flush(wait=True)
        return self.run.to_dataframe(table)

    def profile_window(self, active: int = 3, wait: int = 1, warmup: int = 1, trace_path: str | None = None) -> Any:
        """Run ``torch.profiler`` over the next few optimizer steps; per-module rows land in the
        Run's ``profile`` table; ``.export_chrome_trace(path)`` writes a Perfetto trace."""
        from dsnotebook.perf.window import ProfileWindow

        opts = [o for o in (r() for r in self._optimizers) if o]
        return ProfileWindow(self.model, opts[0] if len(opts) == 1 else None, wait=wait, warmup=warmup,
                             active=active, run=self.run, trace_path=trace_path)

    def advise(self, hardware: Any = None, data: Any = None) -> list[Any]:
        """Tuning suggestions for this run (``dsnotebook.advisor.advise`` with the traced model and
        optimizer; pass the DataLoader as ``data`` to make the data-loader advice verifiable)."""
        from dsnotebook.advisor import advise

        self.flush(wait=True)
        opts = [o for o in (r() for r in self._optimizers) if o]
        out = advise(self.run, hardware, model=self.model, optimizer=opts[0] if len(opts) == 1 else None, data=data)
        for s in out:  # verify() pauses this tracer: A/B steps must not land in the Run
            s._refs["tracer"] = weakref.ref(self)
        return out

    def enable_gradient_heatmap(self, display: bool = True) -> Any:
        """Show a live gradient heatmap of this tracer's Run (returns the widget)."""
        from dsnotebook.views.live_heatmap import LiveHeatmap

        view = LiveHeatmap(self.run)
        self._views.append(view)
        if display:
            view.display()
        return view.widget

    def summary(self) -> str:
        from dsnotebook.views.text import text_summary

        self.flush(wait=True)
        return text_summary(self.run)

    def __repr__(self) -> str:
        state = "attached" if self._attached else "detached"
        return f"<ModelTracer {self.run.meta.get('model')} ({state}, step {self.step_count}, every {self.every}): {self.run!r}>"
