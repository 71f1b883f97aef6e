"""Reference statistics backend: plain torch, any device, one batched call per step.

Every backend (this one, the CuPy kernels in ``dsnotebook.kernels``) returns the same
float64 layout so the Run never needs to know which one ran:

``grad_stats(tensors) -> [n, GRAD_COLS]`` with columns ``sum, sumsq, absmax, nonfinite,
zeros`` followed by a ``HIST_BINS``-bin histogram of ``floor(log2|x|)``.  Sums, squares
and abs-max are taken over the *finite* elements only (non-finite ones are counted, not
propagated) so one NaN does not hide the scale of the rest of the tensor.  Histogram:
bin 0 holds exact zeros; bin ``k >= 1`` holds finite non-zero values with
``floor(log2|x|) == k - 1 + HIST_EXP_MIN`` (bin 1 and the last bin also take everything
below / above their range).  So ``hist.sum() + nonfinite == numel`` exactly.

``update_stats(before, tensors) -> [n, UPDATE_COLS]`` with columns
``sum((new-old)^2), sum(old^2), changed`` (elements with ``new != old``), summed in
float64 over finite differences.

Results stay on the tensors' device; the tracer copies them to the host in batches.
Devices without float64 (Apple MPS) take the float32 path (:mod:`dsnotebook.stats.float32`),
which finishes on the host and returns a CPU tensor.
"""
from __future__ import annotations

import weakref
from typing import Any, Sequence

import torch

from dsnotebook.core.transfer import Deferred
from dsnotebook.stats import float32 as float32_path
from dsnotebook.stats import host, hostmath, offload
from dsnotebook.stats.helper import HelperProcess
from dsnotebook.stats.devices import has_float64
from dsnotebook.stats.layout import (COL_ABSMAX, COL_NONFINITE, COL_SUM, COL_SUMSQ, COL_ZEROS, GRAD_COLS,  # noqa: F401
                                     HIST_BINS, HIST_EXP_MIN, HIST_OFFSET, UCOL_CHANGED, UCOL_DIFFSQ, UCOL_WEIGHTSQ,
                                     UPDATE_COLS, hist_bin_edges)


def _flat64(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """All tensors as one float64 vector plus their lengths (one copy, no host sync)."""
    device = tensors[0].device
    flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors])
    lengths = torch.tensor([t.numel() for t in tensors], dtype=torch.int64, device=device)
    return flat, lengths


