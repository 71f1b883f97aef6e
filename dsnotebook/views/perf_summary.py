"""One JSON-able snapshot of a Run's performance records, shaped for the performance panel.

The panel needs three things at a glance: the step split (one real sampled step, the
median one, so the bars add up), per-layer forward/backward bars (leaf modules, medians
over sampled steps, in model order) and memory (per-layer activations plus model state
and device/process peaks).  Computing them here keeps the widget a pure renderer and
lets the text summary and the HTML report show the same numbers.
"""
from __future__ import annotations

from typing import Any

from dsnotebook.perf import measures

PHASE_ORDER = ("data", "fwd", "bwd", "opt", "comm", "tracer", "other")


def performance_summary(run: Any) -> dict[str, Any]:
    """{"sampled_steps", "step": {phase: s}, "layers": [{module, fwd, bwd, calls, activation_bytes}],
    "memory": {kind: bytes}, "profile": rows of the torch.profiler window}; empty lists when unprofiled."""
    timings = run.records.tables["timings"]
    phases = measures.phases(run)
    times = measures.module_times(run)
    act = measures.activations_by_module(run)
    order = list(dict.fromkeys(r["module"] for r in timings if r["module"] != "(step)" and r["phase"] == "fwd"))
    leaves = measures.leaf_modules(order)
    layers = [{"module": m, "fwd": float(times[m]["fwd"]), "bwd": float(times[m]["bwd"]),
               "calls": int(times[m]["calls"]), "activation_bytes": int(act.get(m, 0))} for m in leaves if m in times]
    mem = measures.memory(run)
    return {
        "sampled_steps": sorted({r["step"] for r in timings}),
        "step": {k: float(phases[k]) for k in (*PHASE_ORDER, "step", "step_traced") if k in phases},
        "layers": layers,
        "memory": {k: int(v) for k, v in mem.items()},
        "profile": list(run.records.tables["profile"]),
    }
