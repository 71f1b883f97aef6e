"""The probe protocol: a probe of one's own plugs into the tracer and sees the documented lifecycle."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dsnotebook import ModelTracer
from dsnotebook.core.probe import Probe, StepBatch


class Recorder(Probe):
    """Logs every call it gets, into a log shared with another probe (to check the order)."""

    def __init__(self, tag: str, log: list, every: int = 2) -> None:
        self.tag, self.log, self.every = tag, log, every
        self.handles = []

    def attach(self, ctx):
        super().attach(ctx)
        self.log.append((self.tag, "attach", ctx.step()))

    def wants(self, step):
        return step % self.every == 0

    def before_forward(self, step):
        self.log.append((self.tag, "before_forward", step))
        if self.wants(step) and not self.handles:
            model = self.ctx.model()
            self.handles.append(model.register_forward_hook(lambda *a: self.log.append((self.tag, "forward", step))))

    def after_forward(self, step):
        self.log.append((self.tag, "after_forward", step))
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def pre_step(self, batch: StepBatch):
        self.log.append((self.tag, "pre_step", batch.step, len(batch.grad_ids), batch.first))

    def post_step(self, batch: StepBatch):
        self.log.append((self.tag, "post_step", batch.step))

    def detach(self):
        self.log.append((self.tag, "detach", None))
        for h in self.handles:
            h.remove()

    @property
    def hook_count(self):
        return len(self.handles)


def _train(model, opt, steps):
    for i in range(steps):
        opt.zero_grad()
        F.mse_loss(model(torch.randn(4, 3)), torch.zeros(4, 2)).backward()
        opt.step()


def test_lifecycle_order_and_schedule():
    log: list = []
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    a, b = Recorder("a", log), Recorder("b", log)
    tracer = ModelTracer(model, opt, probes=[a, b], capture_graph=False, nonfinite="off")
    with tracer:
        _train(model, opt, 3)
    calls = [(t, what) for t, what, *_ in log]
    assert calls[:4] == [("a", "attach"), ("b", "attach"), ("a", "before_forward"), ("b", "before_forward")]
    # one step: forward (sampled steps only), then after_forward in reverse, pre_step in order, post_step in reverse
    step0 = calls[4:11]
    assert step0 == [("a", "forward"), ("b", "forward"), ("b", "after_forward"), ("a", "after_forward"),
                     ("a", "pre_step"), ("b", "pre_step"), ("b", "post_step")]
    assert ("a", "forward", 1) not in log and ("a", "forward", 2) in log  # every=2: hooks on steps 0 and 2 only
    pre = [e for e in log if e[1] == "pre_step"]
    assert [e[2] for e in pre if e[0] == "a"] == [0, 1, 2] and all(e[3] == 2 and e[4] for e in pre)
    assert calls[-2:] == [("b", "detach"), ("a", "detach")]
    assert tracer.module_hook_count == 0


class Broken(Probe):
    def pre_step(self, batch):
        raise RuntimeError("probe bug")

    def before_forward(self, step):
        raise ValueError("another probe bug")


def test_a_broken_probe_never_breaks_training():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(RuntimeWarning, match="probe bug"):
        with ModelTracer(model, opt, probes=[Broken()]) as tracer:
            _train(model, opt, 2)
    kinds = [e["detail"] for e in tracer.run.events if e["kind"] == "warning"]
    assert any("RuntimeError: probe bug" in k for k in kinds) and any("ValueError" in k for k in kinds)
    assert tracer.to_dataframe("grads").step.nunique() == 2  # the other probes went on


def test_probes_must_be_probes():
    with pytest.raises(TypeError, match="Probe"):
        ModelTracer(nn.Linear(3, 2), probes=[object()])
