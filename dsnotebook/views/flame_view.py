"""FlameView: feeds traced calls to a :class:`~dsnotebook.widgets.flame.FlameWidget`.

The source is a Run (its ``calls`` table, live: the feeder listens for "calls" and redraws at
most every ``min_interval`` seconds) or a DataFrame / list of rows (``dsnotebook.trace.calls()``,
static).  The widget's controls (mode, call, step) come back as trait changes and are answered
with new boxes (:func:`dsnotebook.views.flame_tree.build`).
"""
from __future__ import annotations

import time
from typing import Any

import pandas as pd

from dsnotebook.run import Run
from dsnotebook.views.flame_tree import build, text_tree

__all__ = ["FlameView", "flame"]


class FlameView:
    """One flame widget and the rows behind it (see the module docstring)."""

    def __init__(self, source: Run | pd.DataFrame | list[dict[str, Any]], min_interval: float = 0.5,
                 max_nodes: int = 3000) -> None:
        from dsnotebook.widgets.flame import FlameWidget

        self.min_interval = min_interval
        self.max_nodes = max_nodes
        self.run = source if isinstance(source, Run) else None
        if self.run is None:
            if isinstance(source, pd.DataFrame):
                self._rows = source.astype(object).where(source.notna(), None).to_dict("records")
                self._overhead = dict(source.attrs.get("overhead") or {})
            else:
                self._rows, self._overhead = [dict(r) for r in source], {}
        self.widget = FlameWidget(text_fallback=self.text)
        self.widget.feeder = self  # kept alive with the widget
        self.view: dict[str, Any] = {}
        self._last = 0.0
        self._dirty = False
        self.refresh()
        self.widget.observe(self._on_control, ["mode", "call_index", "step"])
        self._unsubscribe = self.run.subscribe(self._on_run) if self.run is not None else None

    def rows(self) -> list[dict[str, Any]]:
        if self.run is not None:
            return self.run.records.tables["calls"]
        return self._rows

    def overhead(self) -> dict[str, Any]:
        if self.run is not None:
            return dict(self.run.meta.get("calls_overhead") or {})
        return self._overhead

    def refresh(self) -> None:
        """Recompute the boxes for the widget's mode and selection, and send what changed."""
        self._last = time.monotonic()
        self._dirty = False
        w = self.widget
        rows = self.rows()
        view = build(rows, w.mode if w.mode in ("call", "step", "all") else "call", w.call_index, w.step,
                     self.max_nodes)
        self.view = view
        modes = ["call", "step", "all"] if view["steps"] else ["call", "all"]
        w.set_data({"nodes": view["nodes"], "total": view["total"], "calls": view["calls"], "steps": view["steps"],
                     "shown_call": view["call_index"], "shown_step": view["step"], "hidden": view["hidden"],
                     "overhead": self.overhead(), "modes": modes})

    def _on_control(self, _change: Any) -> None:
        self.refresh()

    def _on_run(self, kind: str, _steps: list[int]) -> None:
        if kind != "calls":
            return
        self._dirty = True
        if time.monotonic() - self._last >= self.min_interval:
            self.refresh()

    def follow_step(self, step: int) -> None:
        """The step slider moved: the "step" view shows that step (other views are unchanged)."""
        if self.widget.step != step:
            self.widget.step = step

    def close(self, status: str = "") -> None:
        """Send what is left; stop listening."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.refresh()
        if status:
            self.widget.status = status

    def text(self) -> str:
        over = self.overhead().get("call_s", {}).get("function")
        head = f"traced calls: {self.view.get('calls', 0)} root call(s)"
        if over:
            head += f"; tracing costs {over * 1e6:.2f} us per call (subtracted)"
        return head + "\n" + text_tree(self.view)

    def display(self) -> None:
        from IPython.display import display

        display(self.widget)


def flame(source: Run | pd.DataFrame | list[dict[str, Any]]) -> Any:
    """A flame widget of ``source`` (its text tree outside a browser)."""
    return FlameView(source).widget
