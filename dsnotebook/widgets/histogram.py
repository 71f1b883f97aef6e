"""Histogram-over-steps panel (anywidget): one tensor's log2|g| bins x steps, exact counts.

Rows are the histogram's bins plus one row of non-finite elements (the feeder,
:class:`dsnotebook.views.live_histogram.LiveHistogram`, names them); columns are steps,
sent on the series protocol (:mod:`dsnotebook.widgets.series`). That protocol carries
float32 only, which is exact for integers below 2^24 only, so every count travels split in
two exact float32 planes: statistic ``lo`` = count mod 2^24 and ``hi`` = count // 2^24; the
browser adds ``hi * 2^24 + lo`` in float64 (exact up to 2^48 elements per bin).
"""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import numpy as np
import traitlets

from dsnotebook.widgets.esm import load_esm
from dsnotebook.widgets.series import SeriesWidget

__all__ = ["HistogramWidget", "encode_counts", "decode_counts", "SPLIT", "HIST_STATS"]

SPLIT = 1 << 24  # float32 holds every integer below this exactly
MAX_COUNT = SPLIT * SPLIT  # hi must stay below 2^24 too
HIST_STATS: list[dict[str, Any]] = [
    {"key": "lo", "label": "count mod 2^24", "log": False},
    {"key": "hi", "label": "count // 2^24", "log": False},
]


def encode_counts(counts: np.ndarray) -> np.ndarray:
    """int counts [steps, rows] -> float32 [2, rows, steps] (lo, hi planes), both exact."""
    c = np.asarray(counts)
    if c.ndim != 2:
        raise ValueError(f"counts must be [steps, rows], got shape {c.shape}")
    c = c.astype(np.int64)
    if c.size and (c.min() < 0 or c.max() >= MAX_COUNT):
        raise ValueError(f"counts must be in [0, 2^48), got {c.min()}..{c.max()}")
    return np.stack([(c % SPLIT).T, (c // SPLIT).T]).astype(np.float32)


def decode_counts(planes: np.ndarray) -> np.ndarray:
    """float32 [2, rows, steps] -> int64 [steps, rows] (what the browser computes)."""
    p = np.asarray(planes, dtype=np.float64)
    return (p[1] * SPLIT + p[0]).T.astype(np.int64)


class HistogramWidget(SeriesWidget):
    """Bins x steps of one tensor's gradient histogram; ``tensor`` = "" shows nothing.

    The feeder calls :meth:`show` when the tensor changes (all its retained steps at once)
    and :meth:`append_counts` for new steps; ``tensor`` is also set from the browser's close
    button ("") and, in the dashboard, linked to the heatmap's clicked row.
    """

    _esm = load_esm("histogram")

    title = traitlets.Unicode("log2|g| histogram over steps").tag(sync=True)
    #: name of the tensor asked for ("" = none: the panel hides)
    tensor = traitlets.Unicode("").tag(sync=True)
    #: name of the tensor whose columns are held (differs from ``tensor`` until the kernel answers:
    #: a click while a cell runs is handled when the cell ends)
    shown = traitlets.Unicode("").tag(sync=True)
    numel = traitlets.Int(0).tag(sync=True)
    shape = traitlets.List(traitlets.Int()).tag(sync=True)

    MIN_INTERVAL: ClassVar[float] = 0.1

    def __init__(self, rows: Sequence[dict[str, Any]], **kwargs: Any) -> None:
        rows = [{**r, "name": str(r.get("name", f"bin {i}"))} for i, r in enumerate(rows)]
        super().__init__(rows=rows, stats=HIST_STATS, **kwargs)

    def show(self, tensor: str, numel: int, shape: Sequence[int], steps: Sequence[int], counts: np.ndarray) -> None:
        """Replace what is shown by ``tensor``'s counts [len(steps), rows] (exact integers)."""
        planes = encode_counts(np.asarray(counts).reshape(len(steps), len(self.rows)))
        with self.hold_sync():
            self.series.reset(len(HIST_STATS), len(self.rows))
            if self.tensor != tensor:
                self.tensor = str(tensor)
            self.shown = str(tensor)
            self.numel = int(numel)
            self.shape = [int(d) for d in shape]
        self.append(steps, planes)

    def append_counts(self, steps: Sequence[int], counts: np.ndarray) -> None:
        """Add columns: counts [len(steps), rows] (exact integers)."""
        self.append(steps, encode_counts(np.asarray(counts).reshape(len(steps), len(self.rows))))

    def counts(self) -> np.ndarray:
        """All columns held, as exact int64 counts [steps, rows]."""
        return decode_counts(self.values())
