"""Per-layer forward/backward time, step phases and memory on sampled steps.

:class:`TimingProbe` runs on the tracer's step clock as the last probe (see
:mod:`dsnotebook.core.probe`): ``before_forward`` after the previous optimizer step,
``after_forward`` when forward and backward are done (the first optimizer pre-step hook or
``tracer.step()``), ``pre_step``/``post_step`` around the optimizer's own work.  Module hooks exist only on sampled
steps; between them the model runs untouched.

Clocks: ``time.perf_counter`` on CPU; CUDA events on GPU (recorded in the hooks, read
after one ``torch.cuda.synchronize`` when the step is finalised, so sampled steps cost
one sync and unsampled steps none).  On GPU the phases are positions on the device
timeline: "data" is the time the GPU sat between the previous optimizer step and the
first forward kernel, which is what a data-loader-bound loop looks like from there.

Backward time per module is measured with gradient hooks on tensors (like torch's
``mod_tracker``): it starts when the first gradient reaches one of the module's outputs
and ends when the gradients of its inputs (or, for the first layer, its parameters) are
computed.  No ``register_full_backward_hook``: that wraps outputs and breaks in-place
ops such as ``ReLU(inplace=True)``.  The backward phase ends at an autograd engine
callback queued from the first backward hook, i.e. when the whole backward pass is done.

Steps are split into: data (begin of step to first forward), fwd, bwd, opt (optimizer
step), tracer (dsnotebook's own statistics at the optimizer hooks), comm (collective time seen by :class:`~dsnotebook.perf.comm.CommTimer`,
overlapped with bwd, so not subtracted) and other (the rest: loss, clipping, logging).
"""
from __future__ import annotations

import weakref
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from dsnotebook.perf import comm as profile_comm
from dsnotebook.core.hooks import HookSet, flatten_tensors, in_recompute
from dsnotebook.core.modules import eager_module, is_compiled, named_modules
from dsnotebook.core.clock import Clock as _Clock
from dsnotebook.perf.memory import SavedTensorMeter, device_rows, static_rows
from dsnotebook.core.probe import Probe, ProbeContext, StepBatch

PHASES = ("data", "fwd", "bwd", "opt", "comm", "tracer", "other", "step")


@dataclass
class _StepState:
    step: int
    begin: Any
    fwd: dict[str, list[tuple[Any, Any]]] = field(default_factory=lambda: defaultdict(list))
    bwd: dict[str, list[tuple[Any, Any]]] = field(default_factory=lambda: defaultdict(list))
    root_fwd: list[tuple[Any, Any]] = field(default_factory=list)
    root_bwd: list[list[Any]] = field(default_factory=list)  # [start, end] per backward pass
    bwd_done: Any = None  # end_step: forward/backward over, tracer work begins
    opt_start: Any = None
    opt_end: Any = None
    end: Any = None  # begin of the next step
    comm0: tuple[float, int, int] = (0.0, 0, 0)
    comm1: tuple[float, int, int] | None = None
    grad_rows: list[dict[str, Any]] = field(default_factory=list)
    act: dict[str, int] = field(default_factory=dict)  # saved-for-backward bytes per module
    saw_forward: bool = False


