"""A Run's performance records shaped for the performance panel (and any JSON reader).

The panel needs three things at a glance: the step split (one real sampled step, the
median one, so the bars add up: the very numbers the advisor reads), per-layer
forward/backward bars (leaf modules, medians over sampled steps, in model order) and
memory (per-layer activations plus model state and device/process peaks).  Every number
comes from :mod:`dsnotebook.perf.measures`; this module only shapes them, so the widget
stays a pure renderer and the text summary and the report show the same numbers.
"""
from __future__ import annotations

from typing import Any

from dsnotebook.perf import measures

#: the most recent sampled steps sent to the panel's per-step columns
MAX_PHASE_ROWS = 200


def performance_summary(run: Any) -> dict[str, Any]:
    """A JSON-able snapshot (empty lists and dicts when unprofiled).

    ``sampled_steps``: every sampled step; ``steady_steps``: those the step medians use (warm-up
    left out); ``step``: {phase: seconds, "step", "step_traced"} of the median step
    (:func:`measures.phases`); ``steps``: one row per sampled step {"step", phases...,
    "total" (wall time), "warmup"}; ``layers``: [{module, fwd, bwd, calls, activation_bytes}]
    for leaf modules in model order (medians); ``memory``: {kind: bytes} and ``memory_rows``:
    [{module, kind, bytes}] of the latest sampled step; ``profile``: rows of the torch.profiler window.
    """
    per_step = measures.step_phases(run)
    times = measures.module_times(run)
    act = measures.activations_by_module(run)
    layers = [{"module": str(m), "fwd": float(times.at[m, "fwd"]), "bwd": float(times.at[m, "bwd"]),
               "calls": int(times.at[m, "calls"]), "activation_bytes": int(act.get(m, 0))}
              for m in measures.leaf_modules(list(times.index))]
    steps = [{"step": int(r.step), **{p: float(getattr(r, p)) for p in measures.PHASES},
              "total": float(r.step_traced), "warmup": bool(r.warmup)} for r in per_step.itertuples()]
    sampled = sorted({int(r["step"]) for r in run.records.tables["timings"] if r.get("step") is not None})
    return {
        "sampled_steps": sampled,
        "steady_steps": [int(x) for x in per_step.loc[~per_step["warmup"].astype(bool), "step"]],
        "step": measures.phases(run),
        "steps": steps,
        "layers": layers,
        "memory": measures.memory(run),
        "memory_rows": [{"module": str(m), "kind": str(k), "bytes": int(b)}
                        for m, k, b in measures.memory_rows(run).itertuples(index=False)],
        "profile": list(run.records.tables["profile"]),
    }


def panel_state(run: Any) -> dict[str, Any]:
    """The performance panel's traits (:class:`dsnotebook.widgets.perf.PerfWidget`) for ``run``."""
    s = performance_summary(run)
    return {"step": s["step"], "phases": s["steps"][-MAX_PHASE_ROWS:], "layers": s["layers"],
            "memory": s["memory_rows"], "sampled_steps": len(s["sampled_steps"]),
            "steady_steps": len(s["steady_steps"])}


def show(widget: Any, run: Any) -> None:
    """Refresh a PerfWidget from ``run`` (the live dashboard calls this at most once a second)."""
    widget.set_data(panel_state(run))
