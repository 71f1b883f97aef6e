"""Live gradient heatmap (anywidget): rows = tensors in model order, columns = steps.

Traits carry only metadata and one periodic snapshot; new columns travel as custom
messages with a small JSON header and one binary float32 buffer each (see
``PROTOCOL`` below). Python holds the authoritative copy of every column it was given
(the Run bounds how many: it calls ``drop`` for the columns it downsampled away).

Wire protocol (kernel -> browser), all values float32, never float64:

* custom message ``{"type": "append", "seq": n, "steps": [...], "shape": [S, k, R],
  "layout": "stat,col,row", "dtype": "float32"}`` + one buffer of ``S*k*R`` float32,
  i.e. for each statistic, the k new columns one after the other, each column holding
  the R rows in model order. Big batches are cut into several messages (each well
  below ``MAX_MESSAGE_BYTES``), each with its own ``seq``.
* custom message ``{"type": "drop", "seq": n, "steps": [...]}``: remove those columns.
* traits ``snapshot`` (bytes, same layout, shape ``[S, C, R]``) and ``snapshot_meta``
  (``{"seq", "steps", "shape", "layout", "dtype", "truncated", "total_columns"}``):
  the state after every message up to ``seq``. The browser applies deltas strictly in
  order (``seq == last + 1``); after a gap (custom messages sent before its model
  existed are lost) it ignores deltas until a snapshot with a higher ``seq`` arrives.
  The snapshot is refreshed about once a second while sending (less often for big runs:
  at most ~1 MB/s of snapshot) and at every ``flush()``.

Sends are rate limited: ``append``/``drop``/``set_status`` send at most once per
``MIN_INTERVAL`` seconds; in between they stay pending until the next call that finds
the interval elapsed, or ``flush()``.
"""
from __future__ import annotations

import math
import pathlib
import threading
import time
from typing import Any, Callable, Sequence

import anywidget
import numpy as np
import traitlets

from dsnotebook.widgets import colors

__all__ = ["HeatmapWidget", "DEFAULT_STATS"]

_STATIC = pathlib.Path(__file__).parent / "static" / "heatmap.js"

_MISSING_BUNDLE_ESM = """
export default { render({ el }) {
  const p = document.createElement("pre");
  p.className = "dsn-heatmap-missing";
  p.textContent = "dsnotebook: the heatmap's JavaScript bundle is missing "
    + "(dsnotebook/widgets/static/heatmap.js). Reinstall dsnotebook, or run "
    + "`npm install && npm run build` in js/.";
  el.appendChild(p);
} };
"""


def _load_esm() -> str:
    # read the file ourselves: a pathlib.Path would make anywidget watch it (HMR thread)
    # (always several lines: anywidget takes a one-line string with a dot for a path)
    try:
        return "// dsnotebook heatmap widget\n" + _STATIC.read_text(encoding="utf-8")
    except OSError:
        return _MISSING_BUNDLE_ESM


DEFAULT_STATS: list[dict[str, Any]] = [
    {"key": "norm", "label": "grad norm", "log": True},
    {"key": "absmax", "label": "grad abs-max", "log": True},
    {"key": "update_ratio", "label": "update / weight", "log": True},
    {"key": "nonfinite", "label": "non-finite count", "log": False},
    {"key": "zero_frac", "label": "zero fraction", "log": False},
]

LAYOUT = "stat,col,row"


