"""One sampled step's timing rows (the timing probe's, in this rank's Run) -> the values a rank sends.

The timing probe writes a step's rows in one batch (per-module fwd/bwd, then one row per
phase of module "(step)"); this reads them back from the end of the Run's ``timings`` table.
Besides the phases, it sums the forward and backward time of the leaf modules: the compute
inside the passes.  Collective waits never sit inside a leaf module (DDP waits for its
all-reduce after the last gradient, FSDP2 all-gathers in the pre-forward hook of the wrapped
block, outside its children), so ``fwd - fwd_compute`` and ``bwd - bwd_compute`` are what a
rank spent waiting for the others, which is what tells the straggler from the ranks that wait
for it.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from dsnotebook.core.clock import PHASES, STEP
from dsnotebook.distributed.packing import PHASE_KEYS

__all__ = ["rows_of_step", "phase_values", "STEP_MODULE"]

STEP_MODULE = "(step)"  # the timing probe's module name for whole-step rows


def rows_of_step(rows: Sequence[dict[str, Any]], step: int) -> list[dict[str, Any]]:
    """The rows of ``step`` among the last rows of an append-only table (scanned from the end)."""
    out = []
    for row in reversed(rows):
        if row.get("step") == step:
            out.append(row)
        elif out:
            break
    out.reverse()
    return out


def phase_values(rows: Sequence[dict[str, Any]]) -> np.ndarray | None:
    """Seconds per :data:`PHASE_KEYS` of one step's rows; None without a whole-step row."""
    phases = {r["phase"]: float(r["seconds"]) for r in rows if r.get("module") == STEP_MODULE}
    if STEP not in phases:
        return None
    mods = [r for r in rows if r.get("module") != STEP_MODULE and r.get("phase") in ("fwd", "bwd")]
    names = list(dict.fromkeys(str(r["module"]) for r in mods))
    leaves = {n for n in names if n != "(root)" and not any(o.startswith(n + ".") for o in names)}
    compute = {"fwd": 0.0, "bwd": 0.0}
    for r in mods:
        if r["module"] in leaves:
            compute[r["phase"]] += float(r["seconds"])
    out = np.zeros(len(PHASE_KEYS), np.float64)
    for i, key in enumerate(PHASE_KEYS):
        if key in PHASES or key == STEP:
            out[i] = phases.get(key, 0.0)
    out[PHASE_KEYS.index("fwd_compute")] = compute["fwd"] if leaves else np.nan
    out[PHASE_KEYS.index("bwd_compute")] = compute["bwd"] if leaves else np.nan
    return out
