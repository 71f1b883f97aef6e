"""The column layout every statistics backend returns (described in :mod:`dsnotebook.stats.reference`).

Its own module so that the reference backend and its float32 path share it without
importing each other; ``dsnotebook.stats.reference`` re-exports every name.
"""
from __future__ import annotations

HIST_BINS = 64
HIST_EXP_MIN = -46  # bin 1 <-> floor(log2|x|) == -46 (and below); last bin: >= 16

COL_SUM, COL_SUMSQ, COL_ABSMAX, COL_NONFINITE, COL_ZEROS = range(5)
HIST_OFFSET = 5
GRAD_COLS = HIST_OFFSET + HIST_BINS

UCOL_DIFFSQ, UCOL_WEIGHTSQ, UCOL_CHANGED = range(3)
UPDATE_COLS = 3


def hist_bin_edges() -> list[float]:
    """Lower edge |x| of each histogram bin (bin 0 is exact zero, edge 0)."""
    return [0.0] + [2.0 ** (k - 1 + HIST_EXP_MIN) for k in range(1, HIST_BINS)]
