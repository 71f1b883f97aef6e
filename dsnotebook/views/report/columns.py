"""Thinning steps into report columns: a static page cannot zoom into 10,000 columns per row.

The retained steps are cut into at most ``max_columns`` consecutive windows of (nearly)
equal length. A matrix column then shows one value per window, with the same rule as the
live heatmap's aggregated bins: the largest non-NaN value of the window (a spike never
disappears), the sum for counts (non-finite elements). Step numbers travel with every
column (first, last, how many steps), so hover can say what a column covers.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from dsnotebook.run import GRAD_FIELDS, UPDATE_FIELDS

__all__ = ["Columns", "windows", "columns_for", "reduce_max", "reduce_sum", "representatives", "stat_matrices"]

MIN_COLUMNS = 32


class Columns(NamedTuple):
    """Windows of retained steps, one per report column."""

    bounds: np.ndarray  # int64 [C + 1]: column c holds step indices bounds[c]:bounds[c + 1]
    first: np.ndarray  # int64 [C]: first step of each column
    last: np.ndarray  # int64 [C]: last step of each column
    count: np.ndarray  # int64 [C]: steps in each column

    @property
    def n(self) -> int:
        return len(self.first)


def windows(steps: Sequence[int], max_columns: int) -> Columns:
    """At most ``max_columns`` windows over ``steps`` (ascending), each of ceil or floor of
    len(steps) / columns steps; one column per step when they fit."""
    if max_columns < 1:
        raise ValueError(f"max_columns must be >= 1, got {max_columns}")
    s = np.asarray(list(steps), dtype=np.int64)
    c = min(len(s), int(max_columns))
    bounds = np.round(np.linspace(0, len(s), c + 1)).astype(np.int64)
    if not c:
        empty = np.zeros(0, np.int64)
        return Columns(np.zeros(1, np.int64), empty, empty, empty)
    return Columns(bounds, s[bounds[:-1]], s[bounds[1:] - 1], np.diff(bounds))


def reduce_max(matrix: np.ndarray, cols: Columns) -> np.ndarray:
    """[rows, steps] -> float32 [rows, columns]: per window the largest non-NaN value (NaN if none;
    +inf stays +inf)."""
    m = np.asarray(matrix, dtype=np.float64)
    if not cols.n:
        return np.zeros((m.shape[0], 0), np.float32)
    return np.fmax.reduceat(m, cols.bounds[:-1], axis=1).astype(np.float32)


def reduce_sum(matrix: np.ndarray, cols: Columns) -> np.ndarray:
    """[rows, steps] -> float64 [rows, columns]: per window the sum (NaN counts as 0)."""
    m = np.asarray(matrix, dtype=np.float64)
    m = np.where(np.isnan(m), 0.0, m)
    if not cols.n:
        return np.zeros((m.shape[0], 0))
    return np.add.reduceat(m, cols.bounds[:-1], axis=1)


def representatives(steps: Sequence[int], cols: Columns, weight: np.ndarray | None = None) -> list[int]:
    """One real step per window (for views that cannot aggregate, e.g. exact histograms): the
    step with the largest ``weight`` > 0 in the window (e.g. non-finite elements), else the last."""
    s = np.asarray(list(steps), dtype=np.int64)
    out = []
    for c in range(cols.n):
        a, b = int(cols.bounds[c]), int(cols.bounds[c + 1])
        j = b - 1
        if weight is not None:
            w = np.asarray(weight[a:b], dtype=np.float64)
            if len(w) and w.max() > 0:
                j = a + int(np.argmax(w))
        out.append(int(s[j]))
    return out


def columns_for(rows: int, max_columns: int, budget_bytes: int) -> int:
    """Columns of a float32 image of ``rows`` rows that fit ``budget_bytes`` (at least
    ``MIN_COLUMNS``, at most ``max_columns``): a model with many tensors gets fewer columns,
    not a bigger file."""
    fit = budget_bytes // max(1, 4 * rows)
    return int(max(1, min(max_columns, max(MIN_COLUMNS, fit))))


def stat_matrices(run: Any, table: str, fields: Sequence[str], steps: Sequence[int]) -> dict[str, np.ndarray]:
    """float64 [tensors, steps] of several statistics of "grads" or "updates" (NaN where nothing
    was recorded), from one ``Run.stat_rows`` call (what ``Run.matrix`` gives field by field)."""
    names = GRAD_FIELDS if table == "grads" else UPDATE_FIELDS
    rows = run.stat_rows(table, steps)
    out = {}
    for f in fields:
        m = np.full((len(run.tensors), len(steps)), np.nan)
        m[rows.tensor_ids, rows.column] = rows.values[:, names.index(f)]
        out[f] = m
    return out
