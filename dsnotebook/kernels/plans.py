"""Cache of launch plans: layouts keyed by shapes/strides/dtypes, pointer tables by pointers.

Why two levels: the block map, the per-tensor table and the reusable buffers depend only
on the *layout* of the tensors (shapes, strides, dtypes and pointer alignment), while
the data pointers may move between steps (``zero_grad(set_to_none=True)`` hands out new
gradient tensors, FSDP frees and re-allocates storage).  A plan is built once per
layout; a new set of pointers costs one small pinned upload (cached per plan, so
pointer sets that alternate between steps are uploaded once each).

Lookups per call:

* fast path: the *same tensor objects* as the previous calls (alive: weak references
  with a death callback) with the same data pointers.  Costs one ``id`` and one
  ``data_ptr`` per tensor.  (Shape/stride surgery in place on a live tensor that keeps
  its data pointer, e.g. ``resize_`` to a smaller size, is not seen by this path.)
* otherwise: pointers, shapes, strides, dtypes of every tensor; LRU dicts of layouts
  and, per layout, of pointer tables.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from functools import reduce
from operator import attrgetter, or_
from typing import Any, Callable, Generic, Protocol, Sequence, TypeVar

import torch

_data_ptr = torch.Tensor.data_ptr
_size = torch.Tensor.size
_stride = torch.Tensor.stride
_dtype = attrgetter("dtype")


class PlanLike(Protocol):
    def device_pointers(self, ptrs: tuple[int, ...]) -> Any: ...


P = TypeVar("P", bound=PlanLike)


def layout_key(tensors: Sequence[torch.Tensor], ptrs: tuple[int, ...]) -> tuple[Any, ...]:
    """Device, shapes, strides, dtypes and alignment (mod 16) of the pointers.

    All tensors of one call are on one device (the backend's contract), so the first
    tensor's device stands for all of them.
    """
    if reduce(or_, ptrs, 0) & 15:
        align: Any = tuple(p & 15 for p in ptrs)
    else:
        align = 0  # the usual case: every tensor starts on a 16-byte boundary
    return (tensors[0].device, tuple(map(_size, tensors)), tuple(map(_stride, tensors)),
            tuple(map(_dtype, tensors)), align)


class PlanCache(Generic[P]):
    """LRU of layout plans plus a fast path for repeated calls with the same tensors."""

    def __init__(self, build: Callable[[Sequence[torch.Tensor], tuple], P], maxsize: int = 8):
        self._build = build
        self._maxsize = maxsize
        self._plans: OrderedDict[int, tuple[tuple, P]] = OrderedDict()  # hash(key) -> (key, plan)
        self._fast_ids: tuple[int, ...] | None = None
        self._fast_ptrs: tuple[int, ...] | None = None
        self._fast: tuple[P, Any] | None = None
        self._fast_refs: list[weakref.ref] = []
        self._alive = [False]
        self._prev_ids: tuple[int, ...] | None = None
        self._repeats = 0
        self.builds = 0  # for tests and benchmarks: how often a layout plan was built
        self.last_ids: tuple[int, ...] = ()   # ids and data pointers seen by the last get()
        self.last_ptrs: tuple[int, ...] = ()

    def get(self, tensors: Sequence[torch.Tensor]) -> tuple[P, Any]:
        """(plan, device pointer table) for these tensors."""
        ids = tuple(map(id, tensors))
        ptrs = tuple(map(_data_ptr, tensors))
        self.last_ids, self.last_ptrs = ids, ptrs
        if ids == self._fast_ids and self._alive[0] and ptrs == self._fast_ptrs:
            return self._fast  # type: ignore[return-value]
        key = layout_key(tensors, ptrs)
        h = hash(key)  # hashed once: the key holds a few hundred objects
        entry = self._plans.get(h)
        if entry is not None and entry[0] == key:
            plan = entry[1]
            self._plans.move_to_end(h)
        else:
            plan = self._build(tensors, key)
            self.builds += 1
            self._plans[h] = (key, plan)
            while len(self._plans) > self._maxsize:
                self._plans.popitem(last=False)
        found = (plan, plan.device_pointers(ptrs))
        # The same objects three calls in a row: arm the fast path.  (Not after two: the
        # tracer hands fresh .detach() views to snapshot + update_stats each step, and
        # arming costs a weak reference per tensor.)
        self._repeats = self._repeats + 1 if ids == self._prev_ids else 0
        if self._repeats >= 2:
            self._arm(tensors, ids, ptrs, found)
        self._prev_ids = ids
        return found

    def _arm(self, tensors: Sequence[torch.Tensor], ids, ptrs, found: tuple[P, Any]) -> None:
        alive = [True]

        def _dead(_ref: weakref.ref, alive: list[bool] = alive) -> None:
            alive[0] = False

        self._alive[0] = False  # disarm the previous set before swapping
        self._fast_refs = [weakref.ref(t, _dead) for t in tensors]
        self._alive = alive
        self._fast_ids, self._fast_ptrs, self._fast = ids, ptrs, found

    def clear(self) -> None:
        self._plans.clear()
        self._alive[0] = False
        self._fast = None
