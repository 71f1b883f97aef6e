"""Device time from a preallocated pool of CUDA events, read once per step (fake events on CPU;
the real ones in the gpu-marked tests)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import dsnotebook
from dsnotebook import ModelTracer
from dsnotebook.calls.device import DEVICE, EventPool

trace = dsnotebook.trace


class FakeClock:
    """A device timeline: events record the fake clock; ``done`` says whether the device got there."""

    def __init__(self) -> None:
        self.now = 0.0  # milliseconds, as torch.cuda.Event.elapsed_time
        self.done = True
        self.made = self.records = self.syncs = self.queries = 0

    def event(self) -> "FakeEvent":
        self.made += 1
        return FakeEvent(self)


class FakeEvent:
    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.t = clock, None

    def record(self) -> None:
        self.clock.records += 1
        self.clock.now += 1.5  # each recorded event is 1.5 ms of device work later
        self.t = self.clock.now

    def query(self) -> bool:
        self.clock.queries += 1
        return self.clock.done

    def synchronize(self) -> None:
        self.clock.syncs += 1
        self.clock.done = True

    def elapsed_time(self, end: "FakeEvent") -> float:
        assert self.clock.done and self.t is not None and end.t is not None
        return end.t - self.t


def test_pool_preallocates_in_chunks_and_reuses_pairs():
    clock = FakeClock()
    pool = EventPool(factory=clock.event, chunk=4, cap=8)
    pairs = []
    for _ in range(8):
        pairs.append(pool.start())
        pool.stop(pairs[-1])
    assert clock.made == 16 and pool.size == 8 and pool.free == 0
    assert pool.start() is None and pool.missed == 1, "exhausted: no allocation on the hot path, no device time"
    assert all(pool.done(p) for p in pairs)
    assert [pool.read(p) for p in pairs[:2]] == [pytest.approx(1.5e-3)] * 2
    assert pool.free == 2 and clock.made == 16
    again = pool.start()
    assert again in pairs[:2], "a read pair is used again"
    clock.done = False
    assert not pool.done(pairs[3])
    pool.wait(pairs[2:])
    assert clock.syncs == 1 and pool.done(pairs[3])


@pytest.fixture
def fake_device():
    from dsnotebook.calls import wrap

    clock = FakeClock()
    DEVICE.factory, DEVICE.forced = clock.event, True
    DEVICE._free.clear()
    DEVICE._made = 0
    wrap._root_countdown[0] = 0  # the next root call looks at the device again
    yield clock
    DEVICE.factory, DEVICE.forced = None, None
    DEVICE._free.clear()
    DEVICE._made = 0
    DEVICE.on = False
    wrap._root_countdown[0] = 0


def test_traced_calls_get_device_times_without_a_sync_per_call(fake_device):
    @trace
    def inner(x):
        return x

    @trace
    def outer(x):
        return inner(x) + 1

    for _ in range(5):
        outer(1)
    assert fake_device.syncs == 0, "no synchronisation while calls run"
    df = trace.calls()
    assert fake_device.syncs <= 1
    assert df[df["name"].str.endswith(".inner")]["device_s"].tolist() == pytest.approx([1.5e-3] * 5)
    assert df[df["name"].str.endswith(".outer")]["device_s"].tolist() == pytest.approx([4.5e-3] * 5)
    assert DEVICE.free == DEVICE.size, "every pair went back to the pool"


def _train(model, opt, steps):
    for _ in range(steps):
        opt.zero_grad()
        F.mse_loss(model(torch.randn(4, 3)), torch.zeros(4, 2)).backward()
        opt.step()


def test_the_probe_reads_events_at_step_boundaries_and_never_waits(fake_device):
    model = torch.nn.Linear(3, 2)
    model.forward = trace(model.forward, name="fwd")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tracer = ModelTracer(model, opt, capture_graph=False, nonfinite="off")
    with tracer:
        fake_device.done = False  # the device lags behind: nothing can be read yet
        _train(model, opt, 3)
        assert tracer.run.records.tables["calls"] == [] and fake_device.syncs == 0
        fake_device.done = True  # the device caught up: the next step boundary reads them
        _train(model, opt, 1)
        n = len(tracer.run.records.tables["calls"])
        assert n >= 3 and fake_device.syncs == 0
    df = tracer.to_dataframe("calls")
    assert list(df["step"]) == [0, 1, 2, 3] and df["device_s"].tolist() == pytest.approx([1.5e-3] * 4)
    assert DEVICE.free == DEVICE.size


def test_calibration_again_when_device_events_start(fake_device):
    from dsnotebook.calls.state import OVERHEAD

    @trace
    def f():
        return 1

    from dsnotebook.calls import wrap

    wrap._root_countdown[0] = 0
    f()
    assert OVERHEAD.device is True and OVERHEAD.measured["device_events"] is True
    DEVICE.forced = False
    wrap._root_countdown[0] = 0
    f()
    assert OVERHEAD.device is False
