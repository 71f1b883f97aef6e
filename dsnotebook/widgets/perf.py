"""Performance panel (anywidget): per-layer forward/backward time, step breakdown, memory.

Traits are small JSON tables (already aggregated by the feeder, see
:func:`perf_tables`): ``layers`` ``[{"module", "fwd", "bwd", "calls"}]`` (seconds per
sampled step), ``phases`` ``[{"step", "data", "fwd", "bwd", "opt", "comm", "tracer",
"other", "total"}]`` (seconds, one row per sampled step, the most recent
``MAX_PHASE_ROWS``), ``memory`` ``[{"module", "kind", "bytes"}]`` (the latest sampled
step), ``sampled_steps``, and ``selected_module`` (click a bar; linked with the other panels).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

import anywidget
import traitlets

from dsnotebook.widgets.esm import load_esm

__all__ = ["PerfWidget", "perf_tables", "PHASES"]

PHASES = ("data", "fwd", "bwd", "opt", "comm", "tracer", "other")
MAX_PHASE_ROWS = 200


def perf_tables(timings: Iterable[dict[str, Any]], memory: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Run record tables (``timings``, ``memory``) -> the panel's traits."""
    per_layer: dict[tuple[str, str], float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    order: dict[str, int] = {}
    phases: dict[int, dict[str, Any]] = {}
    layer_steps: set[int] = set()
    for r in timings:
        step, module, phase = r.get("step"), str(r.get("module")), str(r.get("phase"))
        sec = float(r.get("seconds") or 0.0)
        if module == "(step)":
            row = phases.setdefault(int(step), {"step": int(step), **{p: 0.0 for p in PHASES}, "total": 0.0})
            row["total" if phase == "step" else phase] = sec
            continue
        if phase not in ("fwd", "bwd"):
            continue
        order.setdefault(module, len(order))
        per_layer[(module, phase)] += sec
        if phase == "fwd":
            calls[module] += int(r.get("calls") or 1)
        if step is not None:
            layer_steps.add(int(step))
    n = max(1, len(layer_steps))
    layers = [{"module": m, "fwd": per_layer.get((m, "fwd"), 0.0) / n, "bwd": per_layer.get((m, "bwd"), 0.0) / n,
               "calls": calls.get(m, 0) / n} for m in sorted(order, key=order.get)]
    mem = list(memory)
    last = max((int(r["step"]) for r in mem if r.get("step") is not None), default=None)
    mem_rows = [{"module": str(r.get("module")), "kind": str(r.get("kind")), "bytes": int(r.get("bytes") or 0)}
                for r in mem if r.get("step") == last]
    return {"layers": layers, "phases": [phases[s] for s in sorted(phases)][-MAX_PHASE_ROWS:],
            "memory": mem_rows, "sampled_steps": len(layer_steps) or len(phases)}


class PerfWidget(anywidget.AnyWidget):
    _esm = load_esm("perf")

    layers = traitlets.List(traitlets.Dict()).tag(sync=True)
    phases = traitlets.List(traitlets.Dict()).tag(sync=True)
    memory = traitlets.List(traitlets.Dict()).tag(sync=True)
    sampled_steps = traitlets.Int(0).tag(sync=True)
    selected_module = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    title = traitlets.Unicode("performance").tag(sync=True)

    def set_tables(self, timings: Iterable[dict[str, Any]], memory: Iterable[dict[str, Any]]) -> None:
        t = perf_tables(timings, memory)
        with self.hold_sync():
            for k, v in t.items():
                if getattr(self, k) != v:
                    setattr(self, k, v)

    @property
    def has_data(self) -> bool:
        return bool(self.layers or self.phases or self.memory)
