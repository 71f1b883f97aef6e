"""Device -> host copies without a synchronisation per step.

Each submitted device tensor is copied with ``non_blocking=True`` into pinned host memory
on the current stream and an event is recorded behind it.  ``poll()`` hands over the
copies whose event has completed (no waiting); ``drain()`` waits for the rest (at the end
of a run or when a view asks for everything).  CPU tensors are handed over at once.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

import numpy as np
import torch

Callback = Callable[[np.ndarray], None]


class HostCopier:
    """FIFO of in-flight device->host copies; callbacks run in submission order."""

    def __init__(self) -> None:
        self._pending: deque[tuple[torch.Tensor, object, Callback]] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    def submit(self, values: torch.Tensor, callback: Callback) -> None:
        if values.device.type != "cuda":
            if self._pending:  # keep order: earlier CUDA copies first
                self.drain()
            callback(values.detach().cpu().numpy())
            return
        host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
        host.copy_(values, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(values.device))
        self._pending.append((host, event, callback))

    def poll(self) -> int:
        """Deliver every finished copy at the front of the queue; returns how many."""
        n = 0
        while self._pending and self._pending[0][1].query():
            host, _, cb = self._pending.popleft()
            cb(host.numpy())
            n += 1
        return n

    def drain(self) -> int:
        """Wait for and deliver every copy still in flight."""
        n = 0
        while self._pending:
            host, event, cb = self._pending.popleft()
            event.synchronize()
            cb(host.numpy())
            n += 1
        return n
