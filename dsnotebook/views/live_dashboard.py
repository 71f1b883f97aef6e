"""LiveDashboard: feeds a Run to the dashboard (heatmap, graph, events, performance, suggestions).

The heatmap keeps its own feeder (:class:`~dsnotebook.views.live_heatmap.LiveHeatmap`). This adaptor
adds the other panels, driven by the Run's listener kinds:

* "graph": the graph arrives (first forward pass): ``GraphWidget.set_graph``;
* "append"/"drop": per-step node values, sent as deltas (new complete steps only, at
  most one push per ``min_interval``): with activation sampling on, the steps that have
  activation rows (activation statistics of each module call + the gradient norm of its
  parameters); without it, every step (gradient norm and non-finite gradient count);
* "event": the events list (first non-finite module highlighted in the graph);
* "timings"/"memory": the performance panel (aggregated, at most once a second);
* "rank_phases" (rank 0 of a distributed job): the rank x phase panel, at the same pace;
* "suggestions": the cards; also after the cell ended, so ``_trace.advise()`` in a later
  cell fills the panel, and its verify buttons run ``advisor.verify_by_id``;
* "calls": the flame view of ``@dsnotebook.trace`` functions (its own feeder,
  :class:`~dsnotebook.views.flame_view.FlameView`); its tab appears with the first call;
* a click on a heatmap row: that tensor's histogram over steps under the heatmap (its own
  feeder, :class:`~dsnotebook.views.live_histogram.LiveHistogram`, live while training runs).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from dsnotebook.views import perf_summary, rank_panel
from dsnotebook.views.flame_view import FlameView
from dsnotebook.views.live_histogram import LiveHistogram
from dsnotebook.views.live_heatmap import LiveHeatmap
from dsnotebook.run import ACT_FIELDS, Run
from dsnotebook.views.text import text_summary

GRAPH_STATS_GRADS = [
    {"key": "grad_norm", "label": "grad norm (parameters)", "log": True},
    {"key": "nonfinite", "label": "non-finite gradients", "log": False},
]
_ACT_COLS = {k: ACT_FIELDS.index(k) for k in ("mean", "std", "absmax", "zero_frac", "nonfinite")}
_DEAD, _UNITS = ACT_FIELDS.index("dead_units"), ACT_FIELDS.index("units")


class LiveDashboard:
    """Same interface as LiveHeatmap (display, set_status, close); ``widget`` is the Dashboard."""

    def __init__(self, run: Run, flush: Callable[..., None] | None = None, min_interval: float = 0.25,
                 perf_interval: float = 1.0, graph: bool = True, histogram: str | None = None) -> None:
        from dsnotebook.widgets.dashboard import Dashboard
        from dsnotebook.widgets.graph import GRAPH_STATS, GraphWidget
        from dsnotebook.widgets.perf import PerfWidget
        from dsnotebook.widgets.ranks import RanksWidget
        from dsnotebook.widgets.suggestions import SuggestionsWidget

        self.run = run
        self.min_interval = min_interval
        self.perf_interval = perf_interval
        self.heat = LiveHeatmap(run, flush=flush)
        self.activations = run.meta.get("activations_every") is not None
        self.stats = GRAPH_STATS if self.activations else GRAPH_STATS_GRADS
        self.graph = GraphWidget(run.graph, stats=self.stats) if graph else None
        self.perf = PerfWidget()
        self.suggestions = SuggestionsWidget(run.records.tables["suggestions"], on_verify=self._verify)
        self.flame = FlameView(run)
        self.histogram = LiveHistogram(run)
        self.ranks = RanksWidget()
        self.widget = Dashboard(self.heat.widget, self.graph, self.perf, self.suggestions,
                                text_fallback=lambda: text_summary(run), flame=self.flame.widget,
                                histogram=self.histogram.widget, ranks=self.ranks)
        if histogram:  # shown from the first step (a click while the cell runs waits for its end)
            self.heat.widget.selected_tensor = histogram  # linked: the histogram panel follows
        self._last_sent = -1
        self._sent: list[int] = []
        self._last_push = 0.0
        self._last_perf = 0.0
        self._perf_dirty = False
        self.pushes = 0
        self._index()
        self._unsubscribe = run.subscribe(self._on_run)
        self._closed = False
        if self.graph is not None and run.events:
            self.graph.set_events(run.events)

    # -- display ---------------------------------------------------------------------------
    def display(self) -> None:
        from IPython.display import display

        display(self.widget)

    def set_status(self, text: str) -> None:
        self.heat.set_status(text)
        if self.graph is not None:
            self.graph.status = text

    # -- mapping run rows -> graph rows ------------------------------------------------------
    def _index(self) -> None:
        """Row of each graph node id; (row, tensor) pairs of the parameters under each module."""
        ids = self.graph.row_ids if self.graph is not None else []
        self._row = {nid: i for i, nid in enumerate(ids)}
        names = {}
        for n in (self.graph.graph.get("nodes", []) if self.graph is not None else []):
            if n["id"] in self._row:
                names.setdefault(n["name"], []).append(self._row[n["id"]])
        rows, tens = [], []
        for t_id, t in enumerate(self.run.tensors):
            path = t["module"]
            while True:
                for r in names.get(path, ()):
                    rows.append(r)
                    tens.append(t_id)
                if not path:
                    break
                path = path.rpartition(".")[0]
        self._pairs = (np.array(rows, np.int64), np.array(tens, np.int64))

    def values(self, steps: list[int]) -> np.ndarray:
        """[n_stats, n_rows, len(steps)] float32 for the graph panel (NaN where nothing was recorded)."""
        keys = [s["key"] for s in self.stats]
        R, k = len(self._row), len(steps)
        out = np.full((len(keys), R, k), np.nan, np.float32)
        if not R or not k:
            return out
        prow, pten = self._pairs
        if len(prow) and "grad_norm" in keys:
            sq = np.square(self.run.matrix("norm", steps))  # [T, k]
            acc = np.zeros((R, k))
            seen = np.zeros((R, k), bool)
            np.add.at(acc, prow, np.nan_to_num(sq[pten], nan=0.0, posinf=np.inf))
            np.logical_or.at(seen, prow, ~np.isnan(sq[pten]))
            out[keys.index("grad_norm")] = np.where(seen, np.sqrt(acc), np.nan)
            if not self.activations and "nonfinite" in keys:
                nf = self.run.matrix("nonfinite", steps)
                acc2 = np.zeros((R, k))
                np.add.at(acc2, prow, np.nan_to_num(nf[pten], nan=0.0))
                out[keys.index("nonfinite")] = np.where(seen, acc2, np.nan)
        if self.activations:
            for j, s in enumerate(steps):
                rows = self.run.activations_at(s)
                if rows is None:
                    continue
                vals = rows.values
                for i, (m, call) in enumerate(zip(rows.modules, rows.calls.tolist())):
                    r = self._row.get(f"{m}#{call}")
                    if r is None:
                        continue
                    for key, col in _ACT_COLS.items():
                        out[keys.index(key), r, j] = vals[i, col]
                    units = vals[i, _UNITS]
                    out[keys.index("dead_frac"), r, j] = vals[i, _DEAD] / units if units > 0 else np.nan
        return out

    def _has_activations(self, step: int) -> bool:
        return self.run.has_activations(step)

    # -- feeding -----------------------------------------------------------------------------
    def _on_run(self, kind: str, steps: list[int]) -> None:
        if kind == "suggestions":
            self.suggestions.set_suggestions(self.run.records.tables["suggestions"])
            self.widget.refresh()
            return
        if kind == "event":
            if self.graph is not None:
                self.graph.set_events(self.run.events)
            return
        if self._closed:
            return
        now = time.monotonic()
        if kind == "graph" and self.graph is not None:
            self.graph.set_graph(self.run.graph)
            self._index()
            self._sent, self._last_sent = [], -1
            self.push(complete_only=True)
            self.widget.refresh()
        elif kind == "drop" and self.graph is not None:
            gone = [s for s in steps if s in set(self._sent)]
            if gone:
                self._sent = [s for s in self._sent if s not in set(gone)]
                self.graph.drop(gone)
        elif kind == "append":
            if now - self._last_push >= self.min_interval:
                self.push(complete_only=True)
        elif kind == "calls":
            if not self.flame.widget.has_data:
                self.flame.refresh()
                self.widget.refresh()
        elif kind in ("timings", "memory", "rank_phases"):
            self._perf_dirty = True
        if self._perf_dirty and now - self._last_perf >= self.perf_interval:
            self.push_perf()

    def push(self, complete_only: bool = False) -> int:
        """Send retained steps not sent yet to the graph panel; returns how many columns."""
        self._last_push = time.monotonic()
        if self.graph is None or not self._row:
            return 0
        steps = self.run.steps
        if complete_only and steps:
            steps = steps[:-1]
        new = [s for s in steps if s > self._last_sent]
        if self.activations:
            new = [s for s in new if self._has_activations(s)]
        if not new:
            return 0
        self.graph.append(new, self.values(new))
        self._sent.extend(new)
        self._last_sent = new[-1]
        self.pushes += 1
        return len(new)

    def push_perf(self) -> None:
        self._last_perf = time.monotonic()
        self._perf_dirty = False
        perf_summary.show(self.perf, self.run)  # the advisor's numbers (perf.measures)
        if self.run.records.tables.get("rank_phases"):
            rank_panel.show(self.ranks, self.run)  # the straggler rules' numbers (distributed.ranks)
        self.widget.refresh()

    def _verify(self, suggestion_id: str, steps: int, progress: Callable[[int, int, str], None]) -> dict[str, Any]:
        from dsnotebook.advisor import verify_by_id

        return verify_by_id(self.run, suggestion_id, steps=steps, progress=progress)

    def close(self, status: str = "finished") -> None:
        """Send everything, stop listening to training data (suggestions/events still update)."""
        self.heat.close(status)  # drains the tracer's copies first
        self.histogram.close()
        self._closed = True
        if self.graph is not None:
            if self.run.graph is not None and not self.graph.graph.get("nodes") and self.run.graph.get("nodes"):
                self.graph.set_graph(self.run.graph)
                self._index()
                self._sent, self._last_sent = [], -1
            self.push(complete_only=False)
            self.graph.flush()
            self.graph.set_events(self.run.events)
            self.graph.status = status
        self.push_perf()
        self.flame.close(status)
        self.suggestions.set_suggestions(self.run.records.tables["suggestions"])
        has_graph = bool(self.run.graph and self.run.graph.get("nodes"))
        self.widget.refresh(show_graph=has_graph)
