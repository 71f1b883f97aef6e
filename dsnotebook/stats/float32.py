"""The reference statistics without float64, for devices that have none (Apple MPS, Intel GPUs without fp64).

Same numbers as the float64 path (:mod:`dsnotebook.stats.reference`), computed on the device
in float32 and finished on the host in float64:

* Layout: the tensors are cast to float32 and laid out in one zero-padded ``[rows, C]``
  matrix, every row holding values of one tensor only (``C`` a power of two, 64..4096,
  chosen per layout to keep the padding small).  Every reduction is then a dense reduction
  along rows, which every device has (``segment_reduce`` is CPU/CUDA only).
* Counts and histograms come from the bit patterns (``|x|`` as int32): each row is sorted
  and the 64 bin edges (powers of two) are located with ``searchsorted``.  Exact, immune to
  flush-to-zero arithmetic, and without ``bincount``, whose MPS kernel serialises on
  skewed keys (pytorch#184779: 18 s for 2M keys mostly in one bin).
* Sums: each row is scaled by a power of two (its largest magnitude to [1, 2): exact, no
  overflow, squares cannot overflow), then summed *error-free*: ``hi = (v + s) - s`` with
  ``s`` a power of two above the row's total keeps the leading bits of every value on a
  common grid, so the row sum of ``hi`` is exact in any summation order; the remainder is
  split once more, then summed.  Squares are exact too (Dekker's split: ``x*x = q + err``).
  Sum and sum of squares come out to about float64 accuracy; values more than 2^149 below a
  row's largest magnitude (below float32's range once scaled) are lost.  Updates: half the
  difference (no overflow) and the old weights, each scaled by its own row maximum; their
  squares are rounded once (2^-24 relative: ratios need 1e-5).
* One device->host copy per call (per-row partial sums, bin positions), then float64
  sums over each tensor's rows.  The result is a CPU float64 tensor in the backends'
  layout: the copy every non-CUDA result gets at once anyway (``core.transfer``).

Accuracy against the float64 path on the adversarial inputs of tests/stats: histograms,
counts and abs-max identical; norms within 1e-12 relative, sums within 1e-12 of the sum of
|x| (see the tests and ``benchmarks/stats_float32.py``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from dsnotebook.stats.layout import (COL_ABSMAX, COL_NONFINITE, COL_SUM, COL_SUMSQ, COL_ZEROS, GRAD_COLS,
                                     HIST_BINS, HIST_EXP_MIN, HIST_OFFSET, UCOL_CHANGED, UCOL_DIFFSQ, UCOL_WEIGHTSQ,
                                     UPDATE_COLS)

_BIAS = 127
_INF = 0x7F800000  # |x| bits at and above: Inf and NaN
_ROW_COST = 64  # a row's host-side cost (copy, float64 sums), in padded elements, when choosing C
# Upper edges of histogram bins 0..63 as |x| bits: bin 0 holds 0 (bits < 1), bin k holds
# |x| < 2^(k + HIST_EXP_MIN), the last bin every finite value; above: non-finite.
_EDGES = [1] + [(k + HIST_EXP_MIN + _BIAS) << 23 for k in range(1, HIST_BINS - 1)] + [_INF]


def _chunk_log2(numels: Sequence[int]) -> int:
    def cost(log2c: int) -> int:
        rows = sum(max(1, -(-m // (1 << log2c))) for m in numels)
        return rows * ((1 << log2c) + _ROW_COST)
    return min(range(6, 13), key=cost)


class Layout:
    """Where each tensor's values sit in the padded ``[rows, C]`` matrix (built once per set of sizes)."""

    def __init__(self, numels: Sequence[int], device: torch.device) -> None:
        self.log2c = _chunk_log2(numels)
        self.width = c = 1 << self.log2c
        rows = [max(1, -(-m // c)) for m in numels]  # an empty tensor gets one row of padding
        self.numels = list(numels)
        self.rows = int(sum(rows))
        self.pads = np.array([r * c - m for r, m in zip(rows, numels)], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)
        self.zeros = torch.zeros(c, dtype=torch.float32, device=device)
        self.edges = torch.tensor(_EDGES, dtype=torch.int32, device=device).expand(self.rows, HIST_BINS).contiguous()

    def gather(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """The tensors as float32 rows, zero-padded (one copy)."""
        parts = []
        for t, pad in zip(tensors, self.pads.tolist()):
            flat = t.detach().reshape(-1)
            parts.append(flat if flat.dtype == torch.float32 else flat.to(torch.float32))
            if pad:
                parts.append(self.zeros[:pad])
        return torch.cat(parts).view(self.rows, self.width)


def _row_scale(rowmax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(e, 2^-e) per row with e = floor(log2 rowmax), clamped so that 2^-e stays a normal float."""
    e = (torch.bitwise_right_shift(rowmax.view(torch.int32), 23) - _BIAS).clamp_(-126, 126)
    return e, torch.bitwise_left_shift(_BIAS - e, 23).view(torch.float32)


def _split_sums(v: torch.Tensor, log2_sigma: int, log2c: int, levels: int) -> list[torch.Tensor]:
    """Row sums of ``v`` as ``levels + 1`` float32 parts whose float64 total is the row sum.

    ``sigma = 2^log2_sigma`` must exceed the row's sum of ``|v|`` (with some margin); then ``(v + sigma) - sigma``
    rounds every value to a grid on which all partial sums are representable: exact in any order.
    """
    out = []
    sigma = 2.0 ** log2_sigma
    for _ in range(levels):
        hi = (v + sigma) - sigma
        out.append(hi.sum(dim=1))
        v = v - hi  # exact: |v| < sigma
        sigma *= 2.0 ** (log2c - 22)  # the rest is below sigma * 2^-24 per value
    out.append(v.sum(dim=1))
    return out


def _square(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x * x == q + err`` exactly (Dekker's product; every op rounds once, |x| < 4 cannot overflow)."""
    t = x * 4097.0
    hi = t - (t - x)
    lo = x - hi
    q = x * x
    return q, ((hi * hi - q) + 2.0 * hi * lo) + lo * lo


def _to_host(rows: torch.Tensor, ints: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """One device->host copy of float32 per-row values and int32 per-row positions."""
    packed = torch.cat([rows.reshape(-1).view(torch.int32), ints.reshape(-1)]).cpu().numpy()
    k = rows.numel()
    return packed[:k].view(np.float32).reshape(rows.shape).astype(np.float64), packed[k:].reshape(ints.shape)


def grad_stats(tensors: Sequence[torch.Tensor], layout: Layout) -> torch.Tensor:
    """``[n, GRAD_COLS]`` float64 on the CPU, the same numbers as the float64 path."""
    x = layout.gather(tensors)
    bits = torch.bitwise_and(x.view(torch.int32), 0x7FFFFFFF)  # |x|; non-finite >= _INF
    finite = bits < _INF
    rowmax = torch.where(finite, bits, 0).view(torch.float32).amax(dim=1)
    pos = torch.searchsorted(torch.sort(bits, dim=1).values, layout.edges)  # values below each edge
    e, scale = _row_scale(rowmax)
    xs = torch.where(finite, x, 0.0) * scale[:, None]  # |xs| < 2 (< 4 where e is clamped)
    q, err = _square(xs)
    parts = (_split_sums(xs, layout.log2c + 3, layout.log2c, 2)
             + _split_sums(q, layout.log2c + 5, layout.log2c, 2) + [err.sum(dim=1)])
    rows, pos = _to_host(torch.stack([rowmax, e.to(torch.float32)] + parts, dim=1), pos.to(torch.int32))
    e = rows[:, 1].astype(np.int64)
    starts = layout.starts
    out = np.zeros((len(layout.numels), GRAD_COLS))
    out[:, COL_SUM] = np.add.reduceat(np.ldexp(rows[:, 2] + rows[:, 3] + rows[:, 4], e), starts)
    out[:, COL_SUMSQ] = np.add.reduceat(np.ldexp(rows[:, 5] + rows[:, 6] + rows[:, 7] + rows[:, 8], 2 * e), starts)
    out[:, COL_ABSMAX] = np.maximum.reduceat(rows[:, 0], starts)
    counts = np.diff(pos.astype(np.int64), axis=1, prepend=0, append=layout.width)  # [rows, 64 bins + non-finite]
    counts = np.add.reduceat(counts, starts, axis=0)
    counts[:, 0] -= layout.pads  # the padding is zeros
    out[:, COL_NONFINITE] = counts[:, HIST_BINS]
    out[:, COL_ZEROS] = counts[:, 0]
    out[:, HIST_OFFSET:] = counts[:, :HIST_BINS]
    return torch.from_numpy(out)


class Snapshot:
    """Weights before an optimizer step, already in the float32 row layout."""

    def __init__(self, layout: Layout, values: torch.Tensor) -> None:
        self.layout, self.values = layout, values


def snapshot(tensors: Sequence[torch.Tensor], layout: Layout) -> Snapshot:
    return Snapshot(layout, layout.gather(tensors))


def update_stats(before: Snapshot, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[n, UPDATE_COLS]`` float64 on the CPU: sum((new-old)^2), sum(old^2) over finite values, changed."""
    layout, old = before.layout, before.values
    new = layout.gather(tensors)
    changed = (new != old).sum(dim=1)
    fn = torch.bitwise_and(new.view(torch.int32), 0x7FFFFFFF) < _INF
    fo = torch.bitwise_and(old.view(torch.int32), 0x7FFFFFFF) < _INF
    half = torch.where(fn & fo, 0.5 * new - 0.5 * old, 0.0)  # (new - old) / 2: cannot overflow
    oldf = torch.where(fo, old, 0.0)
    ed, sd = _row_scale(half.abs().amax(dim=1))  # each sum scaled by its own largest value
    ew, sw = _row_scale(oldf.abs().amax(dim=1))
    ds, ws = half * sd[:, None], oldf * sw[:, None]  # both below 4
    parts = (_split_sums(ds * ds, layout.log2c + 5, layout.log2c, 2)
             + _split_sums(ws * ws, layout.log2c + 5, layout.log2c, 2))
    rows, _ = _to_host(torch.stack([ed.to(torch.float32), ew.to(torch.float32)] + parts
                                   + [changed.to(torch.float32)], dim=1),
                       torch.zeros(0, dtype=torch.int32, device=new.device))
    ed, ew = rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64)
    starts = layout.starts
    out = np.zeros((len(layout.numels), UPDATE_COLS))
    out[:, UCOL_DIFFSQ] = np.add.reduceat(np.ldexp(rows[:, 2] + rows[:, 3] + rows[:, 4], 2 * ed + 2), starts)
    out[:, UCOL_WEIGHTSQ] = np.add.reduceat(np.ldexp(rows[:, 5] + rows[:, 6] + rows[:, 7], 2 * ew), starts)
    out[:, UCOL_CHANGED] = np.add.reduceat(rows[:, 8], starts)
    return torch.from_numpy(out)
