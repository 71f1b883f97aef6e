"""Run: the one data model every view reads (tables of per-step statistics + metadata).

Rows arrive per recorded step, already on the host (the tracer copies device results in
batches).  Memory is bounded by ``keep`` retained steps (see :mod:`dsnotebook.run.steps`
for the thinning).  Listeners (live widgets) hear about appended and dropped steps.
Statistics are derived from raw sums when read (:mod:`dsnotebook.run.fields`); frames are
made on request (:mod:`dsnotebook.run.frames`); :mod:`dsnotebook.run.files` is the run
directory.
"""
from __future__ import annotations

import os
import pathlib
import uuid
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from dsnotebook.run.fields import ACT_FIELDS, GRAD_FIELDS, UPDATE_FIELDS, derive_grad_fields, derive_update_fields
from dsnotebook.run.files import read_run_dir
from dsnotebook.run.frames import GRAPH_EDGE_COLUMNS, GRAPH_NODE_COLUMNS, TABLES, to_dataframe
from dsnotebook.run.records import RecordTables
from dsnotebook.run.rows import ActivationRows, GradRows, StatRows, UpdateRows, frozen
from dsnotebook.run.steps import StepRecord, StepTable  # noqa: F401 - StepRecord in signatures
from dsnotebook.stats.reference import COL_NONFINITE, HIST_BINS, HIST_OFFSET, UPDATE_COLS

__all__ = ["Run", "ACT_FIELDS", "GRAD_FIELDS", "UPDATE_FIELDS", "TABLES", "GRAPH_NODE_COLUMNS", "GRAPH_EDGE_COLUMNS",
           "derive_grad_fields", "derive_update_fields"]

Listener = Callable[[str, list[int]], None]
ReportWriter = Callable[..., pathlib.Path]
_report_writer: ReportWriter | None = None


def set_report_writer(writer: ReportWriter) -> None:
    """Plug in what :meth:`Run.report` calls. The HTML report is a view (dsnotebook.views.report)
    and the Run never imports a view: the package's front door (dsnotebook/__init__.py) wires it."""
    global _report_writer
    _report_writer = writer