def _segsum(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return torch.segment_reduce(values, "sum", lengths=lengths, unsafe=True)


class TorchStatsBackend:
    """Batched per-tensor statistics with torch ops: the reference every backend matches.

    On the CPU a fast path (:mod:`dsnotebook.stats.host`: one copy into a float32 buffer,
    then numpy: bit tricks, one bincount, segment sums in float64) computes the same numbers
    when every value is finite; otherwise, and on other devices, the exact float64 path runs.
    With a ``helper`` (:meth:`use_helper`; the tracer sets one for CPU tensors) the numpy
    part runs in the helper process (:mod:`dsnotebook.stats.offload`) and ``grad_stats`` /
    ``update_stats`` return a :class:`~dsnotebook.core.transfer.Deferred`: the training thread
    only copies.  On devices without float64 (``float32=None``: asked per device, see
    :mod:`dsnotebook.stats.devices`; ``True`` forces it, e.g. on CPU in tests) the float32
    path runs instead.  All are checked against per-tensor float64 computations in the tests.
    """

    def __init__(self, float32: bool | None = None) -> None:
        self.float32 = float32
        self.name = "torch-float32" if float32 else "torch"
        self.helper: HelperProcess | None = None
        self._hosts: dict[tuple[torch.Size, ...], host.Layout] = {}
        # id(snapshot) -> (weak reference to it, layout, its buffer or shared slot)
        self._snaps: dict[int, tuple[weakref.ref[torch.Tensor], host.Layout, Any]] = {}
        self._layouts: dict[tuple[torch.device, tuple[int, ...]], float32_path.Layout] = {}

    def use_helper(self, helper: HelperProcess | None) -> None:
        """Compute the CPU fast path in ``helper`` (results become Deferred); None: here."""
        self.helper = helper

    def _layout(self, tensors: Sequence[torch.Tensor]) -> "float32_path.Layout | None":
        """The float32 path's layout when that path serves these tensors, else None."""
        if not tensors:
            return None
        device = tensors[0].device
        use = self.float32 if self.float32 is not None else not has_float64(device)
        if not use or any(t.dtype == torch.float64 for t in tensors):  # float64 data: the device has it
            return None
        key = (device, tuple(t.numel() for t in tensors))
        layout = self._layouts.get(key)
        if layout is None:
            if len(self._layouts) >= 4:
                self._layouts.clear()
            layout = self._layouts[key] = float32_path.Layout(key[1], device)
        return layout

    def _host(self, tensors: Sequence[torch.Tensor]) -> host.Layout | None:
        """The CPU fast path's layout for these tensors, or None when it does not serve them."""
        key = host.layout_key(tensors)
        if key is None:
            return None
        layout = self._hosts.get(key)
        if layout is None:
            if len(self._hosts) >= 4:
                self._hosts.clear()
            layout = self._hosts[key] = host.Layout(key)
        return layout

    def _slot(self, hl: host.Layout) -> tuple[Any, int] | tuple[None, None]:
        """A shared slot for an offloaded job, or (None, None): compute here."""
        helper = self.helper
        if helper is None or hl.region_failed or hl.seg.total > offload.MAX_TOTAL:
            return None, None
        if hl.region is None:
            if not helper.available():
                return None, None
            try:
                hl.region = offload.Region(hl.shapes, hl.seg)
            except OSError:  # no memfd / no shared memory here
                hl.region_failed = True
                return None, None
        if not hl.region.free:
            self._reclaim()
        slot = offload.take_slot(hl.region, helper)
        return (hl.region, slot) if slot is not None else (None, None)

    def _reclaim(self) -> None:
        """Free the shared slots of snapshots that were dropped without a comparison."""
        for key, (ref, _hl, where) in list(self._snaps.items()):
            if ref() is None:
                del self._snaps[key]
                if isinstance(where, tuple):
                    where[0].free.append(where[1])

    def grad_stats(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor | Deferred:
        layout = self._layout(tensors)
        if layout is not None:
            return float32_path.grad_stats(tensors, layout)
        hl = self._host(tensors)
        if hl is None:
            return self.grad_stats_exact(tensors)
        region, slot = self._slot(hl)
        if region is not None:
            job = offload.grad_job(region, slot, self.helper, tensors)
            # NaN/Inf: the exact path, now (a non-finite step is known before its update)
            return self.grad_stats_exact(tensors) if job is offload.NONFINITE else job
        buf = hl.fill(tensors)
        try:
            out = hostmath.grad_stats(buf, hl.seg, hl.scratch)
        finally:
            hl.give(buf)
        return self.grad_stats_exact(tensors) if out is None else torch.from_numpy(out)

    def grad_stats_exact(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """float64 path for any device and any values (NaN, Inf, huge magnitudes)."""
        n = len(tensors)
        if n == 0:
            return torch.zeros(0, GRAD_COLS, dtype=torch.float64)
        flat, lengths = _flat64(tensors)
        device = flat.device
        out = torch.empty(n, GRAD_COLS, dtype=torch.float64, device=device)
        finite = torch.isfinite(flat)
        x = torch.where(finite, flat, torch.zeros((), dtype=flat.dtype, device=device))
        absx = x.abs()
        out[:, COL_SUM] = _segsum(x, lengths)
        out[:, COL_SUMSQ] = _segsum(absx * absx, lengths)
        out[:, COL_ABSMAX] = torch.segment_reduce(
            absx, "max", lengths=lengths, unsafe=True, initial=0.0
        )
        out[:, COL_NONFINITE] = _segsum((~finite).to(torch.float64), lengths)
        out[:, COL_ZEROS] = _segsum((flat == 0).to(torch.float64), lengths)
        # floor(log2|x|) == frexp exponent - 1, exact for every float (subnormals too).
        exponent = torch.frexp(absx).exponent.to(torch.int64) - 1
        bins = (exponent - HIST_EXP_MIN + 1).clamp_(1, HIST_BINS - 1)
        bins = torch.where(absx == 0, torch.zeros_like(bins), bins)
        seg = torch.repeat_interleave(torch.arange(n, device=device), lengths)
        keyed = (seg * HIST_BINS + bins)[finite]
        hist = torch.bincount(keyed, minlength=n * HIST_BINS).view(n, HIST_BINS)
        out[:, HIST_OFFSET:] = hist.to(torch.float64)
        return out

    def snapshot(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """Copy of the weights before an optimizer step (their own dtype; on the CPU fast path a
        float32 buffer that the :meth:`update_stats` it is passed to consumes; float32 rows on
        the float32 path)."""
        if not tensors:
            return torch.zeros(0)
        layout = self._layout(tensors)
        if layout is not None:
            return float32_path.snapshot(tensors, layout)
        hl = self._host(tensors)
        if hl is None:
            return torch.cat([t.detach().reshape(-1) for t in tensors])
        region, slot = self._slot(hl)
        if region is not None:
            where: Any = (region, slot)
            before = torch.from_numpy(region.fill(slot, 0, tensors))
        else:
            where = hl.fill(tensors)
            before = torch.from_numpy(where)
        if len(self._snaps) >= 16:  # snapshots never compared (an optimizer step that raised)
            self._reclaim()
        self._snaps[id(before)] = (weakref.ref(before), hl, where)
        return before

    def update_stats(self, before: Any, tensors: Sequence[torch.Tensor]) -> torch.Tensor | Deferred:
        if isinstance(before, float32_path.Snapshot):
            return float32_path.update_stats(before, tensors)
        snap = self._snaps.pop(id(before), None)
        hl = self._host(tensors)
        if snap is None or snap[0]() is not before or hl is not snap[1]:
            return self.update_stats_exact(before, tensors)
        where = snap[2]
        if isinstance(where, tuple):  # a shared slot: the helper compares
            region, slot = where
            region.fill(slot, 1, tensors)
            return offload.submit(offload.HelperJob(self.helper, region, slot, b"U", self.update_stats_exact))
        new = hl.fill(tensors)
        try:
            out = hostmath.update_stats(where, new, hl.seg, hl.scratch)
            if out is None:  # NaN/Inf weights or updates: the exact path
                return self.update_stats_exact(before, tensors)
            return torch.from_numpy(out)
        finally:
            hl.give(where)
            hl.give(new)

    def update_stats_exact(self, before: torch.Tensor, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """float64 path for any device and any values."""
        n = len(tensors)
        if n == 0:
            return torch.zeros(0, UPDATE_COLS, dtype=torch.float64)
        new, lengths = _flat64(tensors)
        old = before.to(torch.float64)
        diff = new - old
        zero = torch.zeros((), dtype=torch.float64, device=new.device)
        diff = torch.where(torch.isfinite(diff), diff, zero)
        oldf = torch.where(torch.isfinite(old), old, zero)
        out = torch.empty(n, UPDATE_COLS, dtype=torch.float64, device=new.device)
        out[:, UCOL_DIFFSQ] = _segsum(diff * diff, lengths)
        out[:, UCOL_WEIGHTSQ] = _segsum(oldf * oldf, lengths)
        out[:, UCOL_CHANGED] = _segsum((new != old).to(torch.float64), lengths)
        return out
