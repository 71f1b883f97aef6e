"""CPU fast path of the reference backend: one flat float32 copy per step, then numpy.

Why numpy and not torch: on the small CPU models where the tracer's cost matters most
(tens of thousands of elements per step) torch's per-op dispatch and intra-op threading
cost 5-10 us per op, more than the arithmetic; numpy's ufuncs cost about 1 us to call and
never start threads.  The arithmetic is :mod:`dsnotebook.stats.hostmath` (numpy only, so
the helper process of :mod:`dsnotebook.stats.helper` shares it).

``Layout.fill`` runs on the training thread: one ``torch._foreach_copy_`` of the tensors
into a pooled flat float32 buffer (float16/bfloat16 widen exactly; views and
non-contiguous tensors are copied element by element).  After it the user's tensors are
never read again, so they may change while the statistics are computed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from dsnotebook.stats import hostmath

FAST_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
POOL_LIMIT = 4  # spare buffers kept per layout
_PLAIN = (torch.Tensor, torch.nn.Parameter)


class Layout:
    """One list of tensor shapes: segments, pooled buffers, scratch, and (lazily) shared slots.

    Buffers go back to the pool (``give``) once the statistics that read them are done.
    """

    def __init__(self, shapes: Sequence[torch.Size]) -> None:
        self.shapes = [torch.Size(s) for s in shapes]
        self.seg = hostmath.Segments([int(s.numel()) for s in self.shapes])
        self.scratch = hostmath.Scratch(self.seg.total)
        self._free: list[tuple[np.ndarray, list[torch.Tensor]]] = []
        self._views: dict[int, list[torch.Tensor]] = {}
        self.region: object | None = None  # dsnotebook.stats.offload.Region, made on first offload
        self.region_failed = False

    def take(self) -> np.ndarray:
        """A flat float32 buffer of ``total`` elements, from the pool when one is spare."""
        if self._free:
            buf, views = self._free.pop()
            self._views[id(buf)] = views
            return buf
        buf = np.empty(self.seg.total, dtype=np.float32)
        flat = torch.from_numpy(buf)
        self._views[id(buf)] = [v.view(s) for v, s in zip(flat.split(self.seg.sizes), self.shapes)]
        return buf

    def give(self, buf: np.ndarray) -> None:
        """Return a buffer taken with :meth:`take` (its statistics are computed)."""
        views = self._views.pop(id(buf), None)
        if views is not None and len(self._free) < POOL_LIMIT:
            self._free.append((buf, views))

    def fill(self, tensors: Sequence[torch.Tensor]) -> np.ndarray:
        """Copy ``tensors`` into a pooled buffer (one torch call)."""
        buf = self.take()
        with torch.no_grad():
            torch._foreach_copy_(self._views[id(buf)], list(tensors))
        return buf


def layout_key(tensors: Sequence[torch.Tensor]) -> tuple[torch.Size, ...] | None:
    """The layout these tensors share, or None when the fast path does not serve them
    (not CPU, an empty tensor, a dtype other than float32/float16/bfloat16, sparse, a tensor subclass).
    Per step and tensor on the training thread: only the cheapest attribute reads."""
    if not tensors:
        return None
    strided, fast, plain = torch.strided, FAST_DTYPES, _PLAIN
    for t in tensors:  # subclasses (DTensor, fake or functional tensors) take the exact path: no copy into numpy
        if type(t) not in plain or not t.is_cpu or t.dtype not in fast or t.layout != strided:
            return None
    key = tuple(t.shape for t in tensors)
    return None if any(0 in s for s in key) else key
