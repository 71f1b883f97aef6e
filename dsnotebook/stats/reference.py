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

from typing import Any, Sequence

import torch

from dsnotebook.stats import float32 as float32_path
from dsnotebook.stats.devices import has_float64
from dsnotebook.stats.layout import (COL_ABSMAX, COL_NONFINITE, COL_SUM, COL_SUMSQ, COL_ZEROS, GRAD_COLS,  # noqa: F401
                                     HIST_BINS, HIST_EXP_MIN, HIST_OFFSET, UCOL_CHANGED, UCOL_DIFFSQ, UCOL_WEIGHTSQ,
                                     UPDATE_COLS, hist_bin_edges)

_FAST_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _flat64(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """All tensors as one float64 vector plus their lengths (one copy, no host sync)."""
    device = tensors[0].device
    flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors])
    lengths = torch.tensor([t.numel() for t in tensors], dtype=torch.int64, device=device)
    return flat, lengths


def _segsum(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return torch.segment_reduce(values, "sum", lengths=lengths, unsafe=True)


_EXP_BIAS = 127  # float32
_FAST_LIMIT = 0x5D5E0B6B  # float32 bits of about 1e18: beyond, squares need the exact path


class _Workspace:
    """CPU fast-path buffers for one tensor layout, reused every step.

    Reuse matters: a fresh multi-MB tensor per pass means fresh pages and page faults,
    which cost more than the arithmetic on the small CPU models this path serves.
    """

    def __init__(self, numels: tuple[int, ...]) -> None:
        import warnings

        lengths = torch.tensor(numels, dtype=torch.int64)
        n, total = len(numels), int(lengths.sum())
        self.sizes = list(numels)
        self.key_base = torch.repeat_interleave(torch.arange(n, dtype=torch.int32) * HIST_BINS, lengths)
        crow = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
        with warnings.catch_warnings():  # "sparse CSR is beta": we only use CSR x dense vector
            warnings.simplefilter("ignore")
            # Row i of this 0/1 matrix sums segment i: one sequential float64 pass per row.
            self.summer = torch.sparse_csr_tensor(crow, torch.arange(total), torch.ones(total, dtype=torch.float64),
                                                  size=(n, total))
        self.flat = torch.empty(total, dtype=torch.float32)
        self.other = torch.empty(total, dtype=torch.float32)
        self.bits = torch.empty(total, dtype=torch.int32)
        self.bins = torch.empty(total, dtype=torch.int32)
        self.mask = torch.empty(total, dtype=torch.bool)
        self.key = torch.empty(total, dtype=torch.int32)
        self.x64 = torch.empty(total, dtype=torch.float64)

    def gather(self, tensors: Sequence[torch.Tensor], out: torch.Tensor) -> torch.Tensor:
        parts = [t.detach().reshape(-1) for t in tensors]
        if all(p.dtype == torch.float32 for p in parts):
            torch.cat(parts, out=out)
        else:
            out.copy_(torch.cat(parts))
        return out

    def segment_sum(self, values: torch.Tensor, square: bool = False) -> torch.Tensor:
        """Per-tensor sums (of squares) of a flat vector, accumulated in float64."""
        self.x64.copy_(values)
        if square:
            self.x64.square_()
        return torch.mv(self.summer, self.x64)


class TorchStatsBackend:
    """Batched per-tensor statistics with torch ops: the reference every backend matches.

    On the CPU a fast path (float32 bit tricks, one bincount, sparse-row sums, buffers
    reused between steps) computes the same numbers when every value is finite and below
    ~1e18; otherwise, and on other devices, the exact float64 path runs.  On devices
    without float64 (``float32=None``: asked per device, see :mod:`dsnotebook.stats.devices`;
    ``True`` forces it, e.g. on CPU in tests) the float32 path runs instead.  All are
    checked against per-tensor float64 computations in the tests.
    """

    def __init__(self, float32: bool | None = None) -> None:
        self.float32 = float32
        self.name = "torch-float32" if float32 else "torch"
        self._workspaces: dict[tuple[int, ...], _Workspace] = {}
        self._layouts: dict[tuple[torch.device, tuple[int, ...]], float32_path.Layout] = {}

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

    def _workspace(self, tensors: Sequence[torch.Tensor]) -> _Workspace | None:
        if not tensors or tensors[0].device.type != "cpu" or any(t.numel() == 0 for t in tensors):
            return None
        if not all(t.dtype in _FAST_DTYPES for t in tensors):
            return None
        key = tuple(t.numel() for t in tensors)
        ws = self._workspaces.get(key)
        if ws is None:
            if len(self._workspaces) >= 4:
                self._workspaces.clear()
            ws = self._workspaces[key] = _Workspace(key)
        return ws

    def grad_stats(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        layout = self._layout(tensors)
        if layout is not None:
            return float32_path.grad_stats(tensors, layout)
        ws = self._workspace(tensors)
        out = self._grad_stats_cpu(ws, tensors) if ws is not None else None
        return out if out is not None else self.grad_stats_exact(tensors)

    def _grad_stats_cpu(self, ws: _Workspace, tensors: Sequence[torch.Tensor]) -> torch.Tensor | None:
        """CPU fast path; None when a value needs the exact path (non-finite or huge)."""
        flat = ws.gather(tensors, ws.flat)
        bits = torch.bitwise_and(flat.view(torch.int32), 0x7FFFFFFF, out=ws.bits)
        if int(bits.max()) >= _FAST_LIMIT:  # CPU tensor: reading it costs no device sync
            return None
        n = len(tensors)
        # floor(log2|x|) of a normal float32 is its biased exponent - 127; subnormals land in bin 1.
        bins = torch.bitwise_right_shift(bits, 23, out=ws.bins)
        bins.sub_(_EXP_BIAS + HIST_EXP_MIN - 1).clamp_(1, HIST_BINS - 1)
        bins.mul_(torch.clamp(bits, max=1, out=ws.key))  # exact zeros -> bin 0 (bits 0 -> factor 0)
        bins.add_(ws.key_base)
        hist = torch.bincount(bins, minlength=n * HIST_BINS).view(n, HIST_BINS).to(torch.float64)
        out = torch.empty(n, GRAD_COLS, dtype=torch.float64)
        out[:, COL_SUM] = ws.segment_sum(flat)
        views = bits.view(torch.float32).split(ws.sizes)
        out[:, COL_SUMSQ] = ws.segment_sum(flat, square=True)
        out[:, COL_ABSMAX] = torch.stack(torch._foreach_max(views) if hasattr(torch, "_foreach_max")
                                         else [v.max() for v in views])
        out[:, COL_NONFINITE] = 0.0
        out[:, COL_ZEROS] = hist[:, 0]
        out[:, HIST_OFFSET:] = hist
        return out

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
        """Copy of the weights before an optimizer step (their own dtype; a reused buffer on CPU;
        float32 rows on the float32 path)."""
        if not tensors:
            return torch.zeros(0)
        layout = self._layout(tensors)
        if layout is not None:
            return float32_path.snapshot(tensors, layout)
        ws = self._workspace(tensors)
        if ws is not None:
            return ws.gather(tensors, ws.other)
        return torch.cat([t.detach().reshape(-1) for t in tensors])

    def update_stats(self, before: Any, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        if isinstance(before, float32_path.Snapshot):
            return float32_path.update_stats(before, tensors)
        ws = self._workspace(tensors)
        if ws is not None and before is ws.other:
            return self._update_stats_cpu(ws, tensors)
        return self.update_stats_exact(before, tensors)

    def _update_stats_cpu(self, ws: _Workspace, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        new, old = ws.gather(tensors, ws.flat), ws.other
        out = torch.empty(len(tensors), UPDATE_COLS, dtype=torch.float64)
        out[:, UCOL_CHANGED] = ws.segment_sum(torch.ne(new, old, out=ws.mask))
        out[:, UCOL_DIFFSQ] = ws.segment_sum(new.sub_(old), square=True)
        out[:, UCOL_WEIGHTSQ] = ws.segment_sum(old, square=True)
        if not bool(torch.isfinite(out).all()):
            return self.update_stats_exact(old, tensors)  # NaN/Inf weights or updates: exact path
        return out

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
