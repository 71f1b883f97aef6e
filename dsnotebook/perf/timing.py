"""Per-layer forward/backward time, step phases and memory on sampled steps.

:class:`TimingProbe` runs on the tracer's step clock as the last probe (see
:mod:`dsnotebook.core.probe`): ``before_forward`` after the previous optimizer step,
``after_forward`` when forward and backward are done (the first optimizer pre-step hook or
``tracer.step()``), ``pre_step``/``post_step`` around the optimizer's own work.  Module hooks exist only on sampled
steps; between them the model runs untouched.

Clocks: ``time.perf_counter`` on CPU; pooled CUDA events on GPU (:mod:`dsnotebook.perf.spans`),
read once the step's last event has completed (``query``, checked at the next step
ends: no synchronisation; one only when :data:`~dsnotebook.perf.spans.MAX_UNRESOLVED`
sampled steps wait, at ``flush`` and at detach).  On GPU the phases are positions on the
device timeline: "data" is the time the GPU sat between the previous optimizer step and
the first forward kernel, which is what a data-loader-bound loop looks like from there.

Backward time per module is measured with gradient hooks on tensors (like torch's
``mod_tracker``): it starts when the first gradient reaches one of the module's outputs
and ends when the gradients of its inputs (or, for the first layer, its parameters) are
computed.  No ``register_full_backward_hook``: that wraps outputs and breaks in-place
ops such as ``ReLU(inplace=True)``.  The backward phase ends at an autograd engine
callback queued from the first backward hook, i.e. when the whole backward pass is done.

Steps are split into the phases of :data:`dsnotebook.core.clock.PHASES` by
:func:`dsnotebook.perf.steps.phase_rows`: data, fwd, bwd, opt (every optimizer of the
step), tracer (dsnotebook's own work), comm (collective time seen by
:class:`~dsnotebook.perf.comm.CommTimer`, overlapped with bwd, so not subtracted) and other.
The probe's own work is kept out of the user's phases: hooks for a sampled step are
installed before the step's clock starts (so their cost is the previous step's "tracer"),
the one-time settings probe inside the first forward is an ``own`` span, and a step's
marks are resolved after the next step's clock has started.  With several optimizers a
step ends after its last one; a forward/backward pass run between two optimizers of a
step (a GAN's generator and discriminator) is moved back to the step it belongs to.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable

import torch
from torch import nn

from dsnotebook.perf import comm as profile_comm
from dsnotebook.core.hooks import HookSet, flatten_tensors, hook_modules, in_recompute
from dsnotebook.core.modules import eager_module, is_compiled
from dsnotebook.perf.context import first_optimizer_pre_hook, running_settings
from dsnotebook.perf.memory import SavedTensorMeter, StaticBytes, device_rows
from dsnotebook.perf.spans import MAX_UNRESOLVED, MarkClock, SpanLog, first_grad_tensor, last_mark
from dsnotebook.perf.steps import OptimizerCall, StepMarks, phase_rows
from dsnotebook.core.probe import Probe, ProbeContext, StepBatch


class TimingProbe(Probe):
    """Per-module timing and memory every ``every``-th step, written to the Run (timings, memory)."""

    name = "timing"

    def __init__(self, every: int) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"profile_every must be None or a positive integer, got {every!r}")
        self.every = every
        self._hooks = HookSet()
        self._seen_optimizers: "weakref.WeakSet[torch.optim.Optimizer]" = weakref.WeakSet()
        self._cur: StepMarks | None = None
        self._pending: StepMarks | None = None
        self._log = SpanLog()  # spans of the step being sampled (``_cur``)
        self._pending_log = SpanLog()
        self._unresolved: list[tuple[StepMarks, SpanLog]] = []  # device events maybe still in flight
        self._device_rows: dict[int, list[dict[str, Any]]] = {}  # step -> memory read when it ended
        self._meter: SavedTensorMeter | None = None
        self._static = StaticBytes()
        self._noted = False  # the compiled-model warning, once across re-attaches
        self._opt_hooks = HookSet()  # the optimizer-entry hook (not a module hook)
        self._entry: Any = None  # mark taken when an optimizer's step() was entered
        self._entered: Any = None  # the root module's forward was called (before any probe's hook)
        self._left: Any = None  # the root's forward returned (before other probes' post-hooks)

    def attach(self, ctx: ProbeContext) -> None:
        super().attach(ctx)
        model = ctx.model()
        self.run = run = ctx.run
        self._model_ref = weakref.ref(model)
        self._optimizers = ctx.optimizers
        self._warn = ctx.warn
        self.compiled = is_compiled(model)
        self._device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self._clock = MarkClock(self._device)
        run.meta["profile_every"] = self.every
        dist = profile_comm.distributed_info()
        if dist:
            run.meta["distributed"] = dist
        if hasattr(model, "bucket_bytes_cap"):
            run.meta["ddp"] = {"bucket_cap_mb": model.bucket_bytes_cap / 2**20}
        if self.compiled and not self._noted:
            self._noted = True
            run.add_event(None, "warning", None, "per-layer times and activation memory are off for a torch.compile'd "
                                                 "model (module hooks would recompile it); step phases are recorded")
        self._opt_hooks.add(first_optimizer_pre_hook(self._optimizer_entry))

    def _optimizer_entry(self, *_: Any) -> None:
        """An optimizer's step() starts, before dsnotebook's pre-step work (marks only while timing a step)."""
        if self._pending is not None:
            self._entry = self._clock.mark()

    @property
    def hook_count(self) -> int:
        return len(self._hooks)

    def wants(self, step: int) -> bool:
        return self.sampled(step)

    def sampled(self, step: int) -> bool:
        return step % self.every == 0

    # -- the tracer's clock ---------------------------------------------------------------
    def before_forward(self, step: int) -> None:
        self.begin_step(step)

    def after_forward(self, step: int) -> None:
        self.end_step(step)

    def pre_step(self, batch: StepBatch) -> None:
        """dsnotebook's pre-step work for this optimizer is done (the last probe): its update starts."""
        entry, self._entry = self._entry, None
        opt = batch.optimizer
        if opt is None:
            return  # tracer.step(): no optimizer runs between pre_step and post_step
        self._seen_optimizers.add(opt)
        st = self._pending
        if st is not None and st.step == batch.step:
            st.opts.append(OptimizerCall(entry, self._clock.mark()))

    def post_step(self, batch: StepBatch) -> None:
        """The optimizer's update is over (the first probe called): dsnotebook's post-step work starts."""
        st = self._pending
        if batch.optimizer is not None and st is not None and st.opts and st.opts[-1].end is None:
            st.opts[-1].end = self._clock.mark()

    def begin_step(self, step: int) -> None:
        """``step - 1``'s optimizer (one of them) and dsnotebook's work after it are done; ``step`` may
        start.  Called again after each further optimizer of ``step - 1``."""
        if self._cur is not None and self._cur.step != step:  # a step that never reached its optimizer
            self._hooks.remove()
            self._log.close()
            self._cur = None
        prev = self._pending if self._pending is not None and self._pending.step == step - 1 else None
        cur = self._cur
        if cur is not None and cur.recorded:
            # a further optimizer of step - 1 ran after these passes: they belong to step - 1
            if prev is not None:
                self._pending_log.into(prev.fwd, prev.bwd)
                self._log.into(cur.fwd, cur.bwd)
                prev.absorb(cur)
                prev.comm1 = profile_comm.totals()
            self._log.close()
            self._log = SpanLog()
            cur = self._cur = StepMarks(step, None, comm0=profile_comm.totals())
            if self._meter is not None:
                self._meter.reset()
        elif cur is None and self.sampled(step):
            model = self._model_ref()
            if model is not None:  # set-up first: its cost is dsnotebook's, not this step's data phase
                if self._device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(self._device)
                cur = self._cur = StepMarks(step, None, comm0=profile_comm.totals())
                self._log = SpanLog()
                self._install(model)
        if prev is None and cur is None:
            return
        if prev is not None:  # memory of the step that just ended (host-side counters: no sync)
            self._device_rows[prev.step] = device_rows(prev.step, self._device)
        now = self._clock.mark()
        if prev is not None:
            prev.end = now
            if prev.opts and prev.opts[-1].end is not None:
                prev.opts[-1].after = now
        if cur is not None:
            cur.begin = now

    def end_step(self, step: int, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Forward and backward of ``step`` are done; ``optimizer`` (if any) is about to run."""
        if optimizer is not None:
            self._seen_optimizers.add(optimizer)
        cur, self._cur = self._cur, None
        if cur is not None and cur.step == step:
            cur.bwd_done = self._clock.mark()  # dsnotebook's work starts: finalising the last step included
        if self._pending is not None:  # read when its device events are done: no synchronisation
            self._unresolved.append((self._pending, self._pending_log))
            self._pending = None
        self._resolve(force=False)
        self._hooks.remove()
        self._log.close()
        if self._meter is not None:
            self._meter.end()
        self._entered = self._left = None
        if cur is None or cur.step != step:
            return
        if self._meter is not None:
            cur.act = dict(self._meter.by_module)
        cur.comm1 = profile_comm.totals()
        model = self._model_ref()
        if model is not None:
            opts = {id(o): o for o in [*self._optimizers(), *self._seen_optimizers]}
            cur.grad_rows = self._static.rows(step, model, opts.values())
        self._pending, self._pending_log = cur, self._log
        self._log = SpanLog()

    def flush(self) -> None:
        """Deliver every finished sampled step (waits for the device)."""
        self._resolve(force=True)

    def detach(self) -> None:
        """Remove hooks; finalise a step whose optimizer already ran."""
        self._hooks.remove()
        self._opt_hooks.remove()
        self._entry = None
        if self._meter is not None:
            self._meter.end()
        self._cur = None
        self._log.close()
        if self._pending is not None:
            if self._pending.end is None:
                self._pending.end = self._clock.mark()
            self._unresolved.append((self._pending, self._pending_log))
            self._pending = None
        self._resolve(force=True)

    # -- hooks (sampled steps only) ---------------------------------------------------------
    def _install(self, model: nn.Module) -> None:
        # The root's forward is bracketed twice: outer hooks (first pre-hook, last post-hook) and
        # inner ones (last pre-hook, first post-hook).  Between them run other probes' root hooks:
        # dsnotebook's work, kept out of the data and forward phases.
        root = model
        self._hooks.add(root.register_forward_pre_hook(self._root_enter, prepend=True))
        self._hooks.add(root.register_forward_pre_hook(self._root_pre))
        self._hooks.add(root.register_forward_hook(self._root_post, prepend=True, always_call=True))
        self._hooks.add(root.register_forward_hook(self._root_leave, always_call=True))
        if self.compiled:
            return
        if self._meter is None:
            self._meter = SavedTensorMeter(model)
        self._meter.reset()
        hook_modules(eager_module(model), self._mod_pre, self._mod_post, self._hooks, with_kwargs=False)

    def _root_enter(self, module: nn.Module, args: Any) -> None:
        if self._cur is not None and not in_recompute():
            self._entered = self._clock.mark()

    def _root_pre(self, module: nn.Module, args: Any) -> None:
        cur = self._cur
        if cur is None or in_recompute():
            return
        entered, self._entered = self._entered, None
        first = not cur.root_fwd
        if not cur.saw_forward:
            cur.saw_forward = True
            if "settings" not in self.run.meta:  # once per run
                entered = entered if entered is not None else self._clock.mark()
                self._note_settings(module)
        self._clock.refresh_stream()
        start = self._clock.mark()
        if entered is not None:
            cur.own.append((entered, start, first))
        cur.root_fwd.append((start, None))
        if self._meter is not None:
            self._meter.begin()

    def _root_leave(self, module: nn.Module, args: Any, output: Any) -> None:
        cur, left = self._cur, self._left
        self._left = None
        if cur is not None and left is not None and not in_recompute():
            cur.own.append((left, self._clock.mark(), False))

    def _note_settings(self, model: nn.Module) -> None:
        """What the advisor needs to know about the running configuration (read once)."""
        try:
            self.run.meta["settings"] = running_settings(model, self._device, self.compiled)
        except Exception as exc:
            self._warn(exc)

    def _root_post(self, module: nn.Module, args: Any, output: Any) -> None:
        cur = self._cur
        if cur is None or in_recompute() or not cur.root_fwd or cur.root_fwd[-1][1] is not None:
            return
        self._left = end = self._clock.mark()
        cur.root_fwd[-1] = (cur.root_fwd[-1][0], end)
        if self._meter is not None:
            self._meter.end()
        try:
            out = [t for _, t in flatten_tensors(output, limit=64) if t.requires_grad]
            if out:
                self._hooks.add(torch.autograd.graph.register_multi_grad_hook(out, self._bwd_begin(cur), mode="any"))
        except Exception as exc:
            self._warn(exc)

    def _bwd_begin(self, cur: StepMarks) -> Callable[..., None]:
        span: list[Any] = [None, None]

        def done() -> None:
            span[1] = self._clock.mark()

        def hook(*_: Any) -> None:
            if span[0] is None:
                span[0] = self._clock.mark()
                cur.root_bwd.append(span)
                torch.autograd.Variable._execution_engine.queue_callback(done)
        return hook

    def _mod_pre(self, name: str, module: nn.Module, args: Any, kwargs: Any) -> None:
        if self._cur is None or in_recompute():
            return
        name = name or "(root)"
        log = self._log
        log.open_names.append(name)
        log.open_t.append(self._clock.mark())
        log.open_in.append(first_grad_tensor(args))
        if self._meter is not None:
            self._meter.push(name)

    def _mod_post(self, name: str, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        cur = self._cur
        if cur is None or in_recompute():
            return
        end = self._clock.mark()
        name = name or "(root)"
        log = self._log
        names = log.open_names
        if not names:
            return
        i = len(names) - 1
        if names[i] != name:  # not the innermost open call (a hook that did not run): find this module's
            while i >= 0 and names[i] != name:
                i -= 1
            if i < 0:
                return
        del names[i]
        start, ins = log.open_t.pop(i), log.open_in.pop(i)
        log.fwd_names.append(name)
        log.fwd_a.append(start)
        log.fwd_b.append(end)
        if self._meter is not None:
            self._meter.pop(name)
        try:
            self._track_backward(name, module, ins, output)
        except Exception as exc:
            self._warn(exc)

    def _track_backward(self, name: str, module: nn.Module, ins: torch.Tensor | None, output: Any) -> None:
        # A module's backward starts when its first output's gradient is complete and ends when its
        # first input's (or, for a first layer, its first parameter's) is -- the same autograd node
        # computes them all.  One hook per tensor (GradMark), shared with the neighbouring modules.
        out = first_grad_tensor(output)
        if out is None:
            return
        end = ins if ins is not None else next((p for p in module.parameters() if p.requires_grad), None)
        if end is None:
            return
        log, clock = self._log, self._clock
        g_out, handle = log.grad_mark(out, clock)
        if handle is not None:
            self._hooks.add(handle)
        g_in, handle = log.grad_mark(end, clock)
        if handle is not None:
            self._hooks.add(handle)
        log.bwd_names.append(name)
        log.bwd_out.append(g_out)
        log.bwd_in.append(g_in)

    # -- results ------------------------------------------------------------------------
    def _resolve(self, force: bool) -> None:
        """Finalise sampled steps whose device events are done, oldest first (all of them with
        ``force``, or when more than :data:`MAX_UNRESOLVED` wait: then one synchronisation)."""
        while self._unresolved:
            st, log = self._unresolved[0]
            ready = self._clock.done(last_mark(st))
            if not (ready or force or len(self._unresolved) > MAX_UNRESOLVED):
                return
            self._unresolved.pop(0)
            self._finalize(st, log, ready)

    def _finalize(self, st: StepMarks, log: SpanLog, ready: bool) -> None:
        try:
            if not ready:
                self._clock.sync()
            log.into(st.fwd, st.bwd)
            try:
                rows = phase_rows(st, self._clock.seconds)
            except RuntimeError:  # an event on another stream not reached yet
                self._clock.sync()
                rows = phase_rows(st, self._clock.seconds)
            self.run.add_records("timings", rows)
            dev = self._device_rows.pop(st.step, None)
            self.run.add_records("memory", [*st.grad_rows, *({"step": st.step, "module": m, "kind": "activations",
                                                              "bytes": int(b)} for m, b in st.act.items()),
                                            *(dev if dev is not None else device_rows(st.step, self._device))])
            self._clock.release_before(st.end)
        except Exception as exc:
            self._warn(exc)
        for k in [k for k in self._device_rows if k < st.step]:
            self._device_rows.pop(k)
