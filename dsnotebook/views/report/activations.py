"""Report section: activation statistics per module output over the sampled steps, and dead units.

Read with ``Run.activations_at`` (one row per module call and sampled step: the rows the
dashboard's graph shows and ``Run.to_dataframe("activations")`` tables). Rows are module
calls in the order of the forward pass; the heatmap switches between std, zero fraction,
dead-unit fraction and abs-max.
The table lists the dead units of the latest sampled step (rectifier outputs only, as
recorded).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from bokeh.models import Range1d

from dsnotebook.run import ACT_FIELDS
from dsnotebook.views.report.columns import columns_for, reduce_max, windows
from dsnotebook.views.report.markup import div, heading, note, table
from dsnotebook.views.report.matrix import columns_source, matrix_figure, rows_source

__all__ = ["activation_section", "activation_matrices", "row_labels"]

STATS = {"std": ("output std", True), "zero_frac": ("zero fraction", False),
         "dead_frac": ("dead units / units", False), "absmax": ("output abs-max", True)}
MAX_TABLE = 40


def activation_matrices(run: Any) -> tuple[list[tuple[str, int]], list[str], list[int], dict[str, np.ndarray]]:
    """(rows: (module, call) in first-seen order, their module types, sampled steps,
    statistic -> float64 [rows, steps]), read with ``Run.activations_at`` step by step."""
    index: dict[tuple[str, int], int] = {}
    types: list[str] = []
    steps: list[int] = []
    parts: list[tuple[int, np.ndarray, np.ndarray]] = []
    for s in run.steps:
        a = run.activations_at(s)
        if a is None:
            continue
        r = []
        for m, t, call in zip(a.modules, a.types, a.calls.tolist()):
            key = (str(m), int(call))
            if key not in index:
                index[key] = len(index)
                types.append(str(t))
            r.append(index[key])
        parts.append((len(steps), np.array(r, np.int64), np.asarray(a.values, np.float64)))
        steps.append(int(s))
    col = {f: ACT_FIELDS.index(f) for f in ("std", "zero_frac", "absmax", "dead_units", "units")}
    out = {k: np.full((len(index), len(steps)), np.nan) for k in STATS}
    for j, r, v in parts:
        units = v[:, col["units"]]
        with np.errstate(divide="ignore", invalid="ignore"):
            out["dead_frac"][r, j] = np.where(units > 0, v[:, col["dead_units"]] / units, np.nan)
        for k in ("std", "zero_frac", "absmax"):
            out[k][r, j] = v[:, col[k]]
    return list(index), types, steps, out


def row_labels(keys: list[tuple[str, int]]) -> list[str]:
    """"module", or "module #call" for a module called several times in one forward."""
    calls: dict[str, int] = {}
    for m, _ in keys:
        calls[m] = calls.get(m, 0) + 1
    return [f"{m} #{call}" if calls[m] > 1 else m for m, call in keys]


def activation_section(run: Any, max_columns: int, budget_bytes: int) -> list[Any]:
    items: list[Any] = [heading("Activations and dead units")]
    keys, types, steps, mats = activation_matrices(run)
    if not steps:
        return items + [note("No activation statistics were recorded (ModelTracer(..., activations_every=N) or "
                             "%%deepseek_trace --activations-every N).")]
    labels = row_labels(keys)
    cols = windows(steps, columns_for(len(labels) * len(STATS), max_columns, budget_bytes))
    rows_src = rows_source(labels, types)
    cols_src = columns_source(cols)
    items.append(note(f"{len(labels)} module outputs x {len(steps)} sampled steps (largest value of each column's "
                      "steps). Dead units: channels that were zero for the whole batch, on rectifier outputs."))
    parts, _fig = matrix_figure({k: reduce_max(m, cols) for k, m in mats.items()},
                                {k: v[0] for k, v in STATS.items()}, {k: v[1] for k, v in STATS.items()},
                                rows_src, cols_src, title="activations per module output",
                                x_range=Range1d(0, max(1, cols.n), bounds=(0, max(1, cols.n))),
                                name="dsn-activation-heatmap")
    items += parts
    a = run.activations_at(steps[-1])
    dead, units = a.values[:, ACT_FIELDS.index("dead_units")], a.values[:, ACT_FIELDS.index("units")]
    rows = [(m, t, int(d), int(u), float(d / u)) for m, t, d, u in zip(a.modules, a.types, dead, units) if u > 0]
    if rows:
        rows = sorted(rows, key=lambda r: -r[4])[:MAX_TABLE]
        items.append(div(f"<b>dead units at step {int(steps[-1])}</b>"
                         + table(["module", "type", "dead", "units", "fraction"], rows, numeric=(2, 3, 4))))
    return items
