"""Tables of plain records (timings, memory, profile, suggestions) kept beside a Run's arrays.

Performance measurements arrive on sampled steps only and as a handful of rows per
module, so they are stored as lists of JSON-able dicts rather than numpy columns: a
widget can send them as they are, ``json.dumps`` saves them, and pandas turns them into
a frame on request.  Memory stays bounded: per-step tables keep the rows of at most
``keep`` distinct steps (when full, the oldest quarter goes); suggestions are keyed by a stable
``id`` and replaced in place when a rule fires again or a verification finishes.
"""
from __future__ import annotations

from typing import Any, Iterable

import pandas as pd

RECORD_COLUMNS: dict[str, list[str]] = {
    # phase: fwd, bwd (per module); data, fwd, bwd, opt, comm, other, step (module "(step)")
    "timings": ["step", "module", "phase", "seconds", "calls"],
    # kind: activations (per module), params, grads, optimizer_state, peak_allocated, reserved, rss, peak_rss
    "memory": ["step", "module", "kind", "bytes"],
    # torch.profiler window aggregated per module
    "profile": ["module", "phase", "cpu_s", "device_s", "ops", "top_ops"],
    "suggestions": ["id", "rule", "title", "category", "severity", "evidence", "gain", "snippet", "verify_hint",
                    "can_verify", "status", "result"],
    # @dsnotebook.trace calls (dsnotebook.calls): kind function/span/module/op; times in seconds, start_s from the
    # tracer's attach; inputs/outputs: lists of {name, shape, dtype, device[, statistics]}; error: "Type: message" or
    # None; overhead_s: the measured cost of tracing that was subtracted from wall_s
    "calls": ["step", "call", "parent", "name", "kind", "level", "depth", "thread", "start_s", "wall_s", "device_s",
              "inputs", "outputs", "error", "overhead_s"],
    # torch.distributed (dsnotebook.distributed), on rank 0: each rank's sampled step phases (PHASES, "step",
    # "fwd_compute", "bwd_compute": leaf-module time inside the passes), and each rank's own gradient sums per
    # recorded step (one row per step and rank; per-tensor numpy arrays, aligned with tensor_id)
    "rank_phases": ["step", "rank", "phase", "seconds"],
    # steps the parameter probes do not record (every > 1 or "auto"): global gradient norm and the number
    # of tensors whose gradient norm is non-finite, from one fused norm per tensor
    "sentinel": ["step", "grad_norm", "nonfinite_tensors", "tensors"],
    "rank_grads": ["step", "rank", "tensor_id", "numel", "sum", "sumsq", "absmax", "nonfinite", "zeros", "contributes"],
}
REPLACED = ("suggestions", "profile")  # rows replaced by id / as a whole, not appended
PER_STEP = ("timings", "memory", "calls", "rank_phases", "rank_grads", "sentinel")


class RecordTables:
    """Lists of dict rows per table name, bounded per step, keyed for suggestions."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.tables: dict[str, list[dict[str, Any]]] = {k: [] for k in RECORD_COLUMNS}
        self._steps: dict[str, list[int]] = {}  # distinct steps per per-step table, ascending
        self.appended: dict[str, int] = {k: 0 for k in RECORD_COLUMNS}  # rows ever appended (writers' cursors)

    def add(self, table: str, rows: Iterable[dict[str, Any]]) -> list[int]:
        """Append rows; returns the steps they belong to (for listeners)."""
        if table not in self.tables:
            raise KeyError(f"unknown record table {table!r}; choose from {tuple(RECORD_COLUMNS)}")
        rows = [dict(r) for r in rows]
        dest = self.tables[table]
        if table == "suggestions":
            index = {r["id"]: i for i, r in enumerate(dest)}
            for r in rows:
                if r["id"] in index:
                    dest[index[r["id"]]] = r
                else:
                    index[r["id"]] = len(dest)
                    dest.append(r)
            return []
        if table == "profile":  # one window at a time: the newest replaces the last
            dest[:] = rows
            return []
        dest.extend(rows)
        self.appended[table] = self.appended.get(table, 0) + len(rows)
        steps = sorted({r["step"] for r in rows if r.get("step") is not None})
        known = self._steps.setdefault(table, [])
        for st in steps:
            if not known or st > known[-1]:
                known.append(st)
        if len(known) > self.keep:  # trim to 3/4 of keep, so that trimming is rare (amortised O(1))
            cut = known[len(known) - (3 * self.keep) // 4]
            known[:] = [st for st in known if st >= cut]
            dest[:] = [r for r in dest if r.get("step") is None or r["step"] >= cut]
        return steps

    def rows_since(self, table: str, cursor: int) -> tuple[list[dict[str, Any]], int]:
        """Rows of an appending table added after ``cursor`` (a count of :attr:`appended`), and the new
        cursor; the keyed tables (suggestions, profile) are returned whole.  Trimming removes only
        old rows, so new rows are at the end of the list."""
        dest = self.tables[table]
        if table in REPLACED:
            return list(dest), cursor
        total = self.appended.get(table, 0)
        new = total - cursor
        return (list(dest[-new:]) if new > 0 else []), total

    def frame(self, table: str) -> pd.DataFrame:
        return pd.DataFrame(self.tables[table], columns=RECORD_COLUMNS[table])

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        return {k: v for k, v in self.tables.items() if v}

    def load(self, data: dict[str, list[dict[str, Any]]] | None) -> None:
        for k, rows in (data or {}).items():
            if k in self.tables:
                self.tables[k] = list(rows)
                if k in PER_STEP:
                    self._steps[k] = sorted({r["step"] for r in rows if r.get("step") is not None})
