"""perf.spans: pooled device events, flat span logs, and the timing probe reading steps without a sync."""
import torch
import torch.nn.functional as F
from torch import nn

from dsnotebook import ModelTracer
from collections import defaultdict

from dsnotebook.perf.spans import MAX_UNRESOLVED, MarkClock, SpanLog, first_grad_tensor
from dsnotebook.perf.timing import TimingProbe


class FakeEvent:
    """Stands in for torch.cuda.Event: records an increasing tick; 'reached' when the device got there."""

    tick = 0
    reached = 10**9

    def __init__(self, enable_timing=True):
        self.t = None

    def record(self):
        FakeEvent.tick += 1
        self.t = FakeEvent.tick

    def query(self):
        return self.t is not None and self.t <= FakeEvent.reached

    def elapsed_time(self, other):
        return float(other.t - self.t)


def _event_clock():
    clock = MarkClock("cpu")
    clock.mode, clock._event_cls = "events", FakeEvent  # a device clock without a device
    return clock


def test_events_come_from_a_pool_once_their_step_is_read():
    clock = _event_clock()
    marks = [clock.mark() for _ in range(5)]
    assert clock.created == 5
    clock.release_before(marks[3])  # marks 0-2 were read; mark 3 is also the next step's first mark
    again = [clock.mark() for _ in range(3)]
    assert clock.created == 5 and {id(m) for m in again} == {id(m) for m in marks[:3]}
    clock.release_before(object())  # not one of ours: nothing happens
    clock.mark()
    assert clock.created == 6


def test_done_never_waits():
    clock = _event_clock()
    m = clock.mark()
    FakeEvent.reached = m.t - 1
    assert not clock.done(m)
    FakeEvent.reached = m.t
    assert clock.done(m) and MarkClock("cpu").done(1.0)
    FakeEvent.reached = 10**9


def test_one_gradient_mark_per_tensor_shared_by_neighbouring_modules():
    """a -> A -> b -> B -> c: B's backward runs from c's gradient to b's, A's from b's to a's."""
    log, clock = SpanLog(), MarkClock("cpu")
    a = torch.ones(2, requires_grad=True)
    b = a * 2
    c = b * 3
    g_c, h_c = log.grad_mark(c, clock)
    g_b, h_b = log.grad_mark(b, clock)
    g_b2, h_b2 = log.grad_mark(b, clock)
    g_a, h_a = log.grad_mark(a, clock)
    assert g_b2 is g_b and h_a is not None and (h_b, h_b2, h_c) == (None, None, None)  # only a leaf keeps a handle
    log.bwd_names += ["B", "A"]
    log.bwd_out += [g_c, g_b]
    log.bwd_in += [g_b, g_a]
    c.sum().backward(retain_graph=True)
    c.sum().backward()  # a second backward pass through the same graph: a second span each
    fwd, bwd = defaultdict(list), defaultdict(list)
    log.into(fwd, bwd)
    assert [len(bwd["B"]), len(bwd["A"])] == [2, 2]
    for name in "AB":
        assert all(x <= y for x, y in bwd[name])
    assert bwd["B"][0][1] == bwd["A"][0][0]  # the shared moment: b's gradient
    h_a.remove()
    log.close()
    c2 = a * 4
    g, _ = log.grad_mark(c2, clock)
    log.close()
    c2.sum().backward()  # after its step: the hook does nothing
    assert g.count == 0 and g.tensor is None


def test_first_grad_tensor():
    a, b = torch.ones(2), torch.ones(2, requires_grad=True)
    assert first_grad_tensor((a, b)) is b and first_grad_tensor((b,)) is b and first_grad_tensor(b) is b
    assert first_grad_tensor({"x": a, "y": [b]}) is b and first_grad_tensor((a,)) is None and first_grad_tensor(3) is None


def _train(model, opt, n):
    for _ in range(n):
        opt.zero_grad()
        F.cross_entropy(model(torch.randn(4, 8)), torch.randint(0, 3, (4,))).backward()
        opt.step()


def test_steps_are_read_when_their_events_are_done_and_all_at_detach():
    """No synchronisation per sampled step: a step is read once its last event is done, or when too
    many wait, and every one at detach (or flush)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tracer = ModelTracer(model, opt, profile_every=1, capture_graph=False)
    with tracer:
        probe = next(p for p in tracer.probes if isinstance(p, TimingProbe))
        probe._clock.done = lambda mark: False  # the device is behind: nothing can be read without waiting
        rows = tracer.run.records.tables["timings"]  # (to_dataframe flushes: it would read them all)
        _train(model, opt, 3)
        assert not rows
        _train(model, opt, MAX_UNRESOLVED + 1)  # too many waiting: the oldest are read (one synchronisation)
        seen = {r["step"] for r in rows}
        assert seen and max(seen) < 3 + MAX_UNRESOLVED
    steps = tracer.to_dataframe("timings").step
    assert sorted(set(steps)) == list(range(4 + MAX_UNRESOLVED))
    mem = tracer.to_dataframe("memory")
    assert sorted(set(mem.step)) == list(range(4 + MAX_UNRESOLVED)) and (mem.groupby("step").kind.nunique() >= 5).all()


def test_no_gradient_hooks_left_on_parameters_or_inputs():
    """Backward-timing hooks on graph tensors die with the graph; those on leaves are removed."""
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(4, 8, requires_grad=True)  # a leaf input (the first layer's backward ends at it)
    with ModelTracer(model, opt, profile_every=1, capture_graph=False) as tracer:
        for _ in range(2):
            opt.zero_grad()
            model(x).sum().backward()
            opt.step()
            assert not x._backward_hooks and all(not p._backward_hooks for p in model.parameters())
    bwd = tracer.to_dataframe("timings").query("phase == 'bwd'")
    assert {"0", "1", "2"} <= set(bwd.module) and (bwd.seconds >= 0).all()
