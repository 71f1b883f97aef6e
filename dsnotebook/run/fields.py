"""The statistics a user reads, and how the backend's raw sums become them.

Backends return additive raw sums (sum, sum of squares, absmax, non-finite count, zero
count, histogram; for updates: diff^2, weight^2, changed count) because sums combine
exactly across optimizers, shards and ranks.  The Run stores them raw and derives the
user's fields when read, for many steps in one vectorised call.  Non-finite elements are
excluded from mean and std (the backend already leaves them out of the sums); ``norm`` is
that of the finite elements.
"""
from __future__ import annotations

import numpy as np

from dsnotebook.stats.reference import (COL_ABSMAX, COL_NONFINITE, COL_SUM, COL_SUMSQ, COL_ZEROS, UCOL_CHANGED,
                                        UCOL_DIFFSQ, UCOL_WEIGHTSQ)

GRAD_FIELDS = ("norm", "mean", "std", "absmax", "nonfinite", "zero_frac")
UPDATE_FIELDS = ("update_ratio", "changed_frac")
# One activation row per module call: statistics of its output, ``units`` channels of which
# ``dead_units`` were zero everywhere; ``call`` numbers the calls of a module in one forward.
ACT_FIELDS = ("mean", "std", "absmax", "zero_frac", "nonfinite", "dead_units", "units", "call")


def derive_grad_fields(raw: np.ndarray, numel: np.ndarray) -> np.ndarray:
    """Backend layout (sum, sumsq, absmax, nonfinite, zeros, hist) -> GRAD_FIELDS (float64).

    ``std`` is the sample standard deviation (n - 1) of the finite elements; ``zero_frac``
    counts zeros among all elements.  NaN where undefined (mean of no finite element, std of
    fewer than two).
    """
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
    """(diff^2, weight^2, changed) -> (||update|| / ||weight||, fraction changed), float32.

    A zero weight gives ratio inf when it moved and 0 when it did not (a frozen or
    zero-initialised tensor is not a NaN in the heatmap).
    """
    raw = np.asarray(raw, dtype=np.float64)
    numel = np.asarray(numel, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.sqrt(raw[:, UCOL_DIFFSQ]) / np.sqrt(raw[:, UCOL_WEIGHTSQ])
        ratio = np.where(raw[:, UCOL_WEIGHTSQ] > 0, ratio, np.where(raw[:, UCOL_DIFFSQ] > 0, np.inf, 0.0))
        changed = np.where(numel > 0, raw[:, UCOL_CHANGED] / numel, np.nan)
    return np.stack([ratio, changed], axis=1).astype(np.float32)
