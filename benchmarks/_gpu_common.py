"""Shared by the GPU benchmarks: the printed/saved log and CUDA-event timing helpers."""
from __future__ import annotations

import statistics
from typing import Any, Callable, Sequence

import torch

LINES: list[str] = []
PROFILES: list[str] = []


def say(msg: str) -> None:
    print(msg, flush=True)
    LINES.append(msg)


def _events_ms(fn: Callable[[], Any], reps: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b))
    return out


def _med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def _iqr(xs: Sequence[float]) -> tuple[float, float]:
    if len(xs) < 2:
        return (xs[0], xs[0])
    q = statistics.quantiles(xs, n=4)
    return (q[0], q[2])


# ---------------------------------------------------------------------------- bench 1
