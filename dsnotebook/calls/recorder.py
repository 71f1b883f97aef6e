"""The default recorder: where traced calls go when no tracer is attached.

``dsnotebook.trace.calls()`` reads it as a DataFrame with the columns of the Run's ``calls``
table (``step`` is None: there is no training step without a tracer).  Memory is bounded:
the newest ``max_calls`` calls (calls and rows together) are kept; ``dropped`` counts the rest.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable

import pandas as pd
import torch

from dsnotebook.calls.record import Call
from dsnotebook.calls.rows import Collector, fetch_stats
from dsnotebook.calls.state import OVERHEAD, STATE
from dsnotebook.run.records import RECORD_COLUMNS

__all__ = ["Recorder", "DEFAULT", "stats_by_device"]

COLUMNS = RECORD_COLUMNS["calls"]


def stats_by_device(stats_for: Callable[[torch.device], Callable[[list[torch.Tensor]], torch.Tensor]],
                    tensors: list[torch.Tensor]) -> torch.Tensor:
    """One batched statistics call per device (``stats_for(device)(tensors)``), rows in input order,
    on the first tensor's device."""
    devices = {t.device for t in tensors}
    if len(devices) == 1:
        return stats_for(tensors[0].device)(tensors)
    first = tensors[0].device
    out: list[Any] = [None] * len(tensors)
    for d in devices:
        idx = [i for i, t in enumerate(tensors) if t.device == d]
        vals = stats_for(d)([tensors[i] for i in idx]).to(first)
        for k, i in enumerate(idx):
            out[i] = vals[k]
    return torch.stack(out)


class Recorder:
    """A sink without a training step: calls kept in memory until read (see the module docstring)."""

    def __init__(self, max_calls: int = 100_000) -> None:
        self._collector = Collector(max_calls)
        self.add = self._collector.add  # the hot path: no extra call level
        self._rows: deque[dict[str, Any]] = deque(maxlen=max_calls)
        self._lock = threading.Lock()
        self._backend: Any = None
        self._row_drops = 0
        self.origin = time.perf_counter()

    @property
    def max_calls(self) -> int:
        return self._collector.max_calls

    @property
    def dropped(self) -> int:
        """Calls dropped to keep memory bounded (the oldest first)."""
        return self._collector.dropped + self._row_drops

    def step(self) -> int | None:
        return None

    def stats(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """The torch reference backend's statistics (its exact path: no per-layout buffers, which
        thousands of different call signatures would only churn)."""
        if self._backend is None:
            from dsnotebook.stats.reference import TorchStatsBackend

            self._backend = TorchStatsBackend()
        return stats_by_device(lambda _d: self._backend.grad_stats_exact, tensors)

    def rows(self) -> list[dict[str, Any]]:
        """Every kept call as a row (waits for the device once; copies statistics once per device)."""
        with self._lock:
            calls: list[Call] = self._collector.take(wait=True)
            for values, apply in fetch_stats(calls):
                apply(values.detach().cpu().numpy())
            new = Collector.rows(calls, self.origin)
            over = len(self._rows) + len(new) - self._collector.max_calls
            if over > 0:
                self._row_drops += over
            self._rows.extend(new)
            return list(self._rows)

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows(), columns=COLUMNS)
        df.attrs["overhead"] = OVERHEAD.as_dict()
        df.attrs["dropped"] = self.dropped
        return df

    def clear(self) -> None:
        """Forget every call recorded so far (calls still running are kept when they end)."""
        with self._lock:
            Collector.rows(self._collector.take(wait=True), self.origin)  # device events back to the pool
            self._rows.clear()
            self._collector.dropped = 0
            self._row_drops = 0
            self.origin = time.perf_counter()


#: where traced calls go without a tracer (``dsnotebook.trace.calls()``)
DEFAULT = Recorder()
STATE.set_default(DEFAULT)
