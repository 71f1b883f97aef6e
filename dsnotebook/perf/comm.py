"""Time DDP's gradient collectives through a communication hook wrapper, FSDP2's through its custom comms.

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

FSDP2 (``fully_shard``) has no comm hook; :func:`time_fsdp` installs timed copies of its
default all-gather and reduce-scatter through ``set_custom_all_gather`` /
``set_custom_reduce_scatter`` (same collectives, same numbers):

>>> from dsnotebook.perf.comm import time_fsdp
>>> time_fsdp(model)                                          # after fully_shard, before training
"""
from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Callable

_timers: "weakref.WeakSet[Any]" = weakref.WeakSet()  # CommTimer and FSDPCommTimer objects


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
        if isinstance(t, FSDPCommTimer):
            t.resolve()
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


class FSDPCommTimer:
    """Times FSDP2's all-gathers and reduce-scatters (see :func:`time_fsdp`); read with :func:`totals`.

    On CPU the host time of each (synchronous) collective; on CUDA the device time between two
    events recorded on the collective's own stream around it, added once both completed (no
    synchronisation: a collective still running is counted at a later read).
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.buckets = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._events: list[tuple[Any, Any, int]] = []
        _timers.add(self)

    def timed(self, call: Callable[[], Any], nbytes: int, device: Any) -> Any:
        import torch

        if getattr(device, "type", "cpu") == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = call()
            end.record()
            with self._lock:
                self._events.append((start, end, nbytes))
            return out
        t0 = time.perf_counter()
        out = call()
        with self._lock:
            self.seconds += time.perf_counter() - t0
            self.buckets += 1
            self.bytes += nbytes
        return out

    def resolve(self) -> None:
        """Add the device times of the collectives that have completed."""
        with self._lock:
            keep = []
            for start, end, nbytes in self._events:
                if end.query():
                    self.seconds += start.elapsed_time(end) / 1e3
                    self.buckets += 1
                    self.bytes += nbytes
                else:
                    keep.append((start, end, nbytes))
            self._events = keep


class _TimedAllGather:
    def __init__(self, timer: FSDPCommTimer) -> None:
        self.timer = timer

    def allocate(self, size: Any, *, dtype: Any, device: Any) -> Any:
        import torch

        return torch.empty(size, dtype=dtype, device=device)

    def __call__(self, output_tensor: Any, input_tensor: Any, group: Any, async_op: bool = False) -> Any:
        import torch.distributed as dist

        gather = getattr(dist, "all_gather_single", dist.all_gather_into_tensor)  # what FSDP2 calls by default
        return self.timer.timed(lambda: gather(output_tensor, input_tensor, group=group, async_op=async_op),
                                output_tensor.numel() * output_tensor.element_size(), output_tensor.device)


class _TimedReduceScatter(_TimedAllGather):
    def __call__(self, output_tensor: Any, input_tensor: Any, group: Any, op: Any = None,  # type: ignore[override]
                 async_op: bool = False) -> Any:
        import torch.distributed as dist

        kwargs = {} if op is None else {"op": op}
        scatter = getattr(dist, "reduce_scatter_single", dist.reduce_scatter_tensor)  # FSDP2's default
        return self.timer.timed(lambda: scatter(output_tensor, input_tensor, group=group, async_op=async_op, **kwargs),
                                input_tensor.numel() * input_tensor.element_size(), input_tensor.device)


def time_fsdp(model: Any) -> FSDPCommTimer:
    """Time the all-gathers and reduce-scatters of every ``fully_shard`` module of ``model``.

    Uses FSDP2's public ``set_custom_all_gather`` / ``set_custom_reduce_scatter`` with the same
    collectives FSDP calls by default (``all_gather_single``, ``reduce_scatter_single``), so
    the numbers are unchanged; call it once, after ``fully_shard`` and before training.  The
    collective time shows up as the "comm" phase of sampled steps (``profile_every``).
    """
    timer = FSDPCommTimer()
    found = 0
    for m in model.modules():
        if hasattr(m, "set_custom_all_gather") and hasattr(m, "set_custom_reduce_scatter"):
            m.set_custom_all_gather(_TimedAllGather(timer))
            m.set_custom_reduce_scatter(_TimedReduceScatter(timer))
            found += 1
    if not found:
        raise ValueError(f"{type(model).__name__} has no fully_shard (FSDP2) module to time")
    return timer
