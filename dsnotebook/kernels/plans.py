"""Cache of launch plans: layouts keyed by shapes/strides/dtypes, pointer tables by pointers.

Why two levels: the block map, the per-tensor table and the reusable buffers depend only
on the *layout* of the tensors (what the kernels need of it: element counts, dtypes,
dense or strided with which sizes/strides, pointer alignment), while the data pointers
may move between steps (``zero_grad(set_to_none=True)`` hands out new gradient tensors,
FSDP frees and re-allocates storage).  A plan is built once per layout; a new set of
pointers costs one small pinned upload (cached per plan, so pointer sets that alternate
between steps are uploaded once each).

Lookups per call, cheapest first (host time is what a training step pays, so every
check is a handful of C-level ``map`` calls over the tensors, no Python loop):

1. *Same objects* as the previous calls (alive: weak references with a death callback)
   with the same data pointers: one ``id`` and one ``data_ptr`` per tensor.  (Shape or
   stride surgery in place on a live tensor that keeps its data pointer, e.g. ``resize_``
   to a smaller size, is not seen by this path.)
2. *Same layout as the previous call*, other objects (gradients after
   ``zero_grad(set_to_none=True)``): the pointers plus dtype, element count and
   ``is_contiguous`` of every tensor, and sizes/strides of the non-contiguous ones only.
   That is everything the kernels depend on: a contiguous tensor is read as a flat run
   of ``numel`` elements of its dtype, so its shape does not matter; the pointers give
   the alignment.  This catches storage moves (new pointers), ``.data =`` with another
   dtype or size, and gradients whose layout differs from the previous step's.
3. Otherwise the full layout key (sizes, strides, dtypes, alignment of every tensor) in
   an LRU of plans.
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
_numel = torch.Tensor.numel
_is_contiguous = torch.Tensor.is_contiguous
_dtype = attrgetter("dtype")


class PlanLike(Protocol):
    def device_pointers(self, ptrs: tuple[int, ...]) -> Any: ...


P = TypeVar("P", bound=PlanLike)


def alignment(ptrs: tuple[int, ...]) -> Any:
    """0 when every pointer is 16-byte aligned (the usual case), else each pointer mod 16."""
    if reduce(or_, ptrs, 0) & 15:
        return tuple(p & 15 for p in ptrs)
    return 0


def layout_key(tensors: Sequence[torch.Tensor], ptrs: tuple[int, ...]) -> tuple[Any, ...]:
    """Device, shapes, strides, dtypes and alignment (mod 16) of the pointers.

    All tensors of one call are on one device (the backend's contract), so the first
    tensor's device stands for all of them.
    """
    return (tensors[0].device, tuple(map(_size, tensors)), tuple(map(_stride, tensors)),
            tuple(map(_dtype, tensors)), alignment(ptrs))


def light_signature(tensors: Sequence[torch.Tensor]) -> tuple[Any, ...]:
    """What the kernels depend on besides alignment, in as few per-tensor calls as possible (path 2).

    Two sets of tensors with equal signatures and alignment are read identically by the
    kernels, so they can share a plan.  Sizes and strides are read only for
    non-contiguous tensors.
    """
    contig = tuple(map(_is_contiguous, tensors))
    if all(contig):
        extra: Any = ()
    else:
        extra = tuple((i, tuple(tensors[i].shape), tensors[i].stride()) for i, c in enumerate(contig) if not c)
    return (tensors[0].device, tuple(map(_dtype, tensors)), tuple(map(_numel, tensors)), contig, extra)


class PlanCache(Generic[P]):
    """LRU of layout plans plus fast paths for repeated calls (see the module docstring)."""

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
        self._last_sig: tuple | None = None  # path 2: light signature, alignment and plan of the last call
        self._last_plan: P | None = None
        self._aligns: OrderedDict[tuple[int, ...], Any] = OrderedDict()  # pointer sets seen -> alignment()
        self.builds = 0  # for tests and benchmarks: how often a layout plan was built
        self.hits = [0, 0, 0]  # calls served by path 1, 2, 3
        self.last_ids: tuple[int, ...] = ()   # ids and data pointers seen by the last get()
        self.last_ptrs: tuple[int, ...] = ()

    def get(self, tensors: Sequence[torch.Tensor]) -> tuple[P, Any]:
        """(plan, device pointer table) for these tensors."""
        ids = tuple(map(id, tensors))
        ptrs = tuple(map(_data_ptr, tensors))
        self.last_ids, self.last_ptrs = ids, ptrs
        if ids == self._fast_ids and self._alive[0] and ptrs == self._fast_ptrs:
            self.hits[0] += 1
            return self._fast  # type: ignore[return-value]
        sig = (light_signature(tensors), self._alignment(ptrs))
        if sig == self._last_sig:
            plan: P = self._last_plan  # type: ignore[assignment]
            self.hits[1] += 1
        else:
            plan = self._lookup(tensors, ptrs)
            self._last_sig, self._last_plan = sig, plan
            self.hits[2] += 1
        found = (plan, plan.device_pointers(ptrs))
        # The same objects three calls in a row: arm the fast path.  (Not after two: the
        # tracer hands fresh .detach() views to snapshot + update_stats each step, and
        # arming costs a weak reference per tensor.)
        self._repeats = self._repeats + 1 if ids == self._prev_ids else 0
        if self._repeats >= 2:
            self._arm(tensors, ids, ptrs, found)
        self._prev_ids = ids
        return found

    def _alignment(self, ptrs: tuple[int, ...]) -> Any:
        """alignment(ptrs), remembered for the last pointer sets (they repeat from step to step)."""
        found = self._aligns.get(ptrs)
        if found is None:
            found = self._aligns[ptrs] = alignment(ptrs)
            while len(self._aligns) > 16:
                self._aligns.popitem(last=False)
        return found

    def _lookup(self, tensors: Sequence[torch.Tensor], ptrs: tuple[int, ...]) -> P:
        key = layout_key(tensors, ptrs)
        h = hash(key)  # hashed once: the key holds a few hundred objects
        entry = self._plans.get(h)
        if entry is not None and entry[0] == key:
            self._plans.move_to_end(h)
            return entry[1]
        plan = self._build(tensors, key)
        self.builds += 1
        self._plans[h] = (key, plan)
        while len(self._plans) > self._maxsize:
            self._plans.popitem(last=False)
        return plan

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
        self._last_sig = self._last_plan = None
        self._aligns.clear()
