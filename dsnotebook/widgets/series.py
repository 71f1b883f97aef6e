"""Per-step columns of a live widget, kernel side: the one series protocol of every panel
whose rows carry values over steps (heatmap, graph). The browser side is
``js/src/shared/series.ts`` (``followModel``), which applies what is sent here.

Python holds the authoritative copy of every column it was given (the Run bounds how
many: its feeder calls ``drop`` for the columns downsampled away) and sends deltas, never
the history. Wire protocol (kernel -> browser), values float32 only, never float64:

* custom message ``{"type": "append", "seq": n, "steps": [...], "shape": [S, k, R],
  "layout": "stat,col,row", "dtype": "float32"}`` + one buffer of ``S*k*R`` float32: for
  each statistic, the k new columns one after the other, each holding the R rows in
  order. Big batches are cut into several messages of at most ``max_message_bytes``
  (2 MiB, well below the websocket's 10 MB), each with its own ``seq``.
* custom message ``{"type": "drop", "seq": n, "steps": [...]}``: remove those columns.
* traits ``snapshot`` (bytes, same layout, shape ``[S, C, R]``) and ``snapshot_meta``
  (``{"seq", "steps", "shape", "layout", "dtype", "truncated", "total_columns"}``): the
  state after every message up to ``seq``. The browser applies deltas strictly in order
  (``seq == last + 1``); after a gap (messages sent before its model existed are lost) it
  ignores deltas until a snapshot with a higher ``seq`` arrives. The snapshot is refreshed
  about once a second while sending (less often for big runs: at most ~1 MB/s), at every
  ``flush()``, and it keeps the most recent columns that fit in ``max_snapshot_bytes``.

Sends are rate limited: ``append``/``drop`` send at most once per ``min_interval`` seconds;
in between they stay pending until the next call that finds the interval elapsed, or
``flush()``. A column dropped while pending is never sent.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable, ClassVar, Sequence

import anywidget
import numpy as np
import traitlets

from dsnotebook.widgets import colors

__all__ = ["SeriesChannel", "SeriesWidget", "LAYOUT", "DTYPE", "normalize_stats"]

LAYOUT = "stat,col,row"
DTYPE = "float32"


class SeriesChannel:
    """The columns of one widget and the messages that keep its browser copy equal to them.

    ``widget`` needs ``send(content, buffers)``, ``hold_sync()`` and the ``snapshot`` /
    ``snapshot_meta`` traits. ``on_send(now)`` runs inside the ``hold_sync`` of every send
    (the widget's rate-limited status goes out with the data).
    """

    #: payload bytes per custom message (well below the 10 MB websocket cap)
    max_message_bytes = 2 * 1024 * 1024
    #: the snapshot keeps the most recent columns that fit in this many bytes
    max_snapshot_bytes = 8 * 1024 * 1024
    #: refresh the snapshot at least this long after the previous refresh ...
    snapshot_interval = 1.0
    #: ... and no more than this many snapshot bytes per second (big runs refresh less often)
    snapshot_bytes_per_s = 1_000_000
    #: one column must fit in one message
    MAX_COLUMN_BYTES: ClassVar[int] = 8 * 1024 * 1024

    def __init__(self, widget: Any, n_stats: int, n_rows: int, min_interval: float = 0.0,
                 on_send: Callable[[float], None] | None = None) -> None:
        self.widget = widget
        self.min_interval = float(min_interval)
        self.on_send = on_send
        self.lock = threading.RLock()
        #: custom messages sent so far
        self.messages = 0
        self._seq = 0
        self._last_send = -math.inf
        self._last_snapshot = -math.inf
        self._snapshot_seq = 0
        self._configure(n_stats, n_rows)

    def _configure(self, n_stats: int, n_rows: int) -> None:
        n_stats, n_rows = int(n_stats), int(n_rows)
        if n_stats < 0 or n_rows < 0:
            raise ValueError(f"n_stats and n_rows must be >= 0, got {n_stats}, {n_rows}")
        if n_stats * n_rows * 4 > self.MAX_COLUMN_BYTES:
            raise ValueError(f"{n_stats} statistics x {n_rows} rows make a column of {n_stats * n_rows * 4} bytes; "
                             f"one column must fit in one message ({self.MAX_COLUMN_BYTES} bytes): show fewer rows")
        self.n_stats, self.n_rows = n_stats, n_rows
        self._buf = np.empty((n_stats, 16, n_rows), np.float32)  # sent columns [stat, col, row]
        self._steps: list[int] = []
        self._pending_steps: list[int] = []
        self._pending_vals: list[np.ndarray] = []  # each [S, k, R]
        self._pending_drop: list[int] = []

    # ------------------------------------------------------------------ data
    @property
    def steps(self) -> list[int]:
        """Steps of the columns held (sent and pending), in order."""
        with self.lock:
            return self._steps + self._pending_steps

    @property
    def seq(self) -> int:
        """Number of the last message sent (the snapshot carries the state after it)."""
        return self._seq

    def values(self) -> np.ndarray:
        """All columns held (sent and pending), as ``[n_stats, n_rows, n_cols]`` float32."""
        with self.lock:
            parts = [self._buf[:, : len(self._steps), :]] + self._pending_vals
            out = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
            return np.array(out.transpose(0, 2, 1), dtype=np.float32, order="C")  # a copy

    def append(self, steps: Sequence[int], values: np.ndarray) -> None:
        """Add columns ``steps`` (increasing, after every step held) with ``values`` of shape
        ``[n_stats, n_rows, len(steps)]`` (NaN = no value), sent as float32."""
        steps = [int(s) for s in steps]
        vals = np.asarray(values, dtype=np.float32)
        expect = (self.n_stats, self.n_rows, len(steps))
        if vals.shape != expect:
            raise ValueError(f"values must have shape {expect} (stats, rows, steps), got {vals.shape}")
        if not steps:
            return
        with self.lock:
            held = self._steps + self._pending_steps
            order = ([held[-1]] if held else []) + steps
            if any(b <= a for a, b in zip(order, order[1:])):
                raise ValueError(f"steps must increase: {steps[:5]} after {held[-1:] or 'none'}")
            self._pending_steps.extend(steps)
            self._pending_vals.append(np.ascontiguousarray(vals.transpose(0, 2, 1)))
            self._maybe_send()

    def drop(self, steps: Sequence[int]) -> None:
        """Remove the columns of ``steps`` (a pending one is never sent)."""
        gone = {int(s) for s in steps}
        if not gone:
            return
        with self.lock:
            if gone.intersection(self._pending_steps):
                vals = np.concatenate(self._pending_vals, axis=1)
                keep = np.array([s not in gone for s in self._pending_steps], dtype=bool)
                self._pending_steps = [s for s in self._pending_steps if s not in gone]
                self._pending_vals = [vals[:, keep, :]] if keep.any() else []
            sent = gone.intersection(self._steps)
            if sent:
                self._pending_drop.extend(s for s in self._steps if s in sent)
                keep = np.array([s not in sent for s in self._steps], dtype=bool)
                n = int(keep.sum())
                self._buf[:, :n, :] = self._buf[:, : len(self._steps), :][:, keep, :]
                self._steps = [s for s in self._steps if s not in sent]
            self._maybe_send()

    def reset(self, n_stats: int, n_rows: int) -> None:
        """Forget every column (new rows or statistics). The caller sets ``rows``/``stats`` in
        the same ``hold_sync``; the empty snapshot gets a new ``seq`` so it supersedes the old state."""
        with self.lock:
            self._configure(n_stats, n_rows)
            self._seq += 1
            self.write_snapshot()

    def flush(self) -> None:
        """Send everything pending now and refresh the snapshot (call at cell end)."""
        with self.lock:
            self._send_pending(force_snapshot=True)

    def snapshot_nbytes(self) -> int:
        """Bytes of the snapshot as it would be written now."""
        return min(self.max_snapshot_bytes, len(self._steps) * self.n_stats * self.n_rows * 4)

    def write_snapshot(self) -> None:
        """Write the snapshot traits now, without counting it as a periodic refresh."""
        with self.lock, self.widget.hold_sync():
            self._write_snapshot()

    # ------------------------------------------------------------------ sending
    def _maybe_send(self) -> None:
        if time.monotonic() - self._last_send >= self.min_interval:
            self._send_pending(force_snapshot=False)

    def _send(self, content: dict[str, Any], buffers: list[Any] | None = None) -> None:
        self.messages += 1
        self.widget.send(content, buffers=buffers)

    def _send_pending(self, force_snapshot: bool) -> None:
        now = time.monotonic()
        sent = False
        if self._pending_drop:
            self._seq += 1
            self._send({"type": "drop", "seq": self._seq, "steps": self._pending_drop})
            self._pending_drop = []
            sent = True
        if self._pending_steps:
            vals = np.concatenate(self._pending_vals, axis=1) if len(self._pending_vals) > 1 else self._pending_vals[0]
            steps = self._pending_steps
            self._pending_steps, self._pending_vals = [], []
            self._store(steps, vals)
            per_msg = max(1, self.max_message_bytes // max(1, self.n_stats * self.n_rows * 4))
            for a in range(0, len(steps), per_msg):
                chunk = np.ascontiguousarray(vals[:, a:a + per_msg, :], dtype=np.float32)
                self._seq += 1
                self._send({"type": "append", "seq": self._seq, "steps": steps[a:a + per_msg],
                            "shape": list(chunk.shape), "layout": LAYOUT, "dtype": DTYPE},
                           [memoryview(chunk).cast("B")])
            sent = True
        if sent:
            self._last_send = now
        stale = self._snapshot_seq != self._seq
        interval = max(self.snapshot_interval, self.snapshot_nbytes() / self.snapshot_bytes_per_s)
        with self.widget.hold_sync():
            if self.on_send is not None:
                self.on_send(now)
            if stale and (force_snapshot or now - self._last_snapshot >= interval):
                self._write_snapshot()
                self._last_snapshot = now

    def _store(self, steps: list[int], vals: np.ndarray) -> None:
        n, k = len(self._steps), len(steps)
        if n + k > self._buf.shape[1]:
            cap = max(16, self._buf.shape[1])
            while cap < n + k:
                cap *= 2
            buf = np.empty((self.n_stats, cap, self.n_rows), np.float32)
            buf[:, :n, :] = self._buf[:, :n, :]
            self._buf = buf
        self._buf[:, n:n + k, :] = vals
        self._steps.extend(steps)

    def _write_snapshot(self) -> None:
        n = len(self._steps)
        k = min(n, self.max_snapshot_bytes // max(1, self.n_stats * self.n_rows * 4))
        self.widget.snapshot = np.ascontiguousarray(self._buf[:, n - k:n, :]).tobytes()
        self.widget.snapshot_meta = {"seq": self._seq, "steps": self._steps[n - k:],
                                     "shape": [self.n_stats, k, self.n_rows], "layout": LAYOUT, "dtype": DTYPE,
                                     "truncated": k < n, "total_columns": n}
        self._snapshot_seq = self._seq


def normalize_stats(stats: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[{"key", "label", "log"}]`` as plain JSON (label defaults to the key)."""
    out = [dict(s) for s in stats]
    for s in out:
        if "key" not in s:
            raise ValueError(f"every stat needs a 'key': {s!r}")
        s["key"] = str(s["key"])
        s["label"] = str(s.get("label", s["key"]))
        s["log"] = bool(s.get("log", False))
    return out


class SeriesWidget(anywidget.AnyWidget):
    """A panel whose rows carry per-step values: the shared traits and the channel (``series``).

    Subclasses set ``_esm`` and their own traits; ``rows`` and ``stats`` are JSON lists whose
    lengths give the columns' shape.
    """

    rows = traitlets.List(traitlets.Dict()).tag(sync=True)
    stats = traitlets.List(traitlets.Dict()).tag(sync=True)
    #: key of the statistic shown (the browser's <select> sets it too)
    stat = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    lut = traitlets.Bytes(colors.LUT_BYTES).tag(sync=True)
    nan_color = traitlets.List(traitlets.Int(), list(colors.NAN_RGB)).tag(sync=True)
    mark_color = traitlets.List(traitlets.Int(), list(colors.MARK_RGB)).tag(sync=True)
    snapshot = traitlets.Bytes(b"").tag(sync=True)
    snapshot_meta = traitlets.Dict().tag(sync=True)

    #: at most one send per this many seconds (append/drop/status); 0: the feeder rate-limits
    MIN_INTERVAL: ClassVar[float] = 0.0

    def __init__(self, rows: list[dict[str, Any]], stats: Sequence[dict[str, Any]], **kwargs: Any) -> None:
        stats = normalize_stats(stats)
        kwargs.setdefault("stat", stats[0]["key"] if stats else "")
        self._pending_status: str | None = None
        self._last_status = -math.inf
        #: the columns and their wire protocol
        self.series = SeriesChannel(self, len(stats), len(rows), min_interval=self.MIN_INTERVAL,
                                    on_send=self._apply_status)
        super().__init__(rows=rows, stats=stats, **kwargs)
        self.series.write_snapshot()

    @property
    def steps(self) -> list[int]:
        """Steps of the columns held, in order."""
        return self.series.steps

    def values(self) -> np.ndarray:
        """All columns held, as ``[n_stats, n_rows, n_cols]`` float32."""
        return self.series.values()

    def append(self, steps: Sequence[int], values: np.ndarray) -> None:
        """Add columns ``steps`` with ``values`` of shape ``[n_stats, n_rows, len(steps)]``."""
        self.series.append(steps, values)

    def drop(self, steps: Sequence[int]) -> None:
        """Remove the columns of ``steps`` (downsampled away by the Run)."""
        self.series.drop(steps)

    def flush(self) -> None:
        """Send everything pending now and refresh the snapshot (call at cell end)."""
        self.series.flush()

    def set_status(self, text: str) -> None:
        """Show ``text`` above the panel: at most one update per ``MIN_INTERVAL`` (on its own
        clock, so a status set right after a data send still goes out); a newer one waits for
        the next send or ``flush()``."""
        with self.series.lock:
            self._pending_status = str(text)
            now = time.monotonic()
            if now - self._last_status >= self.MIN_INTERVAL:
                self._apply_status(now)

    def _apply_status(self, now: float) -> None:
        status, self._pending_status = self._pending_status, None
        if status is not None:
            self._last_status = now
            if status != self.status:
                self.status = status
