"""Time DDP's gradient collectives through a communication hook wrapper.

DDP allows one communication hook, registered before the first forward; dsnotebook
cannot slip one in later without changing the user's training.  So timing is opt-in:

>>> from dsnotebook.perf.comm import CommTimer
>>> ddp_model.register_comm_hook(None, CommTimer())          # default all-reduce, timed
>>> ddp_model.register_comm_hook(state, CommTimer(powerSGD_hook))  # any hook, timed

Every bucket's time from launch to completion of its future is added up (this is bus
time, partly overlapped with backward compute; on NCCL the host sees completion when
the collective's work object completes, so it is a lower bound), with the bucket bytes.  The step
profiler reads the totals at the start and end of sampled steps.  Without a CommTimer
on a distributed run, the ``torch.profiler`` window still shows collective kernels.
"""
from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Callable

_timers: "weakref.WeakSet[CommTimer]" = weakref.WeakSet()


class CommTimer:
    """A DDP comm hook that times the wrapped hook (default: all-reduce then average)."""

    def __init__(self, hook: Callable[[Any, Any], Any] | None = None) -> None:
        if hook is None:
            from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

            hook = allreduce_hook
        self.hook = hook
        self.__name__ = f"timed_{getattr(hook, '__name__', 'hook')}"  # DDP logs the hook's name
        self.__qualname__ = self.__name__
        self.seconds = 0.0
        self.buckets = 0
        self.bytes = 0
        self._lock = threading.Lock()
        _timers.add(self)

    def __call__(self, state, bucket):  # noqa: ANN001 - DDP rejects hooks whose annotations are not its own types
        t0 = time.perf_counter()
        buf = bucket.buffer()
        nbytes = buf.numel() * buf.element_size()
        fut = self.hook(state, bucket)

        def done(f: Any) -> Any:  # host time at completion (NCCL: when the work is enqueued-complete)
            with self._lock:
                self.seconds += time.perf_counter() - t0
                self.buckets += 1
                self.bytes += nbytes
            return f.value()

        return fut.then(done)


def totals() -> tuple[float, int, int]:
    """(seconds, buckets, bytes) summed over every live CommTimer."""
    s = b = n = 0
    for t in list(_timers):
        with t._lock:
            s += t.seconds
            b += t.buckets
            n += t.bytes
    return float(s), int(b), int(n)


def distributed_info() -> dict[str, Any] | None:
    """World size and backend when torch.distributed is initialised, else None."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return {"world_size": dist.get_world_size(), "rank": dist.get_rank(), "backend": str(dist.get_backend())}
    except Exception:
        pass
    return None
