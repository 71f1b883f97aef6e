"""Flame view (anywidget, canvas) of traced calls: time on x, nesting on y.

A renderer: the boxes arrive computed (:func:`dsnotebook.views.flame_tree.build`, fed by
:class:`dsnotebook.views.flame_view.FlameView`).  Traits:

* ``nodes``: ``[{id, parent, name, kind, depth, x, w, count, wall, self, device, errors, error,
  inputs, outputs, module, call, steps}]`` (seconds); ``total``: the x extent;
* ``mode`` ("call": one call as it ran, "step": the calls of one step merged by path, "all":
  every retained call merged), ``modes`` (those available); ``call_index`` / ``calls`` (which
  root call, of how many; -1 = follow the latest); ``step`` / ``steps`` (-1 = follow the
  latest): set by the browser's controls or from Python, the feeder answers with new ``nodes``
  and ``shown_call`` / ``shown_step`` (the call and step shown);
* ``selected``: the clicked box's id (its inputs/outputs statistics are shown below the canvas);
  ``selected_module``: a module path, linked with the dataflow graph and the other panels;
* ``overhead``: the measured cost of tracing (shown in the header, subtracted from the times);
* ``hidden`` (boxes left out), ``status``, ``title``.

Outside a browser ``text_fallback()`` (set by the feeder) is the text/plain representation.
"""
from __future__ import annotations

from typing import Any, Callable

import anywidget
import traitlets

from dsnotebook.core.jsonsafe import to_json
from dsnotebook.widgets import panel
from dsnotebook.widgets.esm import load_esm

__all__ = ["FlameWidget"]


class FlameWidget(anywidget.AnyWidget):
    _esm = load_esm("flame")

    nodes = traitlets.List(traitlets.Dict()).tag(sync=True)
    total = traitlets.Float(0.0).tag(sync=True)
    mode = traitlets.Unicode("call").tag(sync=True)
    modes = traitlets.List(traitlets.Unicode(), default_value=["call", "all"]).tag(sync=True)
    call_index = traitlets.Int(-1).tag(sync=True)
    calls = traitlets.Int(0).tag(sync=True)
    step = traitlets.Int(-1).tag(sync=True)
    steps = traitlets.List(traitlets.Int()).tag(sync=True)
    shown_call = traitlets.Int(-1).tag(sync=True)
    shown_step = traitlets.Int(-1).tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    selected_module = traitlets.Unicode("").tag(sync=True)
    overhead = traitlets.Dict().tag(sync=True)
    hidden = traitlets.Int(0).tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    title = traitlets.Unicode("traced functions").tag(sync=True)

    STATE = ("nodes", "total", "calls", "steps", "shown_call", "shown_step", "hidden", "overhead", "modes")

    def __init__(self, text_fallback: Callable[[], str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.text_fallback = text_fallback

    def set_data(self, state: dict[str, Any]) -> None:
        """Set the data traits in one message (non-finite numbers become None: JSON has no NaN)."""
        panel.set_data(self, {k: to_json(v) for k, v in state.items()}, self.STATE)

    @property
    def has_data(self) -> bool:
        return bool(self.nodes) or self.calls > 0

    def __repr__(self) -> str:
        if self.text_fallback is not None:  # print(widget) in a script: the call tree as text
            try:
                return str(self.text_fallback())
            except Exception:
                pass
        return super().__repr__()

    def _repr_mimebundle_(self, **kwargs: Any):  # type: ignore[override]
        return panel.with_text_fallback(super()._repr_mimebundle_(**kwargs), self.text_fallback, "flame view")
