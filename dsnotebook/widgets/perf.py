"""Performance panel (anywidget): per-layer forward/backward time, step breakdown, memory.

A pure renderer: every number arrives already computed (see
:func:`dsnotebook.views.perf_summary.panel_state`, which reads ``dsnotebook.perf.measures``,
the same source as the advisor).  Traits:

* ``step``: ``{phase: seconds, "step", "step_traced"}`` of the median steady sampled step
  (warm-up left out): the breakdown bar and the step time shown;
* ``phases``: ``[{"step", <phase>: seconds..., "total", "warmup"}]``, one row per sampled
  step (the per-step columns);
* ``layers``: ``[{"module", "fwd", "bwd", "calls", "activation_bytes"}]`` (median seconds
  per sampled step, leaf modules in model order);
* ``memory``: ``[{"module", "kind", "bytes"}]`` of the latest sampled step;
* ``sampled_steps`` / ``steady_steps``: how many sampled steps, and how many the medians use;
* ``phase_styles``: ``[[name, label, colour], ...]`` in display order (the phase names are
  defined once, in :mod:`dsnotebook.core.clock`; the browser reads them from here);
* ``selected_module`` (click a bar; linked with the other panels), ``status``, ``title``.
"""
from __future__ import annotations

from typing import Any

import anywidget
import traitlets

from dsnotebook.core.clock import PHASE_LABELS, PHASES
from dsnotebook.widgets.esm import load_esm
from dsnotebook.widgets.panel import set_data

__all__ = ["PerfWidget", "PHASE_COLORS", "PHASE_STYLES"]

PHASE_COLORS: dict[str, str] = {"data": "#8e7cc3", "fwd": "#3b82c4", "bwd": "#e0822b", "opt": "#3a9d5d",
                                "comm": "#c0392b", "tracer": "#9e9e9e", "other": "#c8b273"}
#: [[name, label, colour], ...] for every phase, in display order
PHASE_STYLES: list[list[str]] = [[p, PHASE_LABELS.get(p, p), PHASE_COLORS.get(p, "#888888")] for p in PHASES]


class PerfWidget(anywidget.AnyWidget):
    _esm = load_esm("perf")

    step = traitlets.Dict().tag(sync=True)
    phases = traitlets.List(traitlets.Dict()).tag(sync=True)
    layers = traitlets.List(traitlets.Dict()).tag(sync=True)
    memory = traitlets.List(traitlets.Dict()).tag(sync=True)
    sampled_steps = traitlets.Int(0).tag(sync=True)
    steady_steps = traitlets.Int(0).tag(sync=True)
    phase_styles = traitlets.List(traitlets.List(traitlets.Unicode()), default_value=PHASE_STYLES).tag(sync=True)
    selected_module = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    title = traitlets.Unicode("performance").tag(sync=True)

    STATE = ("step", "phases", "layers", "memory", "sampled_steps", "steady_steps")

    def set_data(self, state: dict[str, Any]) -> None:
        """Set the data traits in one message; only those that changed are sent (see widgets.panel)."""
        set_data(self, state, self.STATE)

    @property
    def has_data(self) -> bool:
        return bool(self.layers or self.phases or self.memory)
