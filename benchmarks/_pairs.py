"""Shared by the CPU overhead benchmarks: a block of training steps and interleaved A/B pairs.

Blocks with and without the tracer alternate (ABBA order), so drift in machine load or
thermal state hits both sides alike; each adjacent pair gives one traced/plain ratio.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F


def train_block(model: torch.nn.Module, opt: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor,
                steps: int) -> float:
    """Seconds per step over ``steps`` plain classification training steps."""
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def interleaved(tracer: Any, model: torch.nn.Module, opt: torch.optim.Optimizer, xb: torch.Tensor,
                yb: torch.Tensor, pairs: int, steps: int,
                cpu: dict[str, list[float]] | None = None) -> tuple[list[float], list[float], list[float]]:
    """(plain, traced, ratio) per pair; the tracer (or a peer arm: a callable returning a context
    manager) is on only for its blocks.  ``cpu``, when given, receives the training thread's CPU
    seconds per step of each block (``time.thread_time``: a second witness on a shared machine,
    blind to time spent waiting and to work done by other threads or processes) under "plain" and
    "traced"."""
    plain, traced, ratios = [], [], []
    arm = tracer if callable(tracer) and not hasattr(tracer, "attach") else (lambda: tracer)
    for i in range(pairs):
        t, c = {}, {}
        for on in ((False, True) if i % 2 == 0 else (True, False)):
            c0 = time.thread_time()
            if on:
                with arm():
                    t[on] = train_block(model, opt, xb, yb, steps)
            else:
                t[on] = train_block(model, opt, xb, yb, steps)
            c[on] = (time.thread_time() - c0) / steps
        plain.append(t[False])
        traced.append(t[True])
        ratios.append(t[True] / t[False])
        if cpu is not None:
            cpu.setdefault("plain", []).append(c[False])
            cpu.setdefault("traced", []).append(c[True])
    return plain, traced, ratios


def overhead_pct(ratios: list[float]) -> tuple[float, float, float]:
    """Median overhead and its interquartile range, in percent."""
    q = statistics.quantiles(ratios, n=4)
    return 100 * (statistics.median(ratios) - 1), 100 * (q[0] - 1), 100 * (q[2] - 1)
