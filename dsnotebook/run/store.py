"""Run: the one data model every view reads (tables of per-step statistics + metadata).

Rows arrive per recorded step, already on the host (the tracer copies device results in
batches).  Memory is bounded by ``keep`` retained steps: when full, older steps are
thinned to a uniform stride (every 2nd, then 4th, ... recorded step) while the most
recent ``keep // 4`` steps stay at full resolution, so a million-step run still shows
its whole history.  Listeners (live widgets) hear about appended and dropped steps.
"""
from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from dsnotebook.run.records import RECORD_COLUMNS, RecordTables
from dsnotebook.stats.reference import COL_ABSMAX, COL_NONFINITE, COL_SUM, COL_SUMSQ, COL_ZEROS, HIST_BINS, HIST_OFFSET, UPDATE_COLS, UCOL_CHANGED, UCOL_DIFFSQ, UCOL_WEIGHTSQ, hist_bin_edges

GRAD_FIELDS = ("norm", "mean", "std", "absmax", "nonfinite", "zero_frac")
UPDATE_FIELDS = ("update_ratio", "changed_frac")
ACT_FIELDS = ("mean", "std", "absmax", "zero_frac", "nonfinite", "dead_units", "units", "call")
TABLES = ("tensors", "grads", "updates", "hist", "events", "activations", "graph_nodes", "graph_edges",
          *RECORD_COLUMNS)
GRAPH_NODE_COLUMNS = ["id", "kind", "label", "name", "type", "params", "call", "parent", "order", "leaf", "shapes",
                      "param_inputs"]
GRAPH_EDGE_COLUMNS = ["id", "source", "target", "tensor", "shape", "dtype", "device"]

Listener = Callable[[str, list[int]], None]


@dataclass
class _StepRecord:
    """Everything recorded at one step; arrays are small (one row per tensor)."""

    grad_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    grad_vals: np.ndarray = field(default_factory=lambda: np.zeros((0, HIST_OFFSET), np.float64))  # raw sums
    hist: np.ndarray = field(default_factory=lambda: np.zeros((0, HIST_BINS), np.uint32))
    upd_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    upd_vals: np.ndarray = field(default_factory=lambda: np.zeros((0, UPDATE_COLS), np.float64))  # raw sums
    act_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # index into Run.act_modules
    act_vals: np.ndarray = field(default_factory=lambda: np.zeros((0, len(ACT_FIELDS)), np.float32))
    act_dead: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # dead unit indices, all rows
    act_dead_n: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.grad_ids, self.grad_vals, self.hist, self.upd_ids, self.upd_vals,
                                      self.act_ids, self.act_vals, self.act_dead, self.act_dead_n))


_ARRAYS = ("grad_ids", "grad_vals", "hist", "upd_ids", "upd_vals", "act_ids", "act_vals", "act_dead", "act_dead_n")


def derive_grad_fields(raw: np.ndarray, numel: np.ndarray) -> np.ndarray:
    """Backend layout (sum, sumsq, absmax, nonfinite, zeros, hist) -> GRAD_FIELDS (float64)."""
    raw = np.asarray(raw, dtype=np.float64)
    numel = np.asarray(numel, dtype=np.float64)
    finite_n = numel - raw[:, COL_NONFINITE]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(finite_n > 0, raw[:, COL_SUM] / finite_n, np.nan)
        var = (raw[:, COL_SUMSQ] - raw[:, COL_SUM] * mean) / (finite_n - 1)
        std = np.where(finite_n > 1, np.sqrt(np.maximum(var, 0.0)), np.nan)
        zero_frac = np.where(numel > 0, raw[:, COL_ZEROS] / numel, np.nan)
    out = np.stack(
        [np.sqrt(raw[:, COL_SUMSQ]), mean, std, raw[:, COL_ABSMAX], raw[:, COL_NONFINITE], zero_frac],
        axis=1,
    )
    return out  # float64: norms of float32 tensors can exceed the float32 range


