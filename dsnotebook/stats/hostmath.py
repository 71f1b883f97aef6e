"""The CPU fast path's arithmetic: numpy only (no torch), so the statistics helper process
(:mod:`dsnotebook.stats.helper`) imports it without torch.

Every finite float32 value is handled exactly: sums and squares in float64 (a float32
squared is exact in float64 and cannot overflow it), abs-max and the histogram from the
bit patterns (``floor(log2|x|)`` of a normal float32 is its biased exponent - 127,
subnormals fall in bin 1).  Non-finite values are left to the exact torch path: the
caller checks them (``all_finite``) or gets ``None`` back.
"""
from __future__ import annotations

import numpy as np

if __package__:
    from .layout import (COL_ABSMAX, COL_NONFINITE, COL_SUM, COL_SUMSQ, COL_ZEROS, GRAD_COLS, HIST_BINS, HIST_EXP_MIN,
                         HIST_OFFSET, UCOL_CHANGED, UCOL_DIFFSQ, UCOL_WEIGHTSQ, UPDATE_COLS)
else:  # imported by the helper process as a plain module (its directory on sys.path)
    from layout import (COL_ABSMAX, COL_NONFINITE, COL_SUM, COL_SUMSQ, COL_ZEROS, GRAD_COLS, HIST_BINS,  # type: ignore
                        HIST_EXP_MIN, HIST_OFFSET, UCOL_CHANGED, UCOL_DIFFSQ, UCOL_WEIGHTSQ, UPDATE_COLS)

_INF_BITS = 0x7F800000  # |x| bits at or above: infinity or NaN
_SLOTS = 257  # per tensor: 0 = exact zero, 1 = subnormal, e + 1 = biased exponent e (1..255)
_FIRST_BIN = 127 + HIST_EXP_MIN - 1  # biased exponent of histogram bin 1's upper neighbour - 1
# Slots -> histogram bins, as starts of runs of slots: bin 0 <- slot 0 (zeros), bin 1 <- slots
# 1 .. _FIRST_BIN + 2 (subnormals and every exponent at or below bin 1), bin k <- slot
# k + _FIRST_BIN + 1, the last bin <- every slot above.
_BIN_STARTS = np.array([0, 1] + [k + _FIRST_BIN + 1 for k in range(2, HIST_BINS)], dtype=np.intp)


class Segments:
    """Where each tensor's elements lie in the flat buffer, and its histogram key offset."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = [int(s) for s in sizes]
        self.n, self.total = len(self.sizes), int(sum(self.sizes))
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.intp)
        self.key_base = np.repeat(np.arange(self.n, dtype=np.intp) * _SLOTS, self.sizes)


class Scratch:
    """Per-thread work arrays for one layout (never shared between threads)."""

    def __init__(self, total: int) -> None:
        self.x64 = np.empty(total, dtype=np.float64)
        self.ab = np.empty(total, dtype=np.int32)
        self.nz = np.empty(total, dtype=np.int32)
        self.key = np.empty(total, dtype=np.intp)  # bincount wants intp: no hidden cast
        self.mask = np.empty(total, dtype=np.bool_)


def all_finite(buf: np.ndarray) -> bool:
    """Whether every value is finite (NaN propagates through max/min, infinities show in them)."""
    return bool(np.isfinite(buf.max()) and np.isfinite(buf.min()))


def grad_stats(buf: np.ndarray, layout: Segments, s: Scratch) -> np.ndarray | None:
    """``[n, GRAD_COLS]`` float64 statistics, or None when a value is not finite (the exact
    path decides then; the check costs nothing extra: it is the abs-max's pass)."""
    n, starts = layout.n, layout.starts
    out = np.empty((n, GRAD_COLS), dtype=np.float64)
    ab = np.bitwise_and(buf.view(np.int32), 0x7FFFFFFF, out=s.ab)  # bits of |x|: ordered like |x|
    top = np.maximum.reduceat(ab, starts)
    if int(top.max()) >= _INF_BITS:
        return None
    out[:, COL_ABSMAX] = top.view(np.float32)
    x = s.x64
    np.copyto(x, buf)
    out[:, COL_SUM] = np.add.reduceat(x, starts)
    np.multiply(x, x, out=x)
    out[:, COL_SUMSQ] = np.add.reduceat(x, starts)
    key = np.right_shift(ab, 23, out=s.key)  # biased exponent
    key += np.minimum(ab, 1, out=s.nz)  # + 1 unless exactly zero: zeros and subnormals apart
    key += layout.key_base
    counts = np.bincount(key, minlength=n * _SLOTS).reshape(n, _SLOTS)
    hist = np.add.reduceat(counts, _BIN_STARTS, axis=1)
    out[:, COL_NONFINITE] = 0.0
    out[:, COL_ZEROS] = hist[:, 0]
    out[:, HIST_OFFSET:] = hist
    return out


def update_stats(old: np.ndarray, new: np.ndarray, layout: Segments, s: Scratch) -> np.ndarray | None:
    """``[n, UPDATE_COLS]`` float64 update statistics; None when a weight or update is not
    finite (the exact path decides what counts then)."""
    starts = layout.starts
    out = np.empty((layout.n, UPDATE_COLS), dtype=np.float64)
    out[:, UCOL_CHANGED] = np.add.reduceat(np.not_equal(new, old, out=s.mask).view(np.uint8), starts, dtype=np.intp)
    x = np.subtract(new, old, out=s.x64, dtype=np.float64)
    np.multiply(x, x, out=x)
    out[:, UCOL_DIFFSQ] = np.add.reduceat(x, starts)
    np.copyto(x, old)
    np.multiply(x, x, out=x)
    out[:, UCOL_WEIGHTSQ] = np.add.reduceat(x, starts)
    if not np.isfinite(out[:, :UCOL_CHANGED]).all():
        return None
    return out
