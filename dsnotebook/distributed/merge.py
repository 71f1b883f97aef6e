"""Rank 0's side of a collection: every rank's packet -> rows of rank 0's Run.

A step is written once every rank has delivered it (ranks deliver their steps in ascending
order, so complete steps form a prefix; a step some rank never delivers is dropped when a
later one completes, with a warning).  For each step:

* the whole-job gradient and update statistics (:func:`~dsnotebook.distributed.combine.combine`)
  go to the Run's ``grads`` / ``updates`` tables, so every view shows the job, not rank 0;
* each rank's own sums go to the ``rank_grads`` record table (one row per step and rank,
  arrays over tensors), and its sampled step phases to ``rank_phases`` (step, rank, phase,
  seconds);
* replicated tensors (DDP) must be identical on every rank: a rank whose sums differ from
  rank 0's is named in a warning event (once), since that means the replicas drifted apart.

The Run's steps only move forward: if another probe on rank 0 already recorded a later step
(activation sampling), a whole-job row that arrives after it is kept in ``rank_grads`` only.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from dsnotebook.distributed.combine import combine
from dsnotebook.distributed.packing import FLAG_CONTRIBUTES, FLAG_SHARDED, PHASE_KEYS
from dsnotebook.stats.reference import COL_ABSMAX, COL_NONFINITE, COL_SUM, COL_SUMSQ, COL_ZEROS

__all__ = ["Merger", "DRIFT_RTOL"]

DRIFT_RTOL = 1e-6  # replicas whose sum of squares differs more than this (relative) have drifted apart


class Merger:
    """Joins packets by step and writes complete steps to ``run`` in order."""

    def __init__(self, run: Any, size: int, n: int) -> None:
        self.run, self.size, self.n = run, size, n
        self._joins: dict[int, dict[int, np.ndarray]] = {}
        self._warned: set[str] = set()
        self.written = 0

    def merge(self, packets: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Take one collection: ``packets[r]`` is rank r's (head, slots, records, phases) views."""
        phase_rows: list[dict[str, Any]] = []
        for r, (head, slots, records, phases) in enumerate(packets):
            h = head[0]
            for i in range(int(h["grad_slots"])):
                step, count = int(slots[i]["step"]), int(slots[i]["count"])
                self._joins.setdefault(step, {})[r] = records[i, :count].copy()
            for i in range(int(h["phase_slots"])):
                step, secs = int(phases[i]["step"]), phases[i]["seconds"]
                phase_rows += [{"step": step, "rank": r, "phase": k, "seconds": float(v)}
                               for k, v in zip(PHASE_KEYS, secs.tolist())]
        if phase_rows:
            phase_rows.sort(key=lambda row: (row["step"], row["rank"]))
            self.run.add_records("rank_phases", phase_rows)  # who listens: the rank x phase view
        complete = [s for s, d in self._joins.items() if len(d) == self.size]
        if not complete:
            return
        last = max(complete)
        for step in sorted(s for s in self._joins if s <= last):
            per_rank = self._joins.pop(step)
            if len(per_rank) < self.size:
                missing = sorted(set(range(self.size)) - set(per_rank))
                self._warn("partial", step, f"gradient statistics of step {step} never arrived from rank(s) "
                                            f"{missing}: the step is left out of the whole-job tables")
                continue
            self._write(step, per_rank)

    def _write(self, step: int, per_rank: dict[int, np.ndarray]) -> None:
        ids, grads, uids, upd = combine([per_rank[r] for r in range(self.size)], self.n)
        steps = self.run.steps
        if steps and steps[-1] > step:
            self._warn("late", step, f"whole-job gradient statistics of step {step} arrived after step {steps[-1]} was "
                                     "recorded (activation sampling on rank 0): kept in rank_grads only")
        elif len(ids):
            self.run.add_grads(step, ids, grads)  # who listens: heatmap, graph, non-finite probe
            if len(uids):
                self.run.add_updates(step, uids, upd)
        rows = []
        for r in range(self.size):
            rec = per_rank[r]
            g = rec["grad"]
            rows.append({"step": step, "rank": r, "tensor_id": rec["id"].copy(), "numel": rec["numel"].copy(),
                         "sum": g[:, COL_SUM].copy(), "sumsq": g[:, COL_SUMSQ].copy(),
                         "absmax": g[:, COL_ABSMAX].copy(), "nonfinite": g[:, COL_NONFINITE].copy(),
                         "zeros": g[:, COL_ZEROS].copy(),
                         "contributes": (rec["flags"] & FLAG_CONTRIBUTES) != 0})
        self.run.add_records("rank_grads", rows)
        self.written += 1
        self._check_replicas(step, per_rank)

    def _check_replicas(self, step: int, per_rank: dict[int, np.ndarray]) -> None:
        """Replicated tensors (contributed by rank 0 alone) must agree on every rank."""
        ref = per_rank[0]
        rep = ref[((ref["flags"] & FLAG_CONTRIBUTES) != 0) & ((ref["flags"] & FLAG_SHARDED) == 0)]
        if not len(rep) or self.size < 2:
            return
        ref_sq = np.full(self.n, np.nan)
        ref_sq[rep["id"]] = rep["grad"][:, COL_SUMSQ]
        drifted = []
        for r in range(1, self.size):
            rec = per_rank[r]
            mine = rec[(rec["flags"] & (FLAG_CONTRIBUTES | FLAG_SHARDED)) == 0]  # a copy of rank 0's tensor
            if not len(mine):
                continue
            a, b = mine["grad"][:, COL_SUMSQ], ref_sq[mine["id"]]
            bad = np.isfinite(b) & (np.abs(a - b) > DRIFT_RTOL * np.maximum(np.abs(b), 1e-300))
            if bad.any():
                drifted.append((r, mine["id"][bad]))
        if drifted:
            names = [t["name"] for t in self.run.tensors]
            parts = [f"rank {r}: {', '.join(names[i] for i in ids[:3].tolist())}" + (" ..." if len(ids) > 3 else "")
                     for r, ids in drifted]
            self._warn("drift", step, f"replicated gradients differ from rank 0's at step {step} ({'; '.join(parts)}): "
                                      "the replicas are not in sync (unsynchronised parameters or buffers, "
                                      "different models per rank, or a gradient changed after the all-reduce)")

    def _warn(self, kind: str, step: int, text: str) -> None:
        if kind in self._warned:
            return
        self._warned.add(kind)
        self.run.add_event(step, "warning", None, f"dsnotebook: {text}")
