"""Dashboard: heatmap + graph (+ events) + performance + suggestions in one ipywidgets layout.

Layout: the heatmap on top, below it a Tab with the dataflow graph (its events list
underneath), the performance panel and the suggestions panel; a tab appears once its
panel has something to show (``refresh``).

Linked selection, all through synced traits (``traitlets.link`` / ``dlink``), so it also
works between two browser windows and from Python:

* ``heatmap.selected_module`` <-> ``graph.selected_module`` <-> ``perf.selected_module``
  (a module path; clicking a heatmap row outlines its graph node(s) and the other way
  round; a bar of the performance panel selects its module too);
* ``heatmap.hover_step`` (while the pointer is over a cell, debounced) else
  ``heatmap.selected_step`` -> ``graph.step`` (the graph shows the latest column at or
  before that step; -1 = follow the latest).
* the flame view of traced functions (a "functions" tab once a traced call ran): its
  ``selected_module`` is linked like the others (a module box selects its graph node), and
  ``heatmap.selected_step`` -> ``flame.step`` (its "step" view shows that step).
* ``heatmap.selected_tensor`` <-> ``histogram.tensor``: a click on a heatmap row shows that
  tensor's log2|g| histogram over steps under the heatmap; its close button ("") hides it.
  Linked in the browser too (``jslink``): the panel opens at once, and says it waits for the
  kernel when a running cell holds up the data.

A distributed run (rank 0 of a torch.distributed job) adds a "ranks" tab: the rank x phase
panel, once the ranks' first sampled steps have been gathered.
"""
from __future__ import annotations

from typing import Any, Callable

import ipywidgets
import traitlets

from dsnotebook.widgets.panel import with_text_fallback

__all__ = ["Dashboard"]


class Dashboard(ipywidgets.VBox):
    def __init__(self, heatmap: Any, graph: Any = None, perf: Any = None, suggestions: Any = None,
                 text_fallback: Callable[[], str] | None = None, flame: Any = None, histogram: Any = None,
                 ranks: Any = None, **kwargs: Any) -> None:
        self.heatmap, self.graph, self.perf, self.suggestions = heatmap, graph, perf, suggestions
        self.flame = flame
        self.histogram = histogram
        self.ranks = ranks
        self.text_fallback = text_fallback
        self.tabs = ipywidgets.Tab()
        self.links: list[Any] = []
        super().__init__(children=[heatmap], **kwargs)
        self.add_class("dsn-dashboard")
        for other in (graph, perf, flame):
            if other is not None:
                self.links.append(traitlets.link((heatmap, "selected_module"), (other, "selected_module")))
        if graph is not None:
            heatmap.observe(self._follow_step, ["hover_step", "selected_step"])
        if flame is not None:
            heatmap.observe(self._flame_step, ["selected_step"])
        if histogram is not None:
            self.links.append(traitlets.link((heatmap, "selected_tensor"), (histogram, "tensor")))
            self.links.append(ipywidgets.jslink((heatmap, "selected_tensor"), (histogram, "tensor")))
        self.refresh()

    def _follow_step(self, _change: Any = None) -> None:
        h = getattr(self.heatmap, "hover_step", -1)
        self.graph.step = h if h >= 0 else self.heatmap.selected_step

    def _flame_step(self, _change: Any = None) -> None:
        self.flame.step = self.heatmap.selected_step

    def panels(self) -> list[tuple[str, Any]]:
        out = []
        if self.graph is not None and (self.graph.graph.get("nodes") or self.graph.graph.get("message") is None):
            out.append(("graph", self.graph))
        if self.perf is not None and self.perf.has_data:
            out.append(("performance", self.perf))
        if self.suggestions is not None and self.suggestions.suggestions:
            out.append((f"suggestions ({len(self.suggestions.suggestions)})", self.suggestions))
        if self.flame is not None and self.flame.has_data:
            out.append(("functions", self.flame))
        if self.ranks is not None and self.ranks.has_data:
            out.append(("ranks", self.ranks))
        return out

    def refresh(self, show_graph: bool | None = None) -> None:
        """Show the tabs whose panels have data (``show_graph=False`` hides the graph: no graph)."""
        panels = [(t, w) for t, w in self.panels() if not (show_graph is False and w is self.graph)]
        kids = tuple(w for _, w in panels)
        titles = tuple(t for t, _ in panels)
        if kids != tuple(self.tabs.children):
            selected = self.tabs.selected_index
            self.tabs.children = kids
            if kids and (selected is None or selected >= len(kids)):
                self.tabs.selected_index = 0
        if tuple(self.tabs.titles) != titles:
            self.tabs.titles = titles
        # the histogram panel is always there (it hides itself while no tensor is selected)
        top = (self.heatmap,) if self.histogram is None else (self.heatmap, self.histogram)
        want = top + (self.tabs,) if kids else top
        if tuple(self.children) != want:
            self.children = want

    def _repr_mimebundle_(self, **kwargs: Any):  # type: ignore[override]
        fn = self.text_fallback or getattr(self.heatmap, "_text_summary", None)
        return with_text_fallback(super()._repr_mimebundle_(**kwargs), fn, "dashboard")
