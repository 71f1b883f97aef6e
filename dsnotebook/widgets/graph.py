"""Dataflow graph panel (anywidget): the model as a layered graph, nodes coloured by a statistic.

Traits (kernel <-> browser):

* ``graph``: ``{"nodes": [...], "edges": [...], "model", "message"}`` as captured by
  :mod:`dsnotebook.dataflow.graph` (only the fields the panel draws are kept). Sent once; the
  browser lays it out once per set of expanded groups (dagre) and only recolours after.
* ``rows``: ``[{"id": node id}]``, the nodes that have per-step values, and ``stats``:
  ``[{"key", "label", "log"}]``; the values travel on the series protocol
  (:mod:`dsnotebook.widgets.series`, shared with the heatmap): custom ``append``/``drop``
  messages with one float32 buffer ``[stat, col, row]`` and the ``snapshot``/``snapshot_meta``
  traits. The feeder rate-limits (``MIN_INTERVAL`` is 0 here).
* ``stat`` (statistic shown), ``step`` (-1 = latest; otherwise the latest column at or
  before it), ``selected_module`` (a module path, linked with the other panels),
  ``selected_node`` (the node id clicked), ``events`` (``[{"step", "kind", "module",
  "detail", "node"}]``), ``status``, ``title``, ``max_visible`` (groups start collapsed
  until at most this many boxes are visible), the colour ``lut``/``nan_color``/``mark_color``.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import traitlets

from dsnotebook.core.jsonsafe import to_json
from dsnotebook.core.modules import LOSS
from dsnotebook.widgets.esm import load_esm
from dsnotebook.widgets.series import SeriesWidget

__all__ = ["GraphWidget", "GRAPH_STATS", "node_of_event_module", "slim_graph"]

GRAPH_STATS: list[dict[str, Any]] = [
    {"key": "absmax", "label": "activation abs-max", "log": True},
    {"key": "std", "label": "activation std", "log": True},
    {"key": "mean", "label": "activation mean", "log": False},
    {"key": "zero_frac", "label": "zero fraction", "log": False},
    {"key": "dead_frac", "label": "dead units (fraction)", "log": False},
    {"key": "nonfinite", "label": "non-finite count", "log": False},
    {"key": "grad_norm", "label": "grad norm (parameters)", "log": True},
]

_NODE_KEYS = ("id", "kind", "label", "name", "type", "params", "call", "parent", "leaf", "shapes", "param_inputs")
_EDGE_KEYS = ("source", "target", "shape", "dtype")
_CALL = re.compile(r"^(.*) \(call (\d+)\)$")


def node_of_event_module(module: str | None) -> str:
    """The graph node id of an event's module ("fc1" -> "fc1#0", "blk (call 2)" -> "blk#1")."""
    if not module:
        return ""
    m = _CALL.match(module)
    return f"{m.group(1)}#{int(m.group(2)) - 1}" if m else f"{module}#0"


def slim_graph(graph: dict[str, Any] | None) -> dict[str, Any]:
    """The fields the panel draws, as plain JSON (names stay text: the browser never parses them)."""
    if not graph:
        return {"nodes": [], "edges": [], "model": "", "message": None}
    nodes = [{k: to_json(n.get(k)) for k in _NODE_KEYS} for n in graph.get("nodes", [])]
    for n in nodes:
        n["id"], n["label"], n["name"] = str(n["id"]), str(n["label"] or ""), str(n["name"] or "")
    edges = [{k: to_json(e.get(k)) for k in _EDGE_KEYS} for e in graph.get("edges", [])]
    return {"nodes": nodes, "edges": edges, "model": str(graph.get("model") or ""),
            "message": graph.get("message")}


class GraphWidget(SeriesWidget):
    """Dataflow graph of one forward pass; per-step node values appended live."""

    _esm = load_esm("graph")

    graph = traitlets.Dict().tag(sync=True)
    #: -1 = the latest column; otherwise the latest column at or before this step
    step = traitlets.Int(-1).tag(sync=True)
    selected_module = traitlets.Unicode("").tag(sync=True)
    selected_node = traitlets.Unicode("").tag(sync=True)
    events = traitlets.List(traitlets.Dict()).tag(sync=True)
    title = traitlets.Unicode("dataflow graph").tag(sync=True)
    max_visible = traitlets.Int(160).tag(sync=True)

    def __init__(self, graph: dict[str, Any] | None = None, stats: Sequence[dict[str, Any]] | None = None,
                 rows: Sequence[str] | None = None, **kwargs: Any) -> None:
        g = slim_graph(graph)
        super().__init__(rows=_row_ids(g, rows), stats=GRAPH_STATS if stats is None else stats, graph=g, **kwargs)

    @property
    def row_ids(self) -> list[str]:
        return [r["id"] for r in self.rows]

    def set_graph(self, graph: dict[str, Any] | None, rows: Sequence[str] | None = None) -> None:
        """A new graph: columns are forgotten (the rows are its module nodes unless given)."""
        g = slim_graph(graph)
        ids = _row_ids(g, rows)
        with self.hold_sync():
            self.series.reset(len(self.stats), len(ids))
            self.graph = g
            self.rows = ids

    def set_events(self, events: Sequence[dict[str, Any]]) -> None:
        """The events list; each event names the node it happened in (an event in the loss,
        outside the model, names the model's output node)."""
        outputs = [n["id"] for n in self.graph.get("nodes", []) if n.get("kind") == "output"]

        def node(module: str | None) -> str:
            return outputs[0] if module == LOSS and outputs else node_of_event_module(module)

        self.events = [{"step": e.get("step"), "kind": str(e.get("kind", "")), "module": e.get("module"),
                        "detail": str(e.get("detail", "")), "node": node(e.get("module"))}
                       for e in events]


def _row_ids(graph: dict[str, Any], rows: Sequence[str] | None) -> list[dict[str, str]]:
    """The rows carrying values: the given node ids, else the graph's module nodes."""
    ids = list(rows) if rows is not None else [n["id"] for n in graph["nodes"] if n["kind"] == "module"]
    return [{"id": str(i)} for i in ids]
