"""LiveHeatmap: feeds a Run's new steps to a HeatmapWidget while training runs.

Run listeners fire inside the training loop (when statistics reach the host); this
adaptor turns them into at most ~10 column pushes per second.  A step is sent once it is
complete (a later step has started, or the run ended), so its update statistics, which
arrive after its gradient statistics, are never missing from the browser.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from dsnotebook.run.store import Run
from dsnotebook.views.text import text_summary
from dsnotebook.widgets import DEFAULT_STATS as HEATMAP_STATS


class LiveHeatmap:
    """One heatmap widget kept in step with one Run."""

    def __init__(self, run: Run, flush: Callable[[], None] | None = None, min_interval: float = 0.1) -> None:
        from dsnotebook.widgets import HeatmapWidget

        self.run = run
        self._flush = flush
        self.min_interval = min_interval
        rows = [{"name": t["name"], "module": t["module"], "tensor": t["tensor"], "shape": t["shape"]}
                for t in run.tensors]
        self.widget: Any = HeatmapWidget(rows=rows, stats=HEATMAP_STATS)
        self.widget.text_fallback = lambda: text_summary(run)
        self._sent: set[int] = set()
        self._last_sent = -1
        self._last_push = 0.0
        self._unsubscribe = run.subscribe(self._on_run)
        self.pushes = 0

    def display(self) -> None:
        # The widget's own display() keeps a display id, so the saved text/plain output can
        # be replaced by the final summary in close().
        self.widget.display()

    def set_status(self, text: str) -> None:
        self.widget.set_status(text)

    def _on_run(self, kind: str, steps: list[int]) -> None:
        if kind == "drop":
            gone = [s for s in steps if s in self._sent]
            if gone:
                self._sent.difference_update(gone)
                self.widget.drop(gone)
            return
        now = time.monotonic()
        if now - self._last_push >= self.min_interval:
            self.push(complete_only=True)

    def push(self, complete_only: bool = False) -> int:
        """Send retained steps not sent yet; returns how many columns went out."""
        steps = self.run.steps
        if complete_only and steps:
            steps = steps[:-1]
        new = [s for s in steps if s > self._last_sent]
        self._last_push = time.monotonic()
        if not new:
            return 0
        values = np.stack([self.run.matrix(s["key"], new) for s in HEATMAP_STATS]).astype(np.float32)
        self.widget.append(new, values)
        self._sent.update(new)
        self._last_sent = new[-1]
        self.pushes += 1
        return len(new)

    def close(self, status: str = "finished") -> None:
        """Send everything (after delivering copies still in flight) and stop listening."""
        if self._flush is not None:
            self._flush(wait=True)
        self.push(complete_only=False)
        self._unsubscribe()
        steps = self.run.steps
        self.widget.set_status(f"{status} - {len(steps)} steps shown" + (f", last step {steps[-1]}" if steps else ""))
        self.widget.flush()
        self.widget.update_display()
