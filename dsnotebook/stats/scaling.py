"""Gradient statistics of loss-scaled gradients, brought back to the true gradients' scale.

Optimizers that unscale inside their own fused step (``_step_supports_amp_scaling``, e.g.
``Adam(fused=True)`` under ``torch.amp.GradScaler``) still hold ``scale * g`` in ``p.grad``
when their pre-step hook runs.  Rather than copying every gradient to unscale it, the raw
statistics are corrected on the host: sums divide by the scale, sums of squares by its
square, abs-max by the scale, and the log2 histogram shifts down by log2(scale) bins
(exact for GradScaler's power-of-two scales).  Counts (non-finite, zeros) do not change.
"""
from __future__ import annotations

import math

import numpy as np

from dsnotebook.stats.reference import COL_ABSMAX, COL_SUM, COL_SUMSQ, HIST_BINS, HIST_OFFSET


def unscale_grad_stats(raw: np.ndarray, scale: float) -> np.ndarray:
    """``raw`` [n, GRAD_COLS] (backend layout) of ``scale * g`` -> the same layout for ``g``."""
    if not math.isfinite(scale) or scale <= 0 or scale == 1.0:
        return raw
    out = np.array(raw, dtype=np.float64)
    out[:, COL_SUM] /= scale
    out[:, COL_SUMSQ] /= scale * scale
    out[:, COL_ABSMAX] /= scale
    shift = int(round(math.log2(scale)))
    if shift:
        hist = out[:, HIST_OFFSET:HIST_OFFSET + HIST_BINS]
        moved = np.zeros_like(hist)
        moved[:, 0] = hist[:, 0]  # exact zeros stay zeros
        dest = np.clip(np.arange(1, HIST_BINS) - shift, 1, HIST_BINS - 1)
        np.add.at(moved, (slice(None), dest), hist[:, 1:])
        out[:, HIST_OFFSET:HIST_OFFSET + HIST_BINS] = moved
    return out
