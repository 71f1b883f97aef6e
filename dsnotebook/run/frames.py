"""pandas DataFrames of a Run's tables: views made on request, never stored.

Built only from the Run's public readers (``stat_rows``, ``grads_at``, ``activations_at``,
its lists and record tables), so the numbers in a frame are the numbers a widget shows.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dsnotebook.run.fields import ACT_FIELDS, GRAD_FIELDS, UPDATE_FIELDS
from dsnotebook.run.records import RECORD_COLUMNS
from dsnotebook.stats.reference import HIST_BINS, hist_bin_edges

if TYPE_CHECKING:
    from dsnotebook.run.store import Run

TENSOR_COLUMNS = ["tensor_id", "name", "module", "tensor", "shape", "dtype", "numel", "trainable", "aliases"]
EVENT_COLUMNS = ["step", "kind", "module", "detail"]
GRAPH_NODE_COLUMNS = ["id", "kind", "label", "name", "type", "params", "call", "parent", "order", "leaf", "shapes",
                      "param_inputs"]
GRAPH_EDGE_COLUMNS = ["id", "source", "target", "tensor", "shape", "dtype", "device"]
HIST_COLUMNS = ["step", "tensor_id", "name", "bin", "lower_edge", "count"]
ACTIVATION_COLUMNS = ["step", "module", "call", "type", "mean", "std", "absmax", "zero_frac", "nonfinite",
                      "dead_units", "units", "dead_indices"]
TABLES = ("tensors", "grads", "updates", "hist", "events", "activations", "graph_nodes", "graph_edges",
          *RECORD_COLUMNS)


def to_dataframe(run: "Run", table: str = "grads") -> pd.DataFrame:
    """A tidy frame of one of :data:`TABLES`."""
    if table == "tensors":
        return pd.DataFrame(run.tensors, columns=TENSOR_COLUMNS)
    if table == "events":
        return pd.DataFrame(run.events, columns=EVENT_COLUMNS)
    if table == "graph_nodes":
        return pd.DataFrame((run.graph or {}).get("nodes", []), columns=GRAPH_NODE_COLUMNS)
    if table == "graph_edges":
        return pd.DataFrame((run.graph or {}).get("edges", []), columns=GRAPH_EDGE_COLUMNS)
    if table in ("grads", "updates"):
        return _stats_frame(run, table)
    if table == "hist":
        return _hist_frame(run)
    if table == "activations":
        return _activations_frame(run)
    if table in RECORD_COLUMNS:
        return run.records.frame(table)
    raise KeyError(f"unknown table {table!r}; choose from {TABLES}")


def _names(run: "Run", key: str) -> np.ndarray:
    return np.array([t[key] for t in run.tensors], dtype=object)


def _stats_frame(run: "Run", table: str) -> pd.DataFrame:
    steps = run.steps
    rows = run.stat_rows(table, steps)
    ids = rows.tensor_ids
    step_col = np.asarray(steps, dtype=np.int64)[rows.column] if len(ids) else np.zeros(0, np.int64)
    df = pd.DataFrame({"step": step_col, "tensor_id": ids, "name": _names(run, "name")[ids],
                       "module": _names(run, "module")[ids]})
    for k, f in enumerate(GRAD_FIELDS if table == "grads" else UPDATE_FIELDS):
        df[f] = rows.values[:, k]
    return df.sort_values(["step", "tensor_id"], kind="stable").reset_index(drop=True)


def _hist_frame(run: "Run") -> pd.DataFrame:
    edges = np.array(hist_bin_edges())
    frames = []
    for s in run.steps:
        g = run.grads_at(s)
        if g is None:
            continue
        k = len(g.tensor_ids)
        frames.append(pd.DataFrame({
            "step": s, "tensor_id": np.repeat(g.tensor_ids, HIST_BINS),
            "bin": np.tile(np.arange(HIST_BINS), k), "lower_edge": np.tile(edges, k),
            "count": g.hist.reshape(-1).astype(np.int64)}))
    if not frames:
        return pd.DataFrame(columns=HIST_COLUMNS)
    df = pd.concat(frames, ignore_index=True)
    df.insert(2, "name", _names(run, "name")[df["tensor_id"].to_numpy()])
    return df


def _activations_frame(run: "Run") -> pd.DataFrame:
    frames = []
    for s in run.steps:
        a = run.activations_at(s)
        if a is None:
            continue
        df = pd.DataFrame({"step": s, "module": list(a.modules), "type": list(a.types)})
        for k, f in enumerate(ACT_FIELDS):
            df[f] = a.values[:, k]
        df["dead_indices"] = [d.tolist() for d in a.dead]
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=ACTIVATION_COLUMNS)
    df = pd.concat(frames, ignore_index=True)
    for f in ("call", "nonfinite", "dead_units", "units"):
        df[f] = df[f].astype(np.int64)
    return df[ACTIVATION_COLUMNS]
