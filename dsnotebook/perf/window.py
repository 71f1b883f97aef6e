"""A short ``torch.profiler`` window, aggregated per module, exportable as a Chrome/Perfetto trace.

Hook timing (:mod:`dsnotebook.perf.timing`) says which layer is slow; kernel-level truth
(which ops, how much device time, launch gaps) needs the real profiler.  It is
expensive, so it runs for a few steps on demand, on torch's own wait/warmup/active
schedule, and then removes itself.

Per-module attribution: while the window is open every module's forward is wrapped in
a ``record_function("module::<name>")`` range.  An op belongs to the innermost such
range above it; a backward op (``autograd::engine::evaluate_function: ...``) belongs to
the module whose forward op has the same autograd sequence number; ops under
``Optimizer.step`` go to "(optimizer)".
"""
from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections import defaultdict
from typing import Any, Callable

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from dsnotebook.core.hooks import HookSet, hook_modules, in_recompute
from dsnotebook.core.modules import eager_module, is_compiled

PREFIX = "module::"


class ProfileWindow:
    """Profile ``active`` steps after ``wait`` + ``warmup`` steps; results in :attr:`rows`.

    Steps advance at every optimizer step (of ``optimizer``, or of any optimizer), or by
    calling :meth:`step` yourself.  With a ``run`` the rows go to its ``profile`` table.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *, wait: int = 1,
                 warmup: int = 1, active: int = 3, run: Any = None, trace_path: str | None = None,
                 on_done: Callable[["ProfileWindow"], None] | None = None) -> None:
        if min(wait, warmup) < 0 or active < 1:
            raise ValueError(f"need wait >= 0, warmup >= 0, active >= 1; got {wait}, {warmup}, {active}")
        self._model_ref = weakref.ref(model)
        self.wait, self.warmup, self.active = wait, warmup, active
        self.run, self.trace_path, self._on_done = run, trace_path, on_done
        self.rows: list[dict[str, Any]] = []
        self.done = False
        self.prof: torch.profiler.profile | None = None
        self._hooks = HookSet()
        self._opt_handle: Any = None
        self._open: dict[str, list[Any]] = defaultdict(list)
        self._steps = 0
        cuda = any(p.is_cuda for p in model.parameters())
        acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        self.prof = torch.profiler.profile(
            activities=acts, schedule=torch.profiler.schedule(wait=wait, warmup=warmup, active=active, repeat=1),
            on_trace_ready=self._ready)
        self.prof.__enter__()
        if not is_compiled(model):
            hook_modules(eager_module(model), self._pre, self._post, self._hooks)
        hook = lambda *_: self.step()  # noqa: E731
        self._opt_handle = (optimizer.register_step_post_hook(hook) if optimizer is not None
                            else register_optimizer_step_post_hook(hook))

    # -- module ranges --------------------------------------------------------------------
    def _pre(self, name: str, module: nn.Module, args: Any, kwargs: Any) -> None:
        if self.done or in_recompute():
            return
        name = name or "(root)"
        rf = torch.profiler.record_function(PREFIX + name)
        rf.__enter__()
        self._open[name].append(rf)

    def _post(self, name: str, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        name = name or "(root)"
        if self._open.get(name):
            self._open[name].pop().__exit__(None, None, None)

    # -- schedule -------------------------------------------------------------------------
    def step(self) -> None:
        """Advance the schedule by one training step (the optimizer hook does this)."""
        if self.done or self.prof is None:
            return
        self._steps += 1
        self.prof.step()
        if self._steps >= self.wait + self.warmup + self.active:
            self.close()

    def close(self) -> None:
        """Stop profiling now and remove every hook (results of a finished window stay)."""
        self._hooks.remove()
        if self._opt_handle is not None:
            self._opt_handle.remove()
            self._opt_handle = None
        if self.prof is not None and not self.done:
            self.done = True
            self.prof.__exit__(None, None, None)

    def _ready(self, prof: torch.profiler.profile) -> None:
        try:
            self.rows = aggregate(prof.events())
            if self.run is not None:
                self.run.add_records("profile", self.rows)
            # kineto writes a trace once: keep it in a file and copy it on export
            if not self.trace_path:
                fd, self.trace_path = tempfile.mkstemp(prefix="dsnotebook-trace-", suffix=".json")
                os.close(fd)
            prof.export_chrome_trace(str(self.trace_path))
        finally:
            if self._on_done is not None:
                self._on_done(self)

    def export_chrome_trace(self, path: str) -> str:
        """Write the window as a Chrome/Perfetto trace (open in ui.perfetto.dev or chrome://tracing)."""
        if not self.trace_path or not os.path.exists(self.trace_path) or not self.rows:
            raise RuntimeError("the profiler window has not finished yet: run more training steps "
                               f"(needs {self.wait + self.warmup + self.active}, saw {self._steps})")
        if os.path.abspath(path) != os.path.abspath(self.trace_path):
            shutil.copyfile(self.trace_path, path)
        return str(path)

    def to_dataframe(self) -> Any:
        import pandas as pd

        from dsnotebook.run.records import RECORD_COLUMNS

        return pd.DataFrame(self.rows, columns=RECORD_COLUMNS["profile"])


def _self_device_us(e: Any) -> float:
    for attr in ("self_device_time_total", "self_cuda_time_total"):
        v = getattr(e, attr, None)
        if v is not None:
            return float(v)
    return 0.0


def aggregate(events: Any) -> list[dict[str, Any]]:
    """Self CPU and device time of profiler events per (module, phase), with the top ops."""
    fwd_seq: dict[int, str] = {}

    def owner(e: Any) -> tuple[str, str]:
        a = e
        while a is not None:
            if a.name.startswith(PREFIX):
                return a.name[len(PREFIX):], "fwd"
            if a.name.startswith("autograd::engine::evaluate_function"):
                m = fwd_seq.get(getattr(a, "sequence_nr", -1))
                return (m, "bwd") if m else ("(backward)", "bwd")
            if "Optimizer.step" in a.name or "Optimizer.zero_grad" in a.name:
                return "(optimizer)", "opt"
            a = a.cpu_parent
        return "(other)", "other"

    events = [e for e in events]
    for e in events:  # forward ops: remember which module their autograd node came from
        seq = getattr(e, "sequence_nr", -1)
        if seq is not None and seq >= 0 and not e.name.startswith("autograd::"):
            m, phase = owner(e)
            if phase == "fwd":
                fwd_seq.setdefault(seq, m)
    acc: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events:
        if e.name.startswith(PREFIX) or e.name.startswith("ProfilerStep"):
            continue
        key = owner(e)
        r = acc.setdefault(key, {"module": key[0], "phase": key[1], "cpu_s": 0.0, "device_s": 0.0, "ops": 0,
                                 "_ops": defaultdict(float)})
        cpu, dev = e.self_cpu_time_total / 1e6, _self_device_us(e) / 1e6
        r["cpu_s"] += cpu
        r["device_s"] += dev
        r["ops"] += 1
        r["_ops"][e.name] += dev if dev > 0 else cpu
    rows = []
    for r in sorted(acc.values(), key=lambda r: -(r["device_s"] or r["cpu_s"])):
        top = sorted(r.pop("_ops").items(), key=lambda kv: -kv[1])[:5]
        r["top_ops"] = [[n, float(s)] for n, s in top]
        rows.append(r)
    return rows
