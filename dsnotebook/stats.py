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
"""
from __future__ import annotations

from typing import Sequence

import torch

HIST_BINS = 64
HIST_EXP_MIN = -46  # bin 1 <-> floor(log2|x|) == -46 (and below); last bin: >= 16

COL_SUM, COL_SUMSQ, COL_ABSMAX, COL_NONFINITE, COL_ZEROS = range(5)
HIST_OFFSET = 5
GRAD_COLS = HIST_OFFSET + HIST_BINS

UCOL_DIFFSQ, UCOL_WEIGHTSQ, UCOL_CHANGED = range(3)
UPDATE_COLS = 3


def hist_bin_edges() -> list[float]:
    """Lower edge |x| of each histogram bin (bin 0 is exact zero, edge 0)."""
    return [0.0] + [2.0 ** (k - 1 + HIST_EXP_MIN) for k in range(1, HIST_BINS)]


def _flat64(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """All tensors as one float64 vector plus their lengths (one copy, no host sync)."""
    device = tensors[0].device
    flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors])
    lengths = torch.tensor([t.numel() for t in tensors], dtype=torch.int64, device=device)
    return flat, lengths


def _segsum(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return torch.segment_reduce(values, "sum", lengths=lengths, unsafe=True)


class TorchStatsBackend:
    """Batched per-tensor statistics with torch ops: the reference every backend matches."""

    name = "torch"

    def grad_stats(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
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
        """Copy of the weights before an optimizer step (4 or 2 bytes per element)."""
        return torch.cat([t.detach().reshape(-1) for t in tensors]) if tensors else torch.zeros(0)

    def update_stats(self, before: torch.Tensor, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
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