class TimingProbe(Probe):
    """Per-module timing and memory every ``every``-th step, written to the Run (timings, memory)."""

    name = "timing"

    def __init__(self, every: int) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"profile_every must be None or a positive integer, got {every!r}")
        self.every = every
        self._hooks = HookSet()
        self._seen_optimizers: "weakref.WeakSet[torch.optim.Optimizer]" = weakref.WeakSet()
        self._cur: _StepState | None = None
        self._pending: _StepState | None = None
        self._open: dict[str, list[Any]] = defaultdict(list)
        self._meter: SavedTensorMeter | None = None
        self._noted = False  # the compiled-model warning, once across re-attaches

    def attach(self, ctx: ProbeContext) -> None:
        super().attach(ctx)
        model = ctx.model()
        self.run = run = ctx.run
        self._model_ref = weakref.ref(model)
        self._optimizers = ctx.optimizers
        self._warn = ctx.warn
        self.compiled = is_compiled(model)
        self._device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self._clock = _Clock(self._device)
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
        if batch.optimizer is not None:
            self._seen_optimizers.add(batch.optimizer)
        self.opt_begin()

    def post_step(self, batch: StepBatch) -> None:
        self.opt_done()

    def begin_step(self, step: int) -> None:
        """The previous step's optimizer is done; ``step`` is about to load data and run."""
        now = None
        if self._pending is not None and self._pending.step == step - 1:
            now = self._clock.mark()
            self._pending.end = now
        if not self.sampled(step):
            return
        if self._cur is not None and self._cur.step == step:
            if not self._cur.saw_forward:  # called again (second optimizer): the step starts now
                self._cur.begin = now if now is not None else self._clock.mark()
            return
        model = self._model_ref()
        if model is None:
            return
        if self._device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self._device)
        self._cur = _StepState(step, now if now is not None else self._clock.mark(), comm0=profile_comm.totals())
        self._install(model)

    def end_step(self, step: int, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Forward and backward of ``step`` are done; ``optimizer`` (if any) is about to run."""
        if optimizer is not None:
            self._seen_optimizers.add(optimizer)
        if self._pending is not None:
            self._finalize(self._pending)
            self._pending = None
        cur, self._cur = self._cur, None
        self._hooks.remove()
        if self._meter is not None:
            self._meter.end()
        self._open.clear()
        if cur is None or cur.step != step:
            return
        cur.bwd_done = self._clock.mark()
        if self._meter is not None:
            cur.act = dict(self._meter.by_module)
        cur.comm1 = profile_comm.totals()
        model = self._model_ref()
        if model is not None:
            opts = {id(o): o for o in [*self._optimizers(), *self._seen_optimizers]}
            cur.grad_rows = static_rows(step, model, opts.values())
        self._pending = cur

    def opt_begin(self) -> None:
        """The tracer's own pre-step work is done: the optimizer update starts now."""
        if self._pending is not None and self._pending.opt_start is None:
            self._pending.opt_start = self._clock.mark()

    def opt_done(self) -> None:
        """The optimizer update is over (before the tracer's post-step work)."""
        if self._pending is not None and self._pending.opt_start is not None:
            self._pending.opt_end = self._clock.mark()

    def detach(self) -> None:
        """Remove hooks; finalise a step whose optimizer already ran."""
        self._hooks.remove()
        if self._meter is not None:
            self._meter.end()
        self._cur = None
        if self._pending is not None:
            if self._pending.end is None:
                self._pending.end = self._clock.mark()
            self._finalize(self._pending)
            self._pending = None

    # -- hooks (sampled steps only) ---------------------------------------------------------
    def _install(self, model: nn.Module) -> None:
        root = model
        self._hooks.add(root.register_forward_pre_hook(self._root_pre))
        try:
            self._hooks.add(root.register_forward_hook(self._root_post, always_call=True))
        except TypeError:  # pragma: no cover - torch < 2.1
            self._hooks.add(root.register_forward_hook(self._root_post))
        if self.compiled:
            return
        if self._meter is None:
            self._meter = SavedTensorMeter(model)
        self._meter.reset()
        for name, mod in named_modules(eager_module(model)):
            name = name or "(root)"
            self._hooks.add(mod.register_forward_pre_hook(self._mod_pre(name)))
            try:
                self._hooks.add(mod.register_forward_hook(self._mod_post(name), always_call=True))
            except TypeError:  # pragma: no cover
                self._hooks.add(mod.register_forward_hook(self._mod_post(name)))

    def _root_pre(self, module: nn.Module, args: Any) -> None:
        cur = self._cur
        if cur is None or in_recompute():
            return
        if not cur.saw_forward:
            cur.saw_forward = True
            if "settings" not in self.run.meta:
                self._note_settings(module)
        cur.root_fwd.append((self._clock.mark(), None))
        if self._meter is not None:
            self._meter.begin()

    def _note_settings(self, model: nn.Module) -> None:
        """What the advisor needs to know about the running configuration (read once)."""
        try:
            dev = self._device.type
            amp = torch.is_autocast_enabled(dev) if dev in ("cuda", "cpu") else False
            amp_dtype = str(torch.get_autocast_dtype(dev)).replace("torch.", "") if amp else None
            convs = [p for p in model.parameters() if p.dim() == 4]
            self.run.meta["settings"] = {
                "device": dev, "autocast": amp_dtype, "compiled": self.compiled,
                "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
                "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
                "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
                "channels_last": bool(convs) and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs),
                "param_dtypes": sorted({str(p.dtype).replace("torch.", "") for p in model.parameters()}),
            }
        except Exception as exc:
            self._warn(exc)

    def _root_post(self, module: nn.Module, args: Any, output: Any) -> None:
        cur = self._cur
        if cur is None or in_recompute() or not cur.root_fwd or cur.root_fwd[-1][1] is not None:
            return
        cur.root_fwd[-1] = (cur.root_fwd[-1][0], self._clock.mark())
        if self._meter is not None:
            self._meter.end()
        try:
            out = [t for _, t in flatten_tensors(output, limit=64) if t.requires_grad]
            if out:
                self._hooks.add(torch.autograd.graph.register_multi_grad_hook(out, self._bwd_begin(cur), mode="any"))
        except Exception as exc:
            self._warn(exc)

    def _bwd_begin(self, cur: _StepState) -> Callable[..., None]:
        span: list[Any] = [None, None]

        def done() -> None:
            span[1] = self._clock.mark()

        def hook(*_: Any) -> None:
            if span[0] is None:
                span[0] = self._clock.mark()
                cur.root_bwd.append(span)
                torch.autograd.Variable._execution_engine.queue_callback(done)
        return hook

    def _mod_pre(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            cur = self._cur
            if cur is None or in_recompute():
                return
            ins = _grad_tensors(args)
            self._open[name].append((self._clock.mark(), ins))
            if self._meter is not None:
                self._meter.push(name)
        return hook

    def _mod_post(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            cur = self._cur
            if cur is None or in_recompute() or not self._open.get(name):
                return
            start, ins = self._open[name].pop()
            cur.fwd[name].append((start, self._clock.mark()))
            if self._meter is not None:
                self._meter.pop(name)
            try:
                self._track_backward(cur, name, module, ins, output)
            except Exception as exc:
                self._warn(exc)
        return hook

    def _track_backward(self, cur: _StepState, name: str, module: nn.Module, ins: list[torch.Tensor], output: Any) -> None:
        # One plain tensor hook at each end (register_multi_grad_hook costs ~35 us per call): the
        # first output's gradient starts the module's backward, the first input's (or, for a first
        # layer, the first parameter's) gradient ends it -- the same autograd node computes them all.
        outs = _grad_tensors(output)
        if not outs:
            return
        end = ins[0] if ins else next((p for p in module.parameters() if p.requires_grad), None)
        if end is None:
            return
        call: list[Any] = [None]

        def started(*_: Any) -> None:
            if call[0] is None:
                call[0] = self._clock.mark()

        def finished(*_: Any) -> None:
            if call[0] is not None:
                cur.bwd[name].append((call[0], self._clock.mark()))
                call[0] = None

        self._hooks.add(outs[0].register_hook(started))
        self._hooks.add(end.register_hook(finished))

    # -- results ------------------------------------------------------------------------
    def _finalize(self, st: _StepState) -> None:
        try:
            self._clock.sync()
            self.run.add_records("timings", self._timing_rows(st))
            mem = list(st.grad_rows)
            mem += [{"step": st.step, "module": m, "kind": "activations", "bytes": int(b)}
                    for m, b in st.act.items()]
            mem += device_rows(st.step, self._device)
            self.run.add_records("memory", mem)
        except Exception as exc:
            self._warn(exc)

    def _timing_rows(self, st: _StepState) -> list[dict[str, Any]]:
        sec = self._clock.seconds
        rows = []
        for phase, table in (("fwd", st.fwd), ("bwd", st.bwd)):
            for name, spans in table.items():
                rows.append({"step": st.step, "module": name, "phase": phase,
                             "seconds": float(sum(sec(a, b) for a, b in spans)), "calls": len(spans)})
        first = st.root_fwd[0][0] if st.root_fwd else st.bwd_done
        fwd = sum(sec(a, b) for a, b in st.root_fwd if b is not None)
        bwd = sum(sec(a, b) for a, b in st.root_bwd if b is not None)
        data = sec(st.begin, first)
        end = st.end if st.end is not None else (st.opt_end if st.opt_end is not None else st.bwd_done)
        if st.opt_start is not None and st.opt_end is not None:
            opt = sec(st.opt_start, st.opt_end)
            tracer = sec(st.bwd_done, st.opt_start) + sec(st.opt_end, end)
        else:  # tracer.step() by hand: no optimizer hooks
            opt, tracer = 0.0, 0.0
        total = sec(st.begin, end)
        c1 = st.comm1 or st.comm0
        comm, buckets = c1[0] - st.comm0[0], c1[1] - st.comm0[1]
        other = max(0.0, total - data - fwd - bwd - opt - tracer)
        for phase, v, n in (("data", data, 1), ("fwd", fwd, len(st.root_fwd)), ("bwd", bwd, len(st.root_bwd)), ("opt", opt, 1),
                            ("comm", comm, buckets), ("tracer", tracer, 1), ("other", other, 1), ("step", total, 1)):
            rows.append({"step": st.step, "module": "(step)", "phase": phase, "seconds": float(max(v, 0.0)),
                         "calls": int(n)})
        return rows


def _grad_tensors(obj: Any) -> list[torch.Tensor]:
    """Tensors that require grad in a module's inputs or outputs (fast path for one tensor)."""
    if isinstance(obj, torch.Tensor):
        return [obj] if obj.requires_grad else []
    if isinstance(obj, tuple) and len(obj) == 1 and isinstance(obj[0], torch.Tensor):
        return [obj[0]] if obj[0].requires_grad else []
    return [t for _, t in flatten_tensors(obj, limit=16) if t.requires_grad]
