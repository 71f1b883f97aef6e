"""Plain per-tensor float64 statistics: what every backend is checked against."""
from __future__ import annotations

import math

import numpy as np
import torch

from dsnotebook.stats.reference import HIST_BINS, HIST_EXP_MIN


def plain_grad_stats(t: torch.Tensor) -> dict:
    x = t.detach().reshape(-1).to(torch.float64)
    finite = torch.isfinite(x)
    xf = x[finite]
    n = xf.numel()
    hist = np.zeros(HIST_BINS, dtype=np.int64)
    for v in xf.abs().tolist():
        if v == 0:
            hist[0] += 1
        else:
            e = math.floor(math.log2(v)) if v >= 2.0 ** -1022 else -1100
            if v < 2.0 ** -1022 or 2.0 ** e > v:  # guard against log2 rounding
                e = math.frexp(v)[1] - 1
            hist[min(max(e - HIST_EXP_MIN + 1, 1), HIST_BINS - 1)] += 1
    return {
        "norm": float(xf.norm()) if n else 0.0,
        "mean": float(xf.mean()) if n else float("nan"),
        "std": float(xf.std()) if n > 1 else float("nan"),
        "absmax": float(xf.abs().max()) if n else 0.0,
        "nonfinite": int((~finite).sum()),
        "zero_frac": float((x == 0).sum()) / x.numel() if x.numel() else float("nan"),
        "hist": hist,
    }


def tiny_cnn() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 10))


def classification_step(model: torch.nn.Module, opt: torch.optim.Optimizer, after=None):
    """step(batch) -> loss: zero_grad, cross-entropy on (x, y), backward, optimizer step; then ``after()``."""
    import torch.nn.functional as F

    def step(batch):
        x, y = batch
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if after is not None:
            after()
        return loss
    return step
