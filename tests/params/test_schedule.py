"""every="auto": the recording stride follows the measured cost; the sentinel covers the steps between."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dsnotebook import ModelTracer
from dsnotebook.params import schedule as schedule_mod
from dsnotebook.params.schedule import Schedule


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_stride_follows_cost_and_budget(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(schedule_mod.time, "perf_counter", clock)
    sch = Schedule("auto", budget=0.02)
    recorded = []
    for step in range(200):
        sch.tick(step)
        if sch.records(step):
            recorded.append(step)
            sch.charge(0.001)  # 1 ms of recording work
            clock.t += 0.001
        clock.t += 0.010  # a 10 ms step
    # 1 ms per recorded step within 2% of 10 ms: every 5th step
    assert sch.every == 5
    gaps = np.diff(recorded[-20:])
    assert (gaps == 5).all(), recorded[-20:]
    assert recorded[:3] == [0, 1, 2]  # measuring first


def test_sentinel_cost_counts_against_the_budget(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(schedule_mod.time, "perf_counter", clock)
    sch = Schedule("auto", budget=0.02)
    for step in range(300):
        sch.tick(step)
        if sch.records(step):
            sch.charge(0.001)
            clock.t += 0.001
        else:
            sch.charge(0.0001, sentinel=True)  # 0.1 ms of the 0.2 ms budget
            clock.t += 0.0001
        clock.t += 0.010
    assert sch.every == math.ceil(0.001 / (0.02 * 0.010 - 0.0001))  # 10


def test_fixed_every_is_plain_modulo():
    sch = Schedule(3)
    assert [s for s in range(10) if sch.records(s)] == [0, 3, 6, 9]


class SlowStats:
    """Wraps a backend: its statistics take a constructed, known time."""

    def __init__(self, inner, delay):
        self.inner, self.delay, self.name = inner, delay, "slow"

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def grad_stats(self, tensors):
        import time
        time.sleep(self.delay)
        return self.inner.grad_stats(tensors)


def _train(tracer, model, opt, steps, poison_at=None):
    g = torch.Generator().manual_seed(0)
    norms = []
    with tracer:
        for i in range(steps):
            x, y = torch.randn(16, 8, generator=g), torch.randint(0, 4, (16,), generator=g)
            opt.zero_grad()
            out = model(x)
            if i == poison_at:
                out = out * float("nan")
            F.cross_entropy(out, y).backward()
            norms.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))))
            opt.step()
    return norms


def test_auto_records_a_stride_and_the_sentinel_every_other_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tracer = ModelTracer(model, opt, budget=0.02, capture_graph=False, track_updates=False)
    backend = tracer._backend(torch.device("cpu"))  # noqa: SLF001 - test: slow the backend down on purpose
    tracer._backends[torch.device("cpu")] = SlowStats(backend, 0.02)  # noqa: SLF001
    norms = _train(tracer, model, opt, 60)
    grads = tracer.to_dataframe("grads")
    sentinel = tracer.to_dataframe("sentinel")
    recorded = sorted(grads.step.unique())
    assert len(recorded) < 30, recorded  # 20 ms of statistics on a ~1 ms step: far from every step
    assert set(recorded) | set(sentinel.step) == set(range(60))  # every step covered by one or the other
    assert not set(recorded) & set(sentinel.step)
    for row in sentinel.itertuples():
        assert row.grad_norm == pytest.approx(norms[row.step], rel=1e-5)
        assert row.nonfinite_tensors == 0 and row.tensors == 4
    sched = tracer.run.meta["schedule"]
    assert sched["every"] == "auto" and sched["chosen_every"] > 1


def test_nan_on_an_unrecorded_step_is_named_at_that_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tracer = ModelTracer(model, opt, every=5, capture_graph=False)
    _train(tracer, model, opt, 10, poison_at=7)  # step 7 is not recorded (every 5)
    assert 7 not in set(tracer.to_dataframe("grads").step)
    ev = [e for e in tracer.run.events if e["kind"] == "nonfinite"]
    assert ev and ev[0]["step"] == 7, ev
    sent = tracer.to_dataframe("sentinel").set_index("step")
    assert sent.loc[7, "nonfinite_tensors"] > 0 and np.isnan(sent.loc[7, "grad_norm"])


@pytest.mark.parametrize("bad", [{"every": "sometimes"}, {"every": 0}, {"budget": 0}, {"budget": 1.5},
                                 {"budget": "2%"}])
def test_bad_schedule_options(bad):
    with pytest.raises(ValueError):
        ModelTracer(nn.Linear(2, 2), **bad)
