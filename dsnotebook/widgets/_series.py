"""Per-step columns for a widget, on the heatmap's wire protocol (see ``heatmap.py``).

A widget with ``rows``, ``stats``, ``snapshot`` and ``snapshot_meta`` traits gets its
columns through a :class:`SeriesChannel`: ``append`` sends custom messages
``{"type": "append", "seq", "steps", "shape": [S, k, R], "layout": "stat,col,row",
"dtype": "float32"}`` + one float32 buffer, ``drop`` sends ``{"type": "drop", "seq",
"steps"}``, and the snapshot traits carry the state after message ``seq`` (refreshed at
most once per ``snapshot_interval`` and at ``flush``), so the browser side is the
heatmap's own ``Store`` / ``applyDelta`` / ``applySnapshot``.  The caller rate-limits.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Sequence

import numpy as np

from dsnotebook.widgets.esm import load_esm  # noqa: F401  (graph.py imports it from here)

LAYOUT = "stat,col,row"


class SeriesChannel:
    MAX_MESSAGE_BYTES = 2 * 1024 * 1024
    MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024

    def __init__(self, widget: Any, n_stats: int, n_rows: int, snapshot_interval: float = 1.0) -> None:
        self.widget = widget
        self.snapshot_interval = snapshot_interval
        self._lock = threading.RLock()
        self.reset(n_stats, n_rows, send=False)

    def reset(self, n_stats: int, n_rows: int, send: bool = True) -> None:
        """Forget every column (new rows or stats); the caller sets ``rows``/``stats`` in the same
        ``hold_sync`` so the browser rebuilds from this empty snapshot."""
        with self._lock:
            self.n_stats, self.n_rows = int(n_stats), int(n_rows)
            self._buf = np.empty((self.n_stats, 16, self.n_rows), np.float32)
            self._steps: list[int] = []
            self._seq = getattr(self, "_seq", 0)
            self._last_snapshot = -1e18
            self.messages = getattr(self, "messages", 0)
            if send:
                self._refresh_snapshot(time.monotonic())

    @property
    def steps(self) -> list[int]:
        return list(self._steps)

    def values(self) -> np.ndarray:
        """All columns as ``[n_stats, n_rows, n_cols]`` float32."""
        with self._lock:
            return np.ascontiguousarray(self._buf[:, : len(self._steps), :].transpose(0, 2, 1))

    def append(self, steps: Sequence[int], values: np.ndarray) -> None:
        steps = [int(s) for s in steps]
        vals = np.asarray(values, dtype=np.float32)
        expect = (self.n_stats, self.n_rows, len(steps))
        if vals.shape != expect:
            raise ValueError(f"values must have shape {expect} (stats, rows, steps), got {vals.shape}")
        if not steps:
            return
        with self._lock:
            if self._steps and steps[0] <= self._steps[-1]:
                raise ValueError(f"steps must increase: {steps[0]} after {self._steps[-1]}")
            block = np.ascontiguousarray(vals.transpose(0, 2, 1))  # [S, k, R]
            self._store(steps, block)
            per_msg = max(1, self.MAX_MESSAGE_BYTES // max(1, self.n_stats * self.n_rows * 4))
            for a in range(0, len(steps), per_msg):
                chunk = np.ascontiguousarray(block[:, a:a + per_msg, :])
                self._seq += 1
                self._send({"type": "append", "seq": self._seq, "steps": steps[a:a + per_msg],
                            "shape": list(chunk.shape), "layout": LAYOUT, "dtype": "float32"},
                           [memoryview(chunk).cast("B")])
            self._maybe_snapshot()

    def drop(self, steps: Sequence[int]) -> None:
        gone = {int(s) for s in steps}.intersection(self._steps)
        if not gone:
            return
        with self._lock:
            keep = np.array([s not in gone for s in self._steps], dtype=bool)
            n = int(keep.sum())
            self._buf[:, :n, :] = self._buf[:, : len(self._steps), :][:, keep, :]
            dropped = [s for s in self._steps if s in gone]
            self._steps = [s for s in self._steps if s not in gone]
            self._seq += 1
            self._send({"type": "drop", "seq": self._seq, "steps": dropped})
            self._maybe_snapshot()

    def flush(self) -> None:
        with self._lock:
            self._refresh_snapshot(time.monotonic())

    # -- internals -----------------------------------------------------------------------
    def _send(self, content: dict[str, Any], buffers: list[Any] | None = None) -> None:
        self.messages += 1
        self.widget.send(content, buffers=buffers)

    def _store(self, steps: list[int], block: np.ndarray) -> None:
        n, k = len(self._steps), len(steps)
        if n + k > self._buf.shape[1]:
            cap = max(16, self._buf.shape[1])
            while cap < n + k:
                cap *= 2
            buf = np.empty((self.n_stats, cap, self.n_rows), np.float32)
            buf[:, :n, :] = self._buf[:, :n, :]
            self._buf = buf
        self._buf[:, n:n + k, :] = block
        self._steps.extend(steps)

    def _maybe_snapshot(self) -> None:
        now = time.monotonic()
        if now - self._last_snapshot >= self.snapshot_interval:
            self._refresh_snapshot(now)

    def _refresh_snapshot(self, now: float) -> None:
        n = len(self._steps)
        k = min(n, self.MAX_SNAPSHOT_BYTES // max(1, self.n_stats * self.n_rows * 4))
        block = np.ascontiguousarray(self._buf[:, n - k:n, :])
        with self.widget.hold_sync():
            self.widget.snapshot = block.tobytes()
            self.widget.snapshot_meta = {"seq": self._seq, "steps": self._steps[n - k:],
                                         "shape": [self.n_stats, k, self.n_rows], "layout": LAYOUT,
                                         "dtype": "float32", "truncated": k < n, "total_columns": n}
        self._last_snapshot = now
