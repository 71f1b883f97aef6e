"""LiveHistogram: feeds one tensor's histograms over steps from a Run to a HistogramWidget, live.

Which tensor: the widget's ``tensor`` trait (set from Python, by the browser's close button,
or in the dashboard by a click on a heatmap row). On a change the panel is reset and gets
every retained step of that tensor at once; afterwards Run listeners add new steps as they
complete (a step is complete once a later one has started, or the run ended: a second
optimizer of the same step may still add gradients) at most once per ``min_interval``, and
steps the Run thins away are dropped from the panel too. Counts come from
:mod:`dsnotebook.views.histograms`, as in the report.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from dsnotebook.run.store import Run
from dsnotebook.views.histograms import HistSeries, bin_rows, tensor_histograms, tensor_index

__all__ = ["LiveHistogram", "columns"]


def columns(series: HistSeries) -> np.ndarray:
    """int64 [steps, bins + 1]: each step's bin counts, then its non-finite count (the panel's rows)."""
    return np.concatenate([series.counts, series.nonfinite[:, None]], axis=1)


class LiveHistogram:
    """One HistogramWidget kept in step with one Run (``widget``); ``show(name)`` picks the tensor."""

    def __init__(self, run: Run, min_interval: float = 0.25) -> None:
        from dsnotebook.widgets.histogram import HistogramWidget

        self.run = run
        self.min_interval = min_interval
        self.widget: Any = HistogramWidget(rows=bin_rows())
        self.tensor_id: int | None = None
        self.pushes = 0
        self._sent: list[int] = []
        self._last_push = 0.0
        self._closed = False
        self._lock = threading.RLock()
        self.widget.observe(self._on_tensor, "tensor")
        self._unsubscribe = run.subscribe(self._on_run)

    def show(self, name: str) -> None:
        """Show the histograms of the tensor called ``name`` ("" hides the panel's content)."""
        if self.widget.tensor == name:
            self._load(name)
        else:
            self.widget.tensor = name  # -> _on_tensor

    def _on_tensor(self, change: dict[str, Any]) -> None:
        self._load(change["new"])

    def _load(self, name: str) -> None:
        with self._lock:
            tid = tensor_index(self.run, name) if name else None
            self.tensor_id = tid
            if tid is None:
                self._sent = []
                self.widget.show(name, 0, [], [], np.zeros((0, len(self.widget.rows)), np.int64))
                self.widget.set_status(f"no tensor named {name!r} in this run" if name else "")
                self.widget.flush()
                return
            t = self.run.tensors[tid]
            steps = self._complete(self.run.steps)
            series = tensor_histograms(self.run, tid, steps)
            self.widget.show(t["name"], int(t["numel"]), t.get("shape") or [], series.steps, columns(series))
            self._sent = list(series.steps)
            self._last_push = time.monotonic()
            self.widget.set_status(self._status())
            self.widget.flush()

    def _complete(self, steps: list[int]) -> list[int]:
        return steps if self._closed or not steps else steps[:-1]

    def _on_run(self, kind: str, steps: list[int]) -> None:
        if kind == "drop":
            with self._lock:
                gone = set(steps).intersection(self._sent)
                if gone:
                    self._sent = [s for s in self._sent if s not in gone]
                    self.widget.drop(sorted(gone))
            return
        if kind == "append" and time.monotonic() - self._last_push >= self.min_interval:
            self.push()

    def push(self) -> int:
        """Send the selected tensor's complete steps not sent yet; returns how many columns."""
        with self._lock:
            self._last_push = time.monotonic()
            if self.tensor_id is None:
                return 0
            last = self._sent[-1] if self._sent else -1
            new = [s for s in self._complete(self.run.steps) if s > last]
            series = tensor_histograms(self.run, self.tensor_id, new)
            if not series.steps:
                return 0
            self.widget.append_counts(series.steps, columns(series))
            self._sent.extend(series.steps)
            self.pushes += 1
            self.widget.set_status(self._status())
            return len(series.steps)

    def _status(self) -> str:
        n = len(self._sent)
        if not n:
            return "no gradient statistics of this tensor yet"
        return f"{n} steps ({self._sent[0]}..{self._sent[-1]})"

    def close(self) -> None:
        """Send the last steps (the run ended: every step is complete) and stop listening to the Run;
        a tensor picked afterwards still shows (every retained step)."""
        self._closed = True
        self._unsubscribe()
        self.push()
        self.widget.flush()