class HeatmapWidget(anywidget.AnyWidget):
    """Tensors x steps heatmap of per-tensor statistics, updated live.

    ``values`` given to :meth:`append` have shape ``[n_stats, n_rows, n_new]``
    (float32; NaN = no data for that cell).
    """

    _esm = _load_esm()

    rows = traitlets.List(traitlets.Dict()).tag(sync=True)
    stats = traitlets.List(traitlets.Dict()).tag(sync=True)
    #: key of the statistic shown (the <select> sets it from the browser too)
    stat = traitlets.Unicode("").tag(sync=True)
    #: key of the statistic whose value > 0 marks a cell as non-finite ("" = none)
    mark_stat = traitlets.Unicode("nonfinite").tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    title = traitlets.Unicode("gradient heatmap").tag(sync=True)
    lut = traitlets.Bytes(colors.LUT_BYTES).tag(sync=True)
    nan_color = traitlets.List(traitlets.Int(), list(colors.NAN_RGB)).tag(sync=True)
    mark_color = traitlets.List(traitlets.Int(), list(colors.MARK_RGB)).tag(sync=True)
    snapshot = traitlets.Bytes(b"").tag(sync=True)
    snapshot_meta = traitlets.Dict().tag(sync=True)
    #: linked selection: module of the row clicked in the browser ("" = none), and the
    #: step of the cell clicked (-1 = none); settable from Python (outlines those rows)
    selected_module = traitlets.Unicode("").tag(sync=True)
    selected_step = traitlets.Int(-1).tag(sync=True)
    #: the step under the pointer (debounced; -1 = none), for panels that follow it
    hover_step = traitlets.Int(-1).tag(sync=True)

    #: at most one send per this many seconds (append/drop/status)
    MIN_INTERVAL = 0.1
    #: refresh the snapshot traits at least this long after the previous refresh ...
    SNAPSHOT_INTERVAL = 1.0
    #: ... and no more than this many snapshot bytes per second (big runs refresh less often)
    SNAPSHOT_BYTES_PER_S = 1_000_000
    #: bytes of float32 payload per custom message (well below the 10 MB websocket cap)
    MAX_MESSAGE_BYTES = 2 * 1024 * 1024
    #: the snapshot keeps the most recent columns that fit in this many bytes
    MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024

    def __init__(
        self,
        rows: Sequence[dict[str, Any]] = (),
        stats: Sequence[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        rows = [dict(r) for r in rows]
        stats = [dict(s) for s in (DEFAULT_STATS if stats is None else stats)]
        for s in stats:
            if "key" not in s:
                raise ValueError(f"every stat needs a 'key': {s!r}")
            s.setdefault("label", s["key"])
            s["log"] = bool(s.get("log", False))
        for i, r in enumerate(rows):  # plain JSON: str labels, int shapes
            r["name"] = str(r.get("name", f"row {i}"))
            r["module"] = str(r.get("module", r["name"].rpartition(".")[0]))
            r["tensor"] = str(r.get("tensor", r["name"].rpartition(".")[2]))
            if r.get("shape") is not None:
                r["shape"] = [int(d) for d in r["shape"]]
        kwargs.setdefault("stat", stats[0]["key"] if stats else "")
        keys = [s["key"] for s in stats]
        if kwargs.get("mark_stat", "nonfinite") not in keys:
            kwargs["mark_stat"] = ""
        self._lock = threading.RLock()
        self._n_stats = len(stats)
        self._n_rows = len(rows)
        # authoritative columns, layout [stat, col, row] (capacity grows by doubling)
        self._buf = np.empty((self._n_stats, 16, self._n_rows), dtype=np.float32)
        self._steps: list[int] = []
        self._seq = 0
        self._pending_steps: list[int] = []
        self._pending_vals: list[np.ndarray] = []  # each [S, k, R]
        self._pending_drop: list[int] = []
        self._pending_status: str | None = None
        self._last_send = -math.inf
        self._last_status = -math.inf
        self._last_snapshot = -math.inf
        self._snapshot_seq = 0
        self._n_messages = 0
        #: callable returning the text/plain representation (set by the Run/tracer)
        self.text_fallback: Callable[[], str] | None = None
        super().__init__(rows=rows, stats=stats, **kwargs)
        self.snapshot_meta = self._snapshot_meta([], False)

    @traitlets.validate("rows", "stats")
    def _fixed_shape(self, proposal: Any) -> Any:
        name = proposal["trait"].name
        n = self.__dict__.get("_n_rows" if name == "rows" else "_n_stats")
        if n is not None and len(proposal["value"]) != n:
            raise traitlets.TraitError(
                f"{name} has {n} entries for the life of the widget; make a new HeatmapWidget for another model")
        return proposal["value"]

    # ------------------------------------------------------------------ public API
    @property
    def steps(self) -> list[int]:
        """Steps of the columns held, in order."""
        return list(self._steps) + list(self._pending_steps)

    def values(self) -> np.ndarray:
        """All columns held (sent and pending), as ``[n_stats, n_rows, n_cols]`` float32."""
        with self._lock:
            held = self._buf[:, : len(self._steps), :]
            parts = [held] + self._pending_vals
            out = np.concatenate(parts, axis=1) if len(parts) > 1 else held.copy()
            return np.ascontiguousarray(out.transpose(0, 2, 1))

    def append(self, steps: Sequence[int], values: np.ndarray) -> None:
        """Add columns ``steps`` with ``values`` of shape [n_stats, n_rows, len(steps)]."""
        steps = [int(s) for s in steps]
        vals = np.asarray(values, dtype=np.float32)
        expect = (self._n_stats, self._n_rows, len(steps))
        if vals.shape != expect:
            raise ValueError(f"values must have shape {expect} (stats, rows, steps), got {vals.shape}")
        if not steps:
            return
        with self._lock:
            self._pending_steps.extend(steps)
            self._pending_vals.append(np.ascontiguousarray(vals.transpose(0, 2, 1)))
            self._maybe_send()

    def drop(self, steps: Sequence[int]) -> None:
        """Remove the columns of ``steps`` (downsampled away by the Run)."""
        gone = {int(s) for s in steps}
        if not gone:
            return
        with self._lock:
            if self._pending_steps and gone.intersection(self._pending_steps):
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

    def set_status(self, text: str) -> None:
        """Show ``text`` above the heatmap.

        At most one status update per ``MIN_INTERVAL`` (on its own clock, so a status set
        right after a data send still goes out); a newer one waits for the next send or
        ``flush()``.
        """
        with self._lock:
            self._pending_status = str(text)
            now = time.monotonic()
            if now - self._last_status >= self.MIN_INTERVAL:
                self._apply_status(now)

    def flush(self) -> None:
        """Send everything pending now and refresh the snapshot (call at cell end)."""
        with self._lock:
            self._send_pending(force_snapshot=True)

    # ------------------------------------------------------------------ display
    def display(self) -> Any:
        """Display the widget (with a display id) and return the display handle.

        The output's ``text/plain`` is the text summary as of now; call
        :meth:`update_display` at the end of the cell so that saved notebooks, nbconvert's
        text/markdown exports and terminals carry the final summary.
        """
        from IPython.display import display

        self._display_handle = display(self, display_id=True)
        return self._display_handle

    def update_display(self) -> None:
        """Re-send the output of :meth:`display` (fresh text summary; the live view stays)."""
        handle = getattr(self, "_display_handle", None)
        if handle is not None:
            handle.update(self)

    # ------------------------------------------------------------------ text repr
    def _repr_mimebundle_(self, **kwargs: Any):  # type: ignore[override]
        bundle = super()._repr_mimebundle_(**kwargs)
        text = self._text_summary()
        if isinstance(bundle, tuple):
            data, meta = bundle
            data = dict(data or {})
            data["text/plain"] = text
            return data, meta
        data = dict(bundle or {})
        data["text/plain"] = text
        return data

    def _text_summary(self) -> str:
        if self.text_fallback is not None:
            try:
                return str(self.text_fallback())
            except Exception as exc:  # a broken fallback must not break display
                return f"{self.title}: text summary failed ({type(exc).__name__}: {exc})"
        return self.default_text()

    def default_text(self) -> str:
        """A small summary: last value of each row for the shown statistic."""
        steps = self.steps
        head = f"{self.title}: {self._n_rows} tensors x {len(steps)} steps"
        if steps:
            head += f" (steps {steps[0]}..{steps[-1]})"
        lines = [head]
        if self.status:
            lines.append(self.status)
        keys = [s["key"] for s in self.stats]
        if not steps or self.stat not in keys:
            return "\n".join(lines)
        si = keys.index(self.stat)
        last = self.values()[si, :, -1]
        label = self.stats[si]["label"]
        width = max([len("tensor")] + [len(r["name"]) for r in self.rows])
        lines.append(f"{'tensor':<{width}}  {label} @ step {steps[-1]}")
        for r, v in zip(self.rows, last):
            lines.append(f"{r['name']:<{width}}  {'-' if np.isnan(v) else format(float(v), '.4g')}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ internals
    def _maybe_send(self) -> None:
        if time.monotonic() - self._last_send >= self.MIN_INTERVAL:
            self._send_pending(force_snapshot=False)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _send_msg(self, content: dict[str, Any], buffers: list[Any] | None = None) -> None:
        self._n_messages += 1
        self.send(content, buffers=buffers)

    def _send_pending(self, force_snapshot: bool) -> None:
        now = time.monotonic()
        sent = False
        if self._pending_drop:
            self._send_msg({"type": "drop", "seq": self._next_seq(), "steps": self._pending_drop})
            self._pending_drop = []
            sent = True
        if self._pending_steps:
            vals = np.concatenate(self._pending_vals, axis=1) if len(self._pending_vals) > 1 else self._pending_vals[0]
            steps = self._pending_steps
            self._pending_steps, self._pending_vals = [], []
            self._store(steps, vals)
            col_bytes = max(1, self._n_stats * self._n_rows * 4)
            per_msg = max(1, self.MAX_MESSAGE_BYTES // col_bytes)
            for a in range(0, len(steps), per_msg):
                chunk = np.ascontiguousarray(vals[:, a : a + per_msg, :])
                header = {
                    "type": "append",
                    "seq": self._next_seq(),
                    "steps": steps[a : a + per_msg],
                    "shape": list(chunk.shape),
                    "layout": LAYOUT,
                    "dtype": "float32",
                }
                self._send_msg(header, [memoryview(chunk).cast("B")])
            sent = True
        if sent:
            self._last_send = now
        stale = self._snapshot_seq != self._seq
        interval = max(self.SNAPSHOT_INTERVAL, self._snapshot_nbytes() / self.SNAPSHOT_BYTES_PER_S)
        with self.hold_sync():
            self._apply_status(now)
            if stale and (force_snapshot or now - self._last_snapshot >= interval):
                self._refresh_snapshot(now)

    def _apply_status(self, now: float) -> None:
        status = self._pending_status
        self._pending_status = None
        if status is not None:
            self._last_status = now
            if status != self.status:
                self.status = status

    def _store(self, steps: list[int], vals: np.ndarray) -> None:
        n, k = len(self._steps), len(steps)
        if n + k > self._buf.shape[1]:
            cap = max(16, self._buf.shape[1])
            while cap < n + k:
                cap *= 2
            buf = np.empty((self._n_stats, cap, self._n_rows), dtype=np.float32)
            buf[:, :n, :] = self._buf[:, :n, :]
            self._buf = buf
        self._buf[:, n : n + k, :] = vals
        self._steps.extend(steps)

    def _snapshot_nbytes(self) -> int:
        return min(self.MAX_SNAPSHOT_BYTES, len(self._steps) * self._n_stats * self._n_rows * 4)

    def _snapshot_meta(self, steps: list[int], truncated: bool) -> dict[str, Any]:
        return {
            "seq": self._seq,
            "steps": steps,
            "shape": [self._n_stats, len(steps), self._n_rows],
            "layout": LAYOUT,
            "dtype": "float32",
            "truncated": truncated,
            "total_columns": len(self._steps),
        }

    def _refresh_snapshot(self, now: float) -> None:
        n = len(self._steps)
        col_bytes = max(1, self._n_stats * self._n_rows * 4)
        k = min(n, self.MAX_SNAPSHOT_BYTES // col_bytes)
        block = np.ascontiguousarray(self._buf[:, n - k : n, :])
        self.snapshot = block.tobytes()
        self.snapshot_meta = self._snapshot_meta(self._steps[n - k :], k < n)
        self._snapshot_seq = self._seq
        self._last_snapshot = now
