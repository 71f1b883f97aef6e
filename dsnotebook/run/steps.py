"""Retained steps of a Run, bounded in number by thinning the past to a uniform stride.

When more than ``keep`` steps are held, older steps are thinned to every 2nd, then 4th, ...
recorded step (the stride doubles), while the most recent ``keep // 4`` steps stay at full
resolution; a step leaving that tail survives only if it lies on the current stride.  So a
million-step run keeps at most ``keep`` steps that still span its whole history, evenly.
The Run tells its listeners which steps were dropped.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from dsnotebook.run.fields import ACT_FIELDS
from dsnotebook.stats.reference import HIST_BINS, HIST_OFFSET, UPDATE_COLS


def _empty(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    a = np.zeros(shape, dtype)
    a.flags.writeable = False  # shared by every new record; fields are replaced, never written
    return a


class StepRecord:
    """Everything recorded at one step; arrays are small (one row per tensor or module call)."""

    __slots__ = ("grad_ids", "grad_vals", "hist", "upd_ids", "upd_vals", "act_ids", "act_vals", "act_dead",
                 "act_dead_n")
    _EMPTY = {
        "grad_ids": _empty((0,), np.int32),
        "grad_vals": _empty((0, HIST_OFFSET), np.float64),  # raw sums (backend layout)
        "hist": _empty((0, HIST_BINS), np.uint32),
        "upd_ids": _empty((0,), np.int32),
        "upd_vals": _empty((0, UPDATE_COLS), np.float64),  # raw sums
        "act_ids": _empty((0,), np.int32),  # index into Run.act_modules
        "act_vals": _empty((0, len(ACT_FIELDS)), np.float32),
        "act_dead": _empty((0,), np.int32),  # dead unit indices, all rows
        "act_dead_n": _empty((0,), np.int32),  # how many per row
    }

    def __init__(self) -> None:
        for name, a in self._EMPTY.items():  # cheap: a new record per recorded step
            setattr(self, name, a)

    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in ARRAYS)


ARRAYS = tuple(StepRecord._EMPTY)  # field names, in file order


def records_to_arrays(steps: list[int], ordinals: list[int], recs: list[StepRecord]) -> dict[str, np.ndarray]:
    """Records of some steps as flat arrays: every field concatenated over the steps, with per-step
    lengths (``<name>_len``), plus ``steps`` and ``ordinals`` (the layout of files and writers)."""
    out = {"steps": np.array(steps, dtype=np.int64), "ordinals": np.array(ordinals, dtype=np.int64)}
    for name in ARRAYS:
        parts = [getattr(r, name) for r in recs]
        if parts:
            dtypes = {p.dtype for p in parts if len(p)}
            if len(dtypes) > 1:  # e.g. uint32 and int64 histograms: the wider one
                dt = np.result_type(*dtypes)
                parts = [p.astype(dt) for p in parts]
            out[name] = np.concatenate([p for p in parts if len(p)] or parts[:1])
        else:
            out[name] = StepRecord._EMPTY[name].copy()
        out[name + "_len"] = np.array([len(p) for p in parts], dtype=np.int64)
    return out


class StepTable:
    """Step -> StepRecord for the retained steps, in ascending order, at most ``keep`` of them."""

    def __init__(self, keep: int) -> None:
        if keep < 4:
            raise ValueError(f"keep must be >= 4 steps, got {keep}")
        self.keep = int(keep)
        self.tail = max(1, self.keep // 4)
        self.records: dict[int, StepRecord] = {}
        self.order: list[int] = []  # retained steps, ascending
        self.ordinal: dict[int, int] = {}  # retained step -> index among all recorded steps
        self.recorded = 0  # steps ever recorded
        self.stride = 1
        self.dropped = 0  # steps thinned away so far

    def get(self, step: int) -> StepRecord | None:
        return self.records.get(step)

    def record(self, step: int, ordinal: int | None = None) -> tuple[StepRecord, list[int]]:
        """The record of ``step`` (created if new) and the steps thinned away to make room.

        ``ordinal`` (index among all recorded steps) is given when steps are replayed from a run
        directory, so that the thinning retains exactly the steps the writer's Run retained."""
        rec = self.records.get(step)
        if rec is not None:
            return rec, []
        if self.order and step < self.order[-1]:
            raise ValueError(f"step {step} arrives after step {self.order[-1]}: steps must not go back")
        o = self.recorded if ordinal is None else int(ordinal)
        if o < self.recorded:
            raise ValueError(f"step {step} has ordinal {o} < {self.recorded}: ordinals must not go back")
        rec = self.records[step] = StepRecord()
        self.order.append(step)
        self.ordinal[step] = o
        self.recorded = o + 1
        return rec, self._thin()

    def _thin(self) -> list[int]:
        dropped: list[int] = []
        tail = self.tail
        while len(self.order) > self.keep:
            self.stride *= 2
            cut = len(self.order) - tail
            kept = []
            for i, s in enumerate(self.order):
                (kept if i >= cut or self.ordinal[s] % self.stride == 0 else dropped).append(s)
            self.order = kept
        if self.stride > 1 and len(self.order) > tail:
            s = self.order[-tail - 1]  # just left the full-resolution tail
            if self.ordinal[s] % self.stride:
                del self.order[-tail - 1]
                dropped.append(s)
        for s in dropped:
            del self.records[s]
            del self.ordinal[s]
        self.dropped += len(dropped)
        return sorted(dropped)

    def nbytes(self) -> int:
        return sum(r.nbytes() for r in self.records.values())

    # -- files: the table as flat arrays plus a little state ------------------------------
    def state(self) -> dict[str, Any]:
        return {"keep": self.keep, "stride": self.stride, "recorded": self.recorded, "dropped_steps": self.dropped}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every record's arrays concatenated, with per-step lengths (``<name>_len``)."""
        return records_to_arrays(self.order, [self.ordinal[s] for s in self.order],
                                 [self.records[s] for s in self.order])

    def extend(self, arrays: dict[str, np.ndarray]) -> tuple[list[int], list[int]]:
        """Append the complete steps of :func:`records_to_arrays` output, thinning as if they had been
        recorded here one by one; returns (steps appended and still retained, steps thinned away)."""
        steps, ordinals = arrays["steps"].tolist(), arrays["ordinals"].tolist()
        offsets = {n: np.concatenate([[0], np.cumsum(arrays[n + "_len"])]).tolist()
                   for n in ARRAYS if n + "_len" in arrays}
        dropped: list[int] = []
        for i, (s, o) in enumerate(zip(steps, ordinals)):
            known = s in self.records
            rec, gone = self.record(s, None if known else o)
            dropped.extend(gone)
            for n, off in offsets.items():
                part = arrays[n][off[i]:off[i + 1]]
                if known and len(getattr(rec, n)):  # the same step again: rows add up (a second optimizer)
                    part = np.concatenate([getattr(rec, n), part.astype(getattr(rec, n).dtype)])
                if len(part) or known:
                    setattr(rec, n, part)
        gone_set = set(dropped)
        return [s for s in steps if s not in gone_set and s in self.records], sorted(gone_set)

    @classmethod
    def from_arrays(cls, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> "StepTable":
        """Inverse of :meth:`state` + :meth:`to_arrays`."""
        table = cls(int(state["keep"]))
        table.stride, table.recorded = int(state["stride"]), int(state["recorded"])
        table.dropped = int(state["dropped_steps"])
        steps, ordinals = arrays["steps"].tolist(), arrays["ordinals"].tolist()
        offsets = {n: np.concatenate([[0], np.cumsum(arrays[n + "_len"])]) for n in ARRAYS if n + "_len" in arrays}
        for i, (s, o) in enumerate(zip(steps, ordinals)):
            rec = StepRecord()
            for n, off in offsets.items():
                setattr(rec, n, arrays[n][off[i]:off[i + 1]])
            table.records[s], table.ordinal[s] = rec, o
            table.order.append(s)
        return table
