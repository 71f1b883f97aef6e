"""Gradient histograms over steps, read from a Run: what the live histogram panel and the report show.

The Run keeps, per tensor and recorded step, a ``HIST_BINS``-bin histogram of
``floor(log2|g|)`` of the finite elements plus the non-finite count
(:mod:`dsnotebook.stats.reference`: ``hist.sum() + nonfinite == numel``). This module is the
one place that turns them into a tensor's bins x steps table, with exact integer counts,
and names the bins; both views read it, so a count means the same everywhere.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from dsnotebook.run import GRAD_FIELDS
from dsnotebook.stats.reference import HIST_BINS, HIST_EXP_MIN

__all__ = ["HistSeries", "ZERO_BIN", "NONFINITE_ROW", "bin_label", "bin_rows", "tensor_histograms",
           "step_histograms", "tensor_index"]

_NONFINITE = GRAD_FIELDS.index("nonfinite")
ZERO_BIN = 0  # exact zeros
NONFINITE_ROW = HIST_BINS  # the extra row after the bins: non-finite elements (NaN, +-inf)


class HistSeries(NamedTuple):
    """One tensor's histograms over steps (only steps where it has gradient statistics)."""

    steps: list[int]
    counts: np.ndarray  # int64 [len(steps), HIST_BINS]: exact counts per bin
    nonfinite: np.ndarray  # int64 [len(steps)]: non-finite elements at that step
    numel: int


def bin_label(b: int) -> str:
    """The |g| range of bin ``b``: "0", "< 2^-45", "[2^-10, 2^-9)", ">= 2^16"."""
    if b == ZERO_BIN:
        return "0"
    e = b - 1 + HIST_EXP_MIN  # floor(log2|g|) of the bin
    if b == 1:
        return f"< 2^{e + 1}"
    if b == HIST_BINS - 1:
        return f">= 2^{e}"
    return f"[2^{e}, 2^{e + 1})"


def bin_rows() -> list[dict[str, Any]]:
    """One row per histogram bin, then the non-finite row: ``{"name", "bin", "exp"}``; ``exp`` is
    floor(log2|g|) of the bin (None for zeros and non-finite; the first/last bin also hold
    everything below/above)."""
    rows = [{"name": bin_label(b), "bin": b, "exp": None if b == ZERO_BIN else b - 1 + HIST_EXP_MIN}
            for b in range(HIST_BINS)]
    rows.append({"name": "non-finite", "bin": NONFINITE_ROW, "exp": None})
    return rows


def tensor_index(run: Any, name: str) -> int | None:
    """Tensor id of the tensor called ``name`` (or one of its aliases), None if there is none."""
    for i, t in enumerate(run.tensors):
        if t.get("name") == name or name in (t.get("aliases") or ()):
            return i
    return None


def step_histograms(run: Any, steps: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every tensor's histogram at each of ``steps``: (counts int64 [tensors, steps, HIST_BINS],
    nonfinite int64 [tensors, steps], present bool [tensors, steps]); zero where not recorded."""
    n, k = len(run.tensors), len(steps)
    counts = np.zeros((n, k, HIST_BINS), np.int64)
    nonfinite = np.zeros((n, k), np.int64)
    present = np.zeros((n, k), bool)
    for j, s in enumerate(steps):
        g = run.grads_at(s)
        if g is None:
            continue
        ids = np.asarray(g.tensor_ids, np.int64)
        counts[ids, j] = g.hist
        nonfinite[ids, j] = g.values[:, _NONFINITE].astype(np.int64)
        present[ids, j] = True
    return counts, nonfinite, present


def tensor_histograms(run: Any, tensor_id: int, steps: Sequence[int] | None = None) -> HistSeries:
    """Histograms of one tensor at ``steps`` (default: every retained step) where it has any."""
    if not 0 <= tensor_id < len(run.tensors):
        raise IndexError(f"tensor id {tensor_id} out of range (the run has {len(run.tensors)} tensors)")
    out_steps: list[int] = []
    rows: list[np.ndarray] = []
    nf: list[int] = []
    for s in (run.steps if steps is None else steps):
        g = run.grads_at(s)
        if g is None:
            continue
        hit = np.flatnonzero(np.asarray(g.tensor_ids) == tensor_id)
        if not len(hit):
            continue
        out_steps.append(int(s))
        rows.append(np.asarray(g.hist[hit[0]], np.int64))
        nf.append(int(g.values[hit[0], _NONFINITE]))
    counts = np.stack(rows) if rows else np.zeros((0, HIST_BINS), np.int64)
    return HistSeries(out_steps, counts, np.array(nf, np.int64), int(run.tensors[tensor_id]["numel"]))

