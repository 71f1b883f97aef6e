"""Which steps the parameter probes record: every N-th step, or "auto" within a cost budget.

``every="auto"`` measures what recording costs (host time of the gradient and update
statistics, per recorded step) and how long a training step takes, and records every
N-th step with N chosen so that the cost stays within ``budget`` (a fraction of the step
time, default 2%).  N is re-decided as the measurements move (moving averages, the
first recorded step left out: it allocates workspaces).  Steps in between are covered by
the gradient probe's sentinel (one fused norm per tensor and a finiteness check), so the
global gradient norm and non-finite detection stay at every step.
"""
from __future__ import annotations

import math
import time

AUTO = "auto"
MAX_EVERY = 10_000


class Schedule:
    """Shared by the gradient and update probes so both record the same steps."""

    def __init__(self, every: int | str = 1, budget: float = 0.02) -> None:
        self.auto = every == AUTO
        self.every = 1 if self.auto else int(every)
        self.budget = budget
        self._decided: tuple[int, bool] = (-1, False)
        self._next = 0
        self._cost_ema: float | None = None  # seconds of recording work per recorded step
        self._step_ema: float | None = None  # seconds per training step, recording excluded
        self._sentinel_ema = 0.0  # seconds of sentinel work per unrecorded step
        self._cost_now = 0.0  # recording work charged to the step in progress
        self._sentinel_now = 0.0
        self._last_tick: float | None = None
        self._recorded = 0

    def records(self, step: int) -> bool:
        """Whether ``step`` is recorded (the same answer however often it is asked)."""
        if not self.auto:
            return step % self.every == 0
        if self._decided[0] != step:
            rec = step >= self._next
            if rec:
                self._next = step + self.every
            self._decided = (step, rec)
        return self._decided[1]

    def charge(self, seconds: float, sentinel: bool = False) -> None:
        """Recording (or sentinel) work done for the step in progress."""
        if sentinel:
            self._sentinel_now += seconds
        else:
            self._cost_now += seconds

    def tick(self, step: int) -> None:
        """A new training step reached its first optimizer: close the books of the previous one."""
        now = time.perf_counter()
        if self._last_tick is not None and self.auto:
            wall = now - self._last_tick
            cost, sentinel = self._cost_now, self._sentinel_now
            plain = max(wall - cost - sentinel, 1e-9)
            self._step_ema = plain if self._step_ema is None else 0.9 * self._step_ema + 0.1 * plain
            if cost > 0:
                self._recorded += 1
                if self._recorded > 1:  # the first recorded step allocates workspaces
                    self._cost_ema = cost if self._cost_ema is None else 0.7 * self._cost_ema + 0.3 * cost
            elif sentinel > 0:
                self._sentinel_ema = 0.9 * self._sentinel_ema + 0.1 * sentinel
            self._decide()
        self._last_tick = now
        self._cost_now = self._sentinel_now = 0.0

    def pause(self) -> None:
        """Tracing stops (detach): the time until the next attach is no step of ours."""
        self._last_tick = None
        self._cost_now = self._sentinel_now = 0.0

    def _decide(self) -> None:
        if self._cost_ema is None or self._step_ema is None:
            return  # still measuring: record every step
        room = self.budget * self._step_ema - self._sentinel_ema  # what the sentinel leaves of the budget
        if room <= 0:
            self.every = MAX_EVERY
            return
        self.every = int(min(MAX_EVERY, max(1, math.ceil(self._cost_ema / room - 1e-9))))

    def describe(self) -> dict[str, float | int | str | None]:
        """What the run's metadata says about the schedule."""
        return {"every": AUTO if self.auto else self.every, "budget": self.budget if self.auto else None,
                "chosen_every": self.every, "record_ms": None if self._cost_ema is None else 1e3 * self._cost_ema,
                "step_ms": None if self._step_ema is None else 1e3 * self._step_ema,
                "sentinel_ms": 1e3 * self._sentinel_ema}
