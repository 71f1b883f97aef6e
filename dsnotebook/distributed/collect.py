"""One ``gather`` of one preallocated packet to rank 0, issued without waiting.

Why a gather rather than every rank writing its own run directory (measured with
``benchmarks/distributed_gather.py``, gloo on a loaded 2-core CPU, one collection per 10 steps;
``benchmarks/results/distributed_gather_cpu_2026-11-30.txt``): for ResNet-50's statistics (161
tensors, 541 KB per rank) a blocking gather takes 0.5 ms at 2 ranks and 2-4 ms at 4, and issuing
it asynchronously costs the training thread 0.06-0.27 ms, about what appending the same bytes to
a per-rank file costs (0.04-1.5 ms, depending on the page cache); but the reader of per-rank
files pays 0.7-12 ms per poll to merge them (growing with the ranks), needs a shared file system
across nodes, and must join the shards of one step that the ranks wrote at different paces;
``all_gather_object`` costs 1.3-24 ms.  A gather puts whole-job numbers in rank 0's Run while
training runs, where the dashboard, the advisor and rank 0's run directory pick them up.

The gather runs on its own gloo group (created once, at attach, by every rank): CPU bytes
never enter an NCCL stream, and the user's collectives on the default group keep their order.
It is issued with ``async_op=True`` from the training thread at the same step on every rank
and waited for at the next collection (or merged as soon as it is seen complete), so the training
thread waits for another rank only if that rank is a whole collection behind (DDP and FSDP keep
ranks within a step of each other): the only synchronisation is the collective itself.  Two send
buffers alternate, so packing the next collection never touches bytes still in flight.
"""
from __future__ import annotations

import datetime
from typing import Any

import numpy as np
import torch

from dsnotebook.distributed.packing import Layout

__all__ = ["Collector", "CollectiveTimeout"]


class CollectiveTimeout(RuntimeError):
    """The statistics gather did not complete in time (a rank stopped or is far behind)."""


class Collector:
    """Double-buffered packets, their gloo group and the one gather in flight."""

    def __init__(self, layout: Layout, rank: int, size: int, timeout: float) -> None:
        import torch.distributed as dist

        self.layout, self.rank, self.size, self.timeout = layout, rank, size, timeout
        self._send = [torch.zeros(layout.nbytes, dtype=torch.uint8) for _ in range(2)]
        self._views = [layout.views(b.numpy()) for b in self._send]
        self._turn = 0
        self._recv = [torch.zeros(layout.nbytes, dtype=torch.uint8) for _ in range(size)] if rank == 0 else None
        self.recv_views = [layout.views(b.numpy()) for b in self._recv] if self._recv is not None else []
        self.group: Any = None
        if size > 1:
            self.group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout))
        self._work: Any = None
        self.collections = 0

    def next_buffer(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Views of the send buffer the next collection fills (the other may still be in flight)."""
        return self._views[self._turn]

    def issue(self) -> None:
        """Start the gather of the buffer just filled; the previous one must have been waited for."""
        import torch.distributed as dist

        buf = self._send[self._turn]
        self._turn ^= 1
        self.collections += 1
        if self.group is None:  # a job of one: "gather" to itself
            self._recv[0].copy_(buf)
            self._work = None
            self._ready = True
            return
        self._work = dist.gather(buf, self._recv, dst=0, group=self.group, async_op=True)
        self._ready = False

    @property
    def in_flight(self) -> bool:
        return self._work is not None or getattr(self, "_ready", False)

    def done(self) -> bool:
        """The gather in flight has completed (checked without waiting)."""
        if self._work is None:
            return getattr(self, "_ready", False)
        try:
            return bool(self._work.is_completed())
        except Exception:
            return False

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the gather in flight; True when rank 0's receive buffers hold a new collection.

        Raises :class:`CollectiveTimeout` (with torch's message) when it fails or times out.
        """
        work, self._work = self._work, None
        ready, self._ready = getattr(self, "_ready", False), False
        if work is None:
            return ready and self.rank == 0
        try:
            work.wait(timeout=datetime.timedelta(seconds=self.timeout if timeout is None else timeout))
        except Exception as exc:
            raise CollectiveTimeout(f"the statistics gather failed: {type(exc).__name__}: {exc}") from exc
        return self.rank == 0

    def abandon(self) -> None:
        """Forget the gather in flight (an error elsewhere: never wait on it again)."""
        self._work = None
        self._ready = False

    def close(self) -> None:
        import torch.distributed as dist

        self.abandon()
        if self.group is not None:
            try:
                if dist.is_initialized():
                    dist.destroy_process_group(self.group)
            except Exception:  # the default group is already gone (destroy_process_group ran first)
                pass
            self.group = None