def derive_update_fields(raw: np.ndarray, numel: np.ndarray) -> np.ndarray:
    """(diff^2, weight^2, changed) -> (||update|| / ||weight||, fraction changed), float32."""
    raw = np.asarray(raw, dtype=np.float64)
    numel = np.asarray(numel, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.sqrt(raw[:, UCOL_DIFFSQ]) / np.sqrt(raw[:, UCOL_WEIGHTSQ])
        ratio = np.where(raw[:, UCOL_WEIGHTSQ] > 0, ratio, np.where(raw[:, UCOL_DIFFSQ] > 0, np.inf, 0.0))
        changed = np.where(numel > 0, raw[:, UCOL_CHANGED] / numel, np.nan)
    return np.stack([ratio, changed], axis=1).astype(np.float32)


class Run:
    """Columnar store of one traced run: tensors, per-step statistics, events, metadata."""

    def __init__(self, tensors: list[dict[str, Any]] | None = None, meta: dict[str, Any] | None = None,
                 keep: int = 1000) -> None:
        if keep < 4:
            raise ValueError(f"keep must be >= 4 steps, got {keep}")
        self.keep = int(keep)
        self.tensors: list[dict[str, Any]] = list(tensors or [])
        self.meta: dict[str, Any] = dict(meta or {})
        self.events: list[dict[str, Any]] = []
        self.graph: dict[str, Any] | None = None  # nodes/edges of one captured forward (dsnotebook.dataflow.graph)
        self.act_modules: list[dict[str, Any]] = []  # module outputs with activation rows: name, type
        self._act_index: dict[str, int] = {}
        self._steps: dict[int, _StepRecord] = {}
        self._order: list[int] = []  # retained steps, ascending
        self._ordinal: dict[int, int] = {}  # step -> index among all recorded steps
        self._recorded = 0
        self._stride = 1
        self._listeners: list[Listener] = []
        self.dropped_steps = 0
        self.records = RecordTables(self.keep)  # timings, memory, profile, suggestions (dsnotebook.run.records)

    # -- construction -------------------------------------------------------------------
    @property
    def numel(self) -> np.ndarray:
        """Element count per tensor id (cached: the tracer reads it every step)."""
        cached = getattr(self, "_numel", None)
        if cached is None or len(cached) != len(self.tensors):
            cached = self._numel = np.array([t["numel"] for t in self.tensors], dtype=np.int64)
            self._hist_dtype = np.uint32 if cached.max(initial=0) < 2**32 else np.int64
        return cached

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(kind, steps)`` (kind: "append", "drop", "event", "graph" or a record table's
        name: "timings", "memory", "profile", "suggestions"); returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _notify(self, kind: str, steps: list[int]) -> None:
        for fn in list(self._listeners):
            fn(kind, steps)

    def _record(self, step: int) -> _StepRecord:
        rec = self._steps.get(step)
        if rec is None:
            if self._order and step < self._order[-1]:
                raise ValueError(f"step {step} arrives after step {self._order[-1]}: steps must not go back")
            rec = self._steps[step] = _StepRecord()
            self._order.append(step)
            self._ordinal[step] = self._recorded
            self._recorded += 1
            self._thin()
        return rec

    def add_grads(self, step: int, tensor_ids: np.ndarray, raw: np.ndarray) -> None:
        """Append gradient statistics (backend layout, host array) of some tensors at ``step``."""
        ids = np.asarray(tensor_ids, dtype=np.int32)
        raw = np.asarray(raw)
        self.numel  # noqa: B018 - makes sure the cached numel/hist dtype exist
        # Raw sums are kept; derived fields (norm, mean, ...) are computed when read, for many
        # steps at once, which keeps this per-step path short.
        vals = np.array(raw[:, :HIST_OFFSET], dtype=np.float64)
        hist = raw[:, HIST_OFFSET:HIST_OFFSET + HIST_BINS].astype(self._hist_dtype)
        rec = self._record(step)
        if len(rec.grad_ids):  # a second optimizer of the same step
            ids = np.concatenate([rec.grad_ids, ids])
            vals = np.concatenate([rec.grad_vals, vals])
            hist = np.concatenate([rec.hist.astype(hist.dtype), hist])
        rec.grad_ids, rec.grad_vals, rec.hist = ids, vals, hist
        self._notify("append", [step])

    def add_updates(self, step: int, tensor_ids: np.ndarray, raw: np.ndarray) -> None:
        """Append update statistics (diff^2, weight^2, changed) of some tensors at ``step``."""
        ids = np.asarray(tensor_ids, dtype=np.int32)
        vals = np.array(raw, dtype=np.float64)
        rec = self._record(step)
        if len(rec.upd_ids):
            ids, vals = np.concatenate([rec.upd_ids, ids]), np.concatenate([rec.upd_vals, vals])
        rec.upd_ids, rec.upd_vals = ids, vals
        self._notify("append", [step])

    def add_event(self, step: int | None, kind: str, module: str | None, detail: str) -> None:
        self.events.append({"step": step, "kind": kind, "module": module, "detail": detail})
        self._notify("event", [step] if step is not None else [])

    def set_graph(self, graph: dict[str, Any]) -> None:
        """Keep the dataflow graph of one forward pass (see :mod:`dsnotebook.dataflow.graph`)."""
        self.graph = graph
        self._notify("graph", [])

    def add_activations(self, step: int, rows: list[dict[str, Any]]) -> None:
        """Append activation statistics of module outputs at ``step`` (dicts with ACT_FIELDS,
        ``module``, ``type`` and the dead unit indices ``dead``)."""
        if not rows:
            return
        ids = []
        for r in rows:
            i = self._act_index.get(r["module"])
            if i is None:
                i = self._act_index[r["module"]] = len(self.act_modules)
                self.act_modules.append({"module": r["module"], "type": r.get("type", "")})
            ids.append(i)
        vals = np.array([[r[f] for f in ACT_FIELDS] for r in rows], dtype=np.float32)
        dead = [np.asarray(r.get("dead", ()), dtype=np.int32) for r in rows]
        rec = self._record(step)
        rec.act_ids = np.concatenate([rec.act_ids, np.array(ids, np.int32)])
        rec.act_vals = np.concatenate([rec.act_vals, vals])
        rec.act_dead = np.concatenate([rec.act_dead] + dead)
        rec.act_dead_n = np.concatenate([rec.act_dead_n, np.array([len(d) for d in dead], np.int32)])
        self._notify("append", [step])

    def add_records(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        """Append JSON-able rows to a record table (timings, memory, profile, suggestions)."""
        steps = self.records.add(table, rows)
        self._notify(table, steps)

    def _thin(self) -> None:
        """Keep at most ``keep`` steps: uniform stride over the past, full resolution at the end."""
        tail = max(1, self.keep // 4)
        while len(self._order) > self.keep:
            self._stride *= 2
            cut = len(self._order) - tail
            kept, dropped = [], []
            for i, s in enumerate(self._order):
                (kept if i >= cut or self._ordinal[s] % self._stride == 0 else dropped).append(s)
            self._evict(dropped)
            self._order = kept
        # A step leaving the full-resolution tail survives only on the current stride.
        if self._stride > 1 and len(self._order) > tail:
            s = self._order[-tail - 1]
            if self._ordinal[s] % self._stride:
                self._order.remove(s)
                self._evict([s])

    def _evict(self, steps: list[int]) -> None:
        for s in steps:
            self._steps.pop(s, None)
            self._ordinal.pop(s, None)
        self.dropped_steps += len(steps)
        if steps:
            self._notify("drop", steps)

    # -- reading ------------------------------------------------------------------------
    @property
    def steps(self) -> list[int]:
        """Retained steps, ascending."""
        return list(self._order)

    def nbytes(self) -> int:
        return sum(r.nbytes() for r in self._steps.values())

    def matrix(self, field_name: str, steps: Iterable[int] | None = None) -> np.ndarray:
        """Dense float64 [n_tensors, n_steps] of one statistic; NaN where nothing was recorded."""
        steps = self.steps if steps is None else list(steps)
        out = np.full((len(self.tensors), len(steps)), np.nan, dtype=np.float64)
        if field_name in GRAD_FIELDS:
            col, table = GRAD_FIELDS.index(field_name), "grads"
        elif field_name in UPDATE_FIELDS:
            col, table = UPDATE_FIELDS.index(field_name), "updates"
        else:
            raise KeyError(f"unknown statistic {field_name!r}; choose from {GRAD_FIELDS + UPDATE_FIELDS}")
        cols, ids, vals = self._derived(table, steps)
        out[ids, cols] = vals[:, col]
        return out

    def _derived(self, table: str, steps: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(column index into ``steps``, tensor ids, derived fields) of every row of those steps."""
        ids_attr, vals_attr, derive, width = (
            ("grad_ids", "grad_vals", derive_grad_fields, HIST_OFFSET) if table == "grads"
            else ("upd_ids", "upd_vals", derive_update_fields, UPDATE_COLS))
        recs = [(j, self._steps[s]) for j, s in enumerate(steps) if s in self._steps]
        ids = np.concatenate([getattr(r, ids_attr) for _, r in recs] or [np.zeros(0, np.int32)])
        raw = np.concatenate([getattr(r, vals_attr) for _, r in recs] or [np.zeros((0, width))])
        cols = np.concatenate([np.full(len(getattr(r, ids_attr)), j, np.int64) for j, r in recs]
                              or [np.zeros(0, np.int64)])
        nfields = len(GRAD_FIELDS if table == "grads" else UPDATE_FIELDS)
        vals = derive(raw, self.numel[ids]) if len(ids) else np.zeros((0, nfields))
        return cols, ids, vals

    def to_dataframe(self, table: str = "grads") -> pd.DataFrame:
        """A tidy pandas frame of one table: tensors, grads, updates, hist (long) or events."""
        if table == "tensors":
            return pd.DataFrame(self.tensors, columns=[
                "tensor_id", "name", "module", "tensor", "shape", "dtype", "numel", "trainable", "aliases"])
        if table == "events":
            return pd.DataFrame(self.events, columns=["step", "kind", "module", "detail"])
        if table == "graph_nodes":
            return pd.DataFrame((self.graph or {}).get("nodes", []), columns=GRAPH_NODE_COLUMNS)
        if table == "graph_edges":
            return pd.DataFrame((self.graph or {}).get("edges", []), columns=GRAPH_EDGE_COLUMNS)
        if table == "activations":
            return self._activations_frame()
        if table in RECORD_COLUMNS:
            return self.records.frame(table)
        names = np.array([t["name"] for t in self.tensors], dtype=object)
        modules = np.array([t["module"] for t in self.tensors], dtype=object)
        if table in ("grads", "updates"):
            fields = GRAD_FIELDS if table == "grads" else UPDATE_FIELDS
            cols, ids, vals = self._derived(table, self._order)
            step_col = np.asarray(self._order, dtype=np.int64)[cols] if len(cols) else np.zeros(0, np.int64)
            df = pd.DataFrame({"step": step_col, "tensor_id": ids, "name": names[ids], "module": modules[ids]})
            for k, f in enumerate(fields):
                df[f] = vals[:, k]
            return df.sort_values(["step", "tensor_id"], kind="stable").reset_index(drop=True)
        if table == "hist":
            edges = np.array(hist_bin_edges())
            frames = []
            for s in self._order:
                r = self._steps[s]
                if len(r.grad_ids) == 0:
                    continue
                k = len(r.grad_ids)
                frames.append(pd.DataFrame({
                    "step": s, "tensor_id": np.repeat(r.grad_ids, HIST_BINS),
                    "bin": np.tile(np.arange(HIST_BINS), k), "lower_edge": np.tile(edges, k),
                    "count": r.hist.reshape(-1).astype(np.int64)}))
            if not frames:
                return pd.DataFrame(columns=["step", "tensor_id", "name", "bin", "lower_edge", "count"])
            df = pd.concat(frames, ignore_index=True)
            df.insert(2, "name", names[df["tensor_id"].to_numpy()])
            return df
        raise KeyError(f"unknown table {table!r}; choose from {TABLES}")

    def _activations_frame(self) -> pd.DataFrame:
        cols = ["step", "module", "call", "type", "mean", "std", "absmax", "zero_frac", "nonfinite", "dead_units",
                "units", "dead_indices"]
        frames = []
        for s in self._order:
            r = self._steps[s]
            if len(r.act_ids) == 0:
                continue
            offs = np.concatenate([[0], np.cumsum(r.act_dead_n)])
            df = pd.DataFrame({"step": s, "module": [self.act_modules[i]["module"] for i in r.act_ids],
                               "type": [self.act_modules[i]["type"] for i in r.act_ids]})
            for k, f in enumerate(ACT_FIELDS):
                df[f] = r.act_vals[:, k]
            df["dead_indices"] = [r.act_dead[offs[j]:offs[j + 1]].tolist() for j in range(len(r.act_ids))]
            frames.append(df)
        if not frames:
            return pd.DataFrame(columns=cols)
        df = pd.concat(frames, ignore_index=True)
        for f in ("call", "nonfinite", "dead_units", "units"):
            df[f] = df[f].astype(np.int64)
        return df[cols]

    # -- files --------------------------------------------------------------------------
    def save(self, directory: str | pathlib.Path) -> pathlib.Path:
        """Write the run to a directory (JSON for tables of records, NPZ for numbers)."""
        d = pathlib.Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "run.json").write_text(json.dumps({
            "format": 2, "keep": self.keep, "stride": self._stride, "recorded": self._recorded,
            "dropped_steps": self.dropped_steps, "tensors": self.tensors, "meta": self.meta,
            "events": self.events, "graph": self.graph, "act_modules": self.act_modules,
            "records": self.records.to_json()}, indent=1, default=str))
        arrays: dict[str, np.ndarray] = {"steps": np.array(self._order, dtype=np.int64),
                                         "ordinals": np.array([self._ordinal[s] for s in self._order], np.int64)}
        for name in _ARRAYS:
            parts = [getattr(self._steps[s], name) for s in self._order]
            arrays[name] = np.concatenate(parts) if parts else np.zeros(0)
            arrays[name + "_len"] = np.array([len(p) for p in parts], dtype=np.int64)
        np.savez_compressed(d / "stats.npz", **arrays)
        return d

    @classmethod
    def open(cls, directory: str | pathlib.Path) -> "Run":
        """Read a run written by :meth:`save` (by a notebook or a script)."""
        d = pathlib.Path(directory)
        head = json.loads((d / "run.json").read_text())
        run = cls(head["tensors"], head["meta"], keep=head["keep"])
        run.events = head["events"]
        run.graph = head.get("graph")
        run.act_modules = head.get("act_modules", [])
        run.records.load(head.get("records"))
        run._act_index = {m["module"]: i for i, m in enumerate(run.act_modules)}
        run._stride, run._recorded, run.dropped_steps = head["stride"], head["recorded"], head["dropped_steps"]
        z = np.load(d / "stats.npz")
        offsets = {n: np.concatenate([[0], np.cumsum(z[n + "_len"])]) for n in _ARRAYS if n + "_len" in z}
        for i, (s, o) in enumerate(zip(z["steps"].tolist(), z["ordinals"].tolist())):
            rec = _StepRecord()
            for n, off in offsets.items():
                setattr(rec, n, z[n][off[i]:off[i + 1]])
            run._steps[s], run._ordinal[s] = rec, o
            run._order.append(s)
        return run

    def __repr__(self) -> str:
        span = f"steps {self._order[0]}..{self._order[-1]}" if self._order else "no steps"
        return (f"<Run {len(self.tensors)} tensors, {len(self._order)} retained steps ({span}), "
                f"{len(self.events)} events, {self.nbytes() / 1e6:.1f} MB>")

