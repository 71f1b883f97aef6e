"""What the Run's per-step accessors return: read-only rows of one step (or of many steps).

Readers (views, probes, frames) get these instead of the Run's internal step records, so
the storage layout can change without touching them.  Arrays are read-only views: a reader
that wants to modify one copies it first.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class GradRows(NamedTuple):
    """Gradient statistics of the tensors recorded at one step (one row per tensor)."""

    tensor_ids: np.ndarray  # int32 [n], index into Run.tensors
    values: np.ndarray  # float64 [n, len(GRAD_FIELDS)], GRAD_FIELDS order
    hist: np.ndarray  # unsigned/int64 [n, HIST_BINS], counts of floor(log2|g|) (see stats.reference)


class UpdateRows(NamedTuple):
    """Update statistics of the tensors recorded at one step (one row per tensor)."""

    tensor_ids: np.ndarray  # int32 [n]
    values: np.ndarray  # float32 [n, len(UPDATE_FIELDS)], UPDATE_FIELDS order


class ActivationRows(NamedTuple):
    """Activation statistics of the module calls recorded at one step (one row per call)."""

    modules: tuple[str, ...]  # module name per row
    types: tuple[str, ...]  # module class name per row
    calls: np.ndarray  # int64 [n], call index of that module within the forward pass
    values: np.ndarray  # float32 [n, len(ACT_FIELDS)], ACT_FIELDS order
    dead: tuple[np.ndarray, ...]  # int32 indices of the dead units, per row


class StatRows(NamedTuple):
    """Derived statistics of every row of several steps at once (for matrices and frames)."""

    column: np.ndarray  # int64 [rows], index into the steps asked for
    tensor_ids: np.ndarray  # int32 [rows]
    values: np.ndarray  # [rows, n_fields]


def frozen(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a`` (the Run's arrays are never handed out writable)."""
    v = a.view()
    v.flags.writeable = False
    return v
