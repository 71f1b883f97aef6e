"""Clock: the device's own timing events (CUDA/ROCm, MPS, XPU), a synchronisation where a runtime has
none, perf_counter on CPU.  The device runtimes are simulated: a fake ``Event`` class with a
device timeline (milliseconds) and a counting ``synchronize``."""
from __future__ import annotations

import pytest
import torch

from dsnotebook.core.clock import ADDITIVE, PHASES, Clock, synchronize


class Timeline:
    """A device: events get the time of the work queued before them; synchronize() counts."""

    def __init__(self) -> None:
        self.now_ms, self.syncs, self.made = 0.0, 0, []
        line = self

        class Event:
            def __init__(self, enable_timing: bool = False) -> None:
                assert enable_timing, "timing events must be asked for"
                self.t = None
                line.made.append(self)

            def record(self, stream=None) -> None:
                self.t = line.now_ms

            def elapsed_time(self, end: "Event") -> float:
                assert line.syncs, "read before the device was synchronised"
                return end.t - self.t

        self.Event = Event

    def synchronize(self, device=None) -> None:
        self.syncs += 1


@pytest.mark.parametrize("kind", ["cuda", "mps", "xpu"])
def test_gpu_marks_are_device_events_read_after_one_sync(monkeypatch, kind):
    line = Timeline()
    runtime = getattr(torch, kind)
    monkeypatch.setattr(runtime, "Event", line.Event, raising=False)
    monkeypatch.setattr(runtime, "synchronize", line.synchronize)
    c = Clock(torch.device(kind, 0) if kind != "mps" else torch.device("mps"))
    assert c.mode == "events"
    a = c.mark()
    line.now_ms += 250.0  # work the device ran between the marks
    b = c.mark()
    assert line.syncs == 0 and len(line.made) == 2  # marking never waits for the device
    c.sync()
    assert line.syncs == 1 and c.seconds(a, b) == pytest.approx(0.25)
    assert c.seconds(None, b) == 0.0


def test_a_runtime_without_events_is_synchronised_at_each_mark(monkeypatch):
    line = Timeline()
    monkeypatch.delattr(torch.xpu, "Event", raising=False)
    monkeypatch.setattr(torch.xpu, "synchronize", line.synchronize)
    c = Clock("xpu")
    assert c.mode == "sync"
    a, b = c.mark(), c.mark()
    assert line.syncs == 2 and b >= a and isinstance(c.seconds(a, b), float)


def test_cpu_is_perf_counter_and_never_touches_a_device(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("no device call on CPU")
    monkeypatch.setattr(torch.cuda, "synchronize", boom)
    c = Clock(torch.device("cpu"))
    assert c.mode == "host"
    a = c.mark()
    b = c.mark()
    c.sync()
    synchronize("cpu")
    assert 0 <= c.seconds(a, b) < 1


def test_synchronize_reaches_each_runtime(monkeypatch):
    seen = []
    for kind in ("cuda", "mps", "xpu"):
        monkeypatch.setattr(getattr(torch, kind), "synchronize", lambda *a, k=kind: seen.append(k))
        synchronize(kind)
    assert seen == ["cuda", "mps", "xpu"]


def test_phases_kept():
    assert PHASES == ("data", "fwd", "bwd", "opt", "comm", "tracer", "other") and "comm" not in ADDITIVE
