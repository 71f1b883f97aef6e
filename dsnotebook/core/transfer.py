"""Results to the host without a synchronisation per step.

Each submitted device tensor is copied with ``non_blocking=True`` into pinned host memory
on the current stream and an event is recorded behind it.  A :class:`Deferred` (a result
computed off the training thread, e.g. by :mod:`dsnotebook.stats.helper`) waits in the same queue
until it is done.  ``poll()`` hands over the results at the front of the queue that are
ready (no waiting); ``drain()`` waits for the rest (at the end of a run or when a view
asks for everything).  Either way callbacks run on the thread that polls (the training
thread) in submission order.  A CPU tensor is handed over at once, after everything
submitted before it.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Callable

import numpy as np
import torch

Callback = Callable[[np.ndarray], None]


class Deferred:
    """A statistics tensor still being computed off the training thread.

    Backends may return one instead of a tensor (the CPU backend with its helper process); handed to
    :meth:`HostCopier.submit` it is delivered when done, like a CUDA copy.  Any other use
    waits for it: attribute access goes to the finished tensor (``values.reshape``,
    ``values.device``), and :meth:`wait` returns it.
    """

    __slots__ = ()

    def done(self) -> bool:
        raise NotImplementedError

    def wait(self) -> torch.Tensor:
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wait(), name)


def resolve(values: Any) -> torch.Tensor:
    """The tensor itself, waiting for it if it is a :class:`Deferred`."""
    return values.wait() if isinstance(values, Deferred) else values


class HostCopier:
    """FIFO of results in flight (CUDA copies, deferred results); callbacks run in submission order.

    ``on_error(exc)`` receives what a deferred computation or a callback raised (the tracer
    records it as a warning event) and delivery goes on; without it the exception propagates.
    """

    def __init__(self, on_error: Callable[[BaseException], None] | None = None) -> None:
        self._pending: deque[tuple[Any, Any, Callback]] = deque()
        self._on_error = on_error

    def __len__(self) -> int:
        return len(self._pending)

    def submit(self, values: torch.Tensor | Deferred, callback: Callback) -> None:
        if isinstance(values, Deferred):
            self._pending.append((values, None, callback))
            return
        if values.device.type != "cuda":
            if self._pending:  # keep order: earlier results first
                self.drain()
            self._deliver(callback, values)
            return
        host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
        host.copy_(values, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(values.device))
        self._pending.append((host, event, callback))

    def _deliver(self, callback: Callback, values: Any) -> None:
        try:
            callback(resolve(values).detach().cpu().numpy())
        except Exception as exc:
            if self._on_error is None:
                raise
            self._on_error(exc)

    def poll(self) -> int:
        """Deliver every finished result at the front of the queue; returns how many."""
        n, pending = 0, self._pending
        while pending:
            values, event, cb = pending[0]
            if not (values.done() if event is None else event.query()):
                break
            pending.popleft()
            self._deliver(cb, values)
            n += 1
        return n

    def drain(self) -> int:
        """Wait for and deliver every result still in flight."""
        n = 0
        while self._pending:
            values, event, cb = self._pending.popleft()
            if event is not None:
                event.synchronize()
            self._deliver(cb, values)
            n += 1
        return n
