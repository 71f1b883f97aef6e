"""Forward latency of several models, measured interleaved (the advisor's A/B protocol, for
inference): every round times one block of calls of *each* model, in an order that rotates
from round to round, so drift in machine load or clock speed hits every model alike.  Each call
is timed alone and a block counts its median call: latency is the time of one call, and a call
the OS descheduled on a busy machine (100 ms stalls of a 0.1 ms call were seen on our shared
2-core machine) must not decide a verdict.  Per model: the median over rounds of the block
medians and their interquartile range; against the baseline (the
first model): the median over rounds of the per-round ratio baseline/model (the speed-up, > 1 is
faster) with its quartiles, and a verdict that needs the whole interquartile range on one side:
``faster`` (lower quartile > x1.05), ``slower`` (upper quartile < x0.95), else ``same``
(``unknown`` with fewer than 3 rounds).
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

__all__ = ["Timing", "interleaved_latency", "MARGIN"]

#: fewer rounds give no quartiles worth the name: the verdict is "unknown"
MIN_ROUNDS = 3
#: a speed-up must clear 1 +/- MARGIN with its whole interquartile range to count as faster/slower
MARGIN = 0.05


@dataclass
class Timing:
    median_s: float
    iqr_s: float  # upper minus lower quartile of the per-round seconds per call
    speedup: float  # median over rounds of baseline / this model (1.0 for the baseline)
    speedup_lo: float
    speedup_hi: float
    verdict: str  # baseline | faster | slower | same | unknown
    rounds: int
    calls: int  # calls per timed block


def _quartiles(xs: list[float]) -> tuple[float, float]:
    if len(xs) < 2:
        return (xs[0], xs[0]) if xs else (math.nan, math.nan)
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def verdict(lo: float, hi: float) -> str:
    if lo > 1.0 + MARGIN:
        return "faster"
    if hi < 1.0 - MARGIN:
        return "slower"
    return "same"


#: calls per block at least (a block's median needs a few calls), whatever ``block_s`` says
MIN_CALLS = 5


def _calibrate(block: Callable[[Callable[..., Any], int], float], fn: Callable[..., Any], block_s: float,
               max_calls: int) -> int:
    """Calls per block so that one block of the baseline lasts about ``block_s`` (its fastest of a
    few calls sets the pace: a stalled call must not shrink every block to one call)."""
    per_call = min(block(fn, 1) for _ in range(MIN_CALLS))
    return max(min(MIN_CALLS, max_calls), min(max_calls, math.ceil(block_s / max(per_call, 1e-7))))


def interleaved_latency(models: dict[str, Callable[..., Any]], args: tuple[Any, ...], *, rounds: int = 5,
                        block_s: float = 0.02, max_calls: int = 1000, device: torch.device | None = None,
                        warmup: int = 2, threads: int | None = None) -> dict[str, Timing]:
    """Seconds per call of each model on ``args`` (the first model is the baseline); ``threads``:
    torch's CPU threads while measuring (restored afterwards; default: as they are)."""
    if not models:
        return {}
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _measure(models, args, rounds, block_s, max_calls, device, warmup)
    finally:
        torch.set_num_threads(before)


def _measure(models: dict[str, Callable[..., Any]], args: tuple[Any, ...], rounds: int, block_s: float,
             max_calls: int, device: torch.device | None, warmup: int) -> dict[str, Timing]:
    cuda = device is not None and device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def block(fn: Callable[..., Any], n: int) -> float:
        """Median seconds of ``n`` calls, each timed alone (on CUDA: until the device is done): a
        call that the OS descheduled for 100 ms on a busy machine moves a mean, not a median."""
        per_call = []
        for _ in range(n):
            sync()
            t0 = time.perf_counter()
            fn(*args)
            sync()
            per_call.append(time.perf_counter() - t0)
        return statistics.median(per_call)

    names = list(models)
    with torch.no_grad():
        for fn in models.values():
            if warmup > 0:
                block(fn, warmup)
        calls = _calibrate(block, models[names[0]], block_s, max_calls)
        times: dict[str, list[float]] = {n: [] for n in names}
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            if r % 2:
                order.reverse()
            for n in order:
                times[n].append(block(models[n], calls))
    base = times[names[0]]
    out = {}
    for n in names:
        ratios = [b / t for b, t in zip(base, times[n]) if t > 0]
        lo, hi = _quartiles(ratios)
        q1, q3 = _quartiles(times[n])
        v = "baseline" if n == names[0] else verdict(lo, hi) if rounds >= MIN_ROUNDS else "unknown"
        out[n] = Timing(statistics.median(times[n]), q3 - q1, statistics.median(ratios), lo, hi, v, rounds, calls)
    return out
