"""When to run the per-module non-finite checks, and which event a check produces.

One episode is a run of steps with non-finite values; it gets one event, not one per
step.  ``strict`` checks every step.  ``cheap`` checks only after the per-step statistics
saw a non-finite gradient or activation, for up to ``arm_steps`` steps, until the origin
is found; if the checks see nothing in that window the event says so.  A clean step
(finite statistics, no checks running) ends the episode, so the next one is reported.
"""
from __future__ import annotations

from dataclasses import dataclass

MODES = ("cheap", "strict", "off")


@dataclass
class Event:
    step: int
    module: str | None
    detail: str


class NonFiniteEpisodes:
    """The episode state machine: pure logic, no hooks, no tensors."""

    def __init__(self, mode: str = "cheap", arm_steps: int = 3) -> None:
        if mode not in MODES:
            raise ValueError(f"nonfinite must be one of {MODES}, got {mode!r}")
        self.mode, self.arm_steps = mode, arm_steps
        self.armed_left = 0  # cheap mode: steps still to check
        self.in_episode = False
        self.trigger_step: int | None = None

    def wants_checks(self) -> bool:
        return self.mode == "strict" or (self.mode == "cheap" and self.armed_left > 0)

    def saw_statistics(self, step: int, nonfinite: bool, checking: bool) -> None:
        """The per-step statistics of ``step`` reached the host (cheap mode's trigger)."""
        if self.mode != "cheap":
            return
        if nonfinite:
            if not self.in_episode and self.armed_left == 0:
                self.armed_left, self.trigger_step = self.arm_steps, step
        elif not checking:
            self.in_episode = False

    def found_by_replay(self, step: int, module: str | None, detail: str) -> Event | None:
        """A replay of ``step`` (before its optimizer update) named the origin."""
        if self.in_episode:
            return None
        self.in_episode, self.armed_left = True, 0
        return Event(step, module, detail + " (found by replaying this step's forward and backward on the weights "
                                            "before its update)")

    def checked(self, step: int, module: str | None, detail: str | None) -> Event | None:
        """The checks of ``step`` found the origin (``module``, ``detail``) or nothing (None)."""
        if self.mode == "cheap":
            self.armed_left = max(0, self.armed_left - 1)
        if detail is not None:
            event = None
            if not self.in_episode:
                if self.mode == "cheap" and self.trigger_step is not None:
                    detail += f" (checks armed after non-finite statistics at step {self.trigger_step})"
                event = Event(step, module, detail)
            self.in_episode, self.armed_left = True, 0
            return event
        if self.mode == "strict":
            self.in_episode = False
        elif self.armed_left == 0 and not self.in_episode:
            self.in_episode = True
            return Event(step, None, f"non-finite statistics at step {self.trigger_step}, but the per-module checks "
                                     f"of the next {self.arm_steps} steps saw none (it did not repeat); use "
                                     "nonfinite='strict' to check every step")
        return None