class Run:
    """Columnar store of one traced run: tensors, per-step statistics, events, metadata.

    Writing (probes and the tracer): ``add_grads``, ``add_updates``, ``add_activations``,
    ``add_event``, ``set_graph``, ``add_records``; steps never go back (ValueError).

    Reading one step (``None`` or 0 when nothing of that kind was recorded at ``step``, or
    the step was thinned away); arrays are read-only:

    * ``grads_at(step) -> GradRows``: tensor ids, GRAD_FIELDS values, histograms;
    * ``nonfinite_at(step) -> int``: non-finite gradient elements, all tensors together;
    * ``updates_at(step) -> UpdateRows``: tensor ids, UPDATE_FIELDS values;
    * ``activations_at(step) -> ActivationRows``: module name, type and call index per row,
      float32 values [n, len(ACT_FIELDS)] in ACT_FIELDS order, dead unit indices per row;
      ``has_activations(step)``.

    Reading many steps: ``steps``, ``matrix(field)`` ([tensors, steps]), ``stat_rows``,
    ``to_dataframe(table)``.  Listening: ``subscribe``.  Files: ``save`` / ``Run.open``.
    """

    def __init__(self, tensors: list[dict[str, Any]] | None = None, meta: dict[str, Any] | None = None,
                 keep: int = 1000) -> None:
        self._table = StepTable(keep)  # raises on keep < 4
        self.keep = self._table.keep
        self.tensors: list[dict[str, Any]] = list(tensors or [])
        self.meta: dict[str, Any] = dict(meta or {})
        self.events: list[dict[str, Any]] = []
        self.graph: dict[str, Any] | None = None  # nodes/edges of one captured forward (dsnotebook.dataflow.graph)
        self.act_modules: list[dict[str, Any]] = []  # module outputs with activation rows: module, type
        self._act_index: dict[str, int] = {}
        self._listeners: list[Listener] = []
        self._numel: np.ndarray | None = None
        self._hist_dtype: type = np.uint32
        self.records = RecordTables(self.keep)  # timings, memory, profile, suggestions (dsnotebook.run.records)
        self.run_id = uuid.uuid4().hex[:16]  # names this run in the run directories it is written to
        self.source: dict[str, Any] | None = None  # where Run.open read it: path, state, segments

    # -- construction -------------------------------------------------------------------
    @property
    def numel(self) -> np.ndarray:
        """Element count per tensor id (cached: the tracer reads it every step)."""
        cached = self._numel
        if cached is None or len(cached) != len(self.tensors):
            cached = self._numel = np.array([t["numel"] for t in self.tensors], dtype=np.int64)
            self._hist_dtype = np.uint32 if cached.max(initial=0) < 2**32 else np.int64
        return cached

    @property
    def dropped_steps(self) -> int:
        """Steps thinned away so far."""
        return self._table.dropped

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(kind, steps)`` (kind: "append", "drop", "event", "graph" or a record table's
        name: "timings", "memory", "profile", "suggestions"); returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _notify(self, kind: str, steps: list[int]) -> None:
        for fn in list(self._listeners):
            fn(kind, steps)

    def _record(self, step: int) -> StepRecord:
        rec, dropped = self._table.record(step)
        if dropped:
            self._notify("drop", dropped)
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
        dead = [np.asarray(r.get("dead", ()), dtype=np.int32).reshape(-1) for r in rows]
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

    # -- reading one step -----------------------------------------------------------------
    @property
    def steps(self) -> list[int]:
        """Retained steps, ascending."""
        return list(self._table.order)

    def grads_at(self, step: int) -> GradRows | None:
        """Gradient statistics recorded at ``step`` (None if none are retained)."""
        rec = self._table.get(step)
        if rec is None or not len(rec.grad_ids):
            return None
        vals = derive_grad_fields(rec.grad_vals, self.numel[rec.grad_ids])
        return GradRows(frozen(rec.grad_ids), frozen(vals), frozen(rec.hist))

    def has_grads(self, step: int) -> bool:
        """Whether gradient statistics of ``step`` are retained (cheap: no fields derived)."""
        rec = self._table.get(step)
        return rec is not None and len(rec.grad_ids) > 0

    def nonfinite_at(self, step: int) -> int:
        """Non-finite gradient elements recorded at ``step``, all tensors together (0 if none)."""
        rec = self._table.get(step)
        if rec is None or not len(rec.grad_ids):
            return 0
        return int(rec.grad_vals[:, COL_NONFINITE].sum())

    def updates_at(self, step: int) -> UpdateRows | None:
        """Update statistics recorded at ``step`` (None if none are retained)."""
        rec = self._table.get(step)
        if rec is None or not len(rec.upd_ids):
            return None
        vals = derive_update_fields(rec.upd_vals, self.numel[rec.upd_ids])
        return UpdateRows(frozen(rec.upd_ids), frozen(vals))

    def has_activations(self, step: int) -> bool:
        """Whether activation rows of ``step`` are retained."""
        rec = self._table.get(step)
        return rec is not None and len(rec.act_ids) > 0

    def activations_at(self, step: int) -> ActivationRows | None:
        """Activation rows recorded at ``step``, one per module call (None if none are retained)."""
        rec = self._table.get(step)
        if rec is None or not len(rec.act_ids):
            return None
        mods = [self.act_modules[i] for i in rec.act_ids.tolist()]
        offs = np.concatenate([[0], np.cumsum(rec.act_dead_n)]).tolist()
        dead = tuple(frozen(rec.act_dead[offs[j]:offs[j + 1]]) for j in range(len(mods)))
        calls = rec.act_vals[:, ACT_FIELDS.index("call")].astype(np.int64)
        return ActivationRows(tuple(m["module"] for m in mods), tuple(m["type"] for m in mods), frozen(calls),
                              frozen(rec.act_vals), dead)

    # -- reading many steps ---------------------------------------------------------------
    def nbytes(self) -> int:
        """Bytes held by the retained steps' arrays."""
        return self._table.nbytes()

    def stat_rows(self, table: str, steps: Iterable[int] | None = None) -> StatRows:
        """Derived fields of every "grads" or "updates" row of ``steps`` (default: all retained),
        derived in one vectorised call."""
        if table not in ("grads", "updates"):
            raise KeyError(f"stat_rows reads 'grads' or 'updates', not {table!r}")
        grads = table == "grads"
        steps = self._table.order if steps is None else list(steps)
        recs = [(j, r) for j, r in ((j, self._table.get(s)) for j, s in enumerate(steps)) if r is not None]
        id_parts = [r.grad_ids if grads else r.upd_ids for _, r in recs]
        raw_parts = [r.grad_vals if grads else r.upd_vals for _, r in recs]
        ids = np.concatenate(id_parts or [np.zeros(0, np.int32)])
        raw = np.concatenate(raw_parts or [np.zeros((0, HIST_OFFSET if grads else UPDATE_COLS))])
        cols = np.concatenate([np.full(len(p), j, np.int64) for (j, _), p in zip(recs, id_parts)]
                              or [np.zeros(0, np.int64)])
        derive, nfields = (derive_grad_fields, len(GRAD_FIELDS)) if grads else (derive_update_fields, len(UPDATE_FIELDS))
        vals = derive(raw, self.numel[ids]) if len(ids) else np.zeros((0, nfields))
        return StatRows(cols, ids, vals)

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
        rows = self.stat_rows(table, steps)
        out[rows.tensor_ids, rows.column] = rows.values[:, col]
        return out

    def to_dataframe(self, table: str = "grads") -> pd.DataFrame:
        """A tidy pandas frame of one of :data:`~dsnotebook.run.frames.TABLES`: tensors, grads, updates,
        hist (long), events, activations, graph_nodes, graph_edges or a record table."""
        return to_dataframe(self, table)

    # -- files --------------------------------------------------------------------------
    def step_record(self, step: int) -> tuple[int, StepRecord] | None:
        """(ordinal, record) of a retained step, for writers (:mod:`dsnotebook.run.writer`): the record's
        arrays are replaced, never written in place, so a reference taken now stays valid."""
        rec = self._table.get(step)
        return None if rec is None else (self._table.ordinal[step], rec)

    def state_arrays(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The thinning state and every retained step as flat arrays (what a snapshot writes)."""
        return self._table.state(), self._table.to_arrays()

    def restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray], *, events: list[dict[str, Any]],
                graph: dict[str, Any] | None, act_modules: list[dict[str, Any]],
                records: dict[str, list[dict[str, Any]]] | None) -> None:
        """Replace everything recorded with a saved state (:meth:`open`, a run directory's first segment)."""
        self._table = StepTable.from_arrays(state, arrays)
        self.keep = self._table.keep
        self.events = list(events)
        self.graph = graph
        self.act_modules = []
        self._act_index = {}
        self.extend_act_modules(act_modules, start=0)
        self.records = RecordTables(self.keep)
        self.records.load(records)

    def extend_act_modules(self, modules: list[dict[str, Any]], start: int) -> None:
        """Modules with activation rows, numbered from ``start`` (read from a run directory)."""
        if start != len(self.act_modules):
            raise ValueError(f"activation modules continue at {start}, but {len(self.act_modules)} are known")
        for m in modules:
            self._act_index[m["module"]] = len(self.act_modules)
            self.act_modules.append({"module": m["module"], "type": m.get("type", "")})

    def append_steps(self, arrays: dict[str, np.ndarray]) -> list[int]:
        """Append complete steps read from a run directory (thinned exactly as the writer's Run was);
        listeners hear "drop" and then "append" once for the whole block.  Returns the appended steps."""
        self.numel  # noqa: B018 - cached numel for readers
        appended, dropped = self._table.extend(arrays)
        if dropped:
            self._notify("drop", dropped)
        if appended:
            self._notify("append", appended)
        return appended

    def save(self, directory: str | os.PathLike[str]) -> pathlib.Path:
        """Write the run to a run directory (``docs/run-format.md``): the retained steps in one segment.
        Saving again to the same place replaces that save; a directory being written, holding a
        training log, or holding other files is a clear error."""
        from dsnotebook.run.writer import save_snapshot

        return save_snapshot(self, directory)

    @classmethod
    def open(cls, directory: str | os.PathLike[str], keep: int | None = None) -> Any:
        """Read a run directory (a save, or a log that a script is writing or that crashed: every
        committed segment); ``keep``: steps retained in memory (default: what the writer kept).
        A folder of run directories gives a :class:`~dsnotebook.run.runs.RunSet` listing them."""
        from dsnotebook.run.reader import open_run_dir
        from dsnotebook.run.rundir_format import MANIFEST
        from dsnotebook.run.runs import RunSet, is_run_dir

        d = pathlib.Path(directory)
        if (d / MANIFEST).is_file() or not (d / "run.json").is_file():
            if d.is_dir() and not (d / MANIFEST).is_file() and any(p.is_dir() and is_run_dir(p) for p in d.iterdir()):
                return RunSet(d, keep=keep)
            return open_run_dir(d, keep=keep)
        head, arrays = read_run_dir(d)  # format version 2: run.json + stats.npz
        run = cls(head["tensors"], head["meta"], keep=head["keep"])
        run.restore(head, arrays, events=head["events"], graph=head.get("graph"),
                    act_modules=head.get("act_modules", []), records=head.get("records"))
        run.source = {"path": str(d), "state": "finished", "segments": 0}
        return run

    def report(self, path: str | os.PathLike[str], **options: Any) -> pathlib.Path:
        """Write the standalone HTML report of this run (bokeh, resources inline) to ``path``;
        ``options`` go to :func:`dsnotebook.views.report.write_report`."""
        if _report_writer is None:
            raise RuntimeError("no report writer is registered (import dsnotebook registers it)")
        return _report_writer(self, path, **options)

    def __repr__(self) -> str:
        order = self._table.order
        span = f"steps {order[0]}..{order[-1]}" if order else "no steps"
        return (f"<Run {len(self.tensors)} tensors, {len(order)} retained steps ({span}), "
                f"{len(self.events)} events, {self.nbytes() / 1e6:.1f} MB>")
