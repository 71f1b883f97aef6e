"""Step phases charge each piece of work to its owner: dsnotebook's own work to "tracer",
every optimizer of a step to "opt".

Delays are made with sleeps far larger than the work around them, and the assertions
use wide margins (a sleep is a lower bound; a phase that should not hold it stays below
half of it), so they do not depend on the machine's speed.
"""
from __future__ import annotations

import time

import pytest
import torch
from torch import nn

import dsnotebook.perf.timing as timing
from dsnotebook import ModelTracer
from dsnotebook.advisor import advise
from dsnotebook.core.probe import Probe
from dsnotebook.perf import measures
from dsnotebook.perf.steps import OptimizerCall, StepMarks, phase_rows
from fakes import CPU

DELAY = 0.1


def phases(tr: ModelTracer):
    df = tr.to_dataframe("timings")
    steps = df[df["module"] == "(step)"]
    return steps.pivot(index="step", columns="phase", values="seconds"), steps.pivot(index="step", columns="phase",
                                                                                   values="calls")


def many_modules(n: int = 24) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.Tanh()) for _ in range(n)])


class SlowStep(torch.optim.Optimizer):
    """Plain SGD whose step() also sleeps: an optimizer whose time must show in "opt"."""

    def __init__(self, params, lr: float = 0.01) -> None:
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        time.sleep(DELAY)
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-g["lr"])


def test_hook_installation_and_settings_probe_are_charged_to_the_tracer_not_to_data(monkeypatch):
    """A loop that loads nothing shows no data time, even when installing the per-step hooks and
    the first step's settings probe are slow; that time is dsnotebook's ("tracer")."""
    install = timing.hook_modules

    def slow_install(*args, **kwargs):
        time.sleep(DELAY)
        return install(*args, **kwargs)

    note = timing.TimingProbe._note_settings

    def slow_note(self, model):
        time.sleep(DELAY)
        return note(self, model)

    monkeypatch.setattr(timing, "hook_modules", slow_install)
    monkeypatch.setattr(timing.TimingProbe, "_note_settings", slow_note)
    model = many_modules()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    batches = [torch.randn(4, 8) for _ in range(5)]  # nothing to load inside the loop
    with ModelTracer(model, opt, profile_every=1) as tr:
        for x in batches:
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    sec, _ = phases(tr)
    assert (sec["data"] < DELAY / 2).all(), sec
    assert sec["tracer"].iloc[0] >= 2 * DELAY  # the settings probe, then the next step's hooks
    assert (sec["tracer"].iloc[1:-1] >= DELAY).all(), sec  # the next step's hooks (the last step has none)
    ph = measures.phases(tr.run)
    assert ph["data"] < DELAY / 2 and ph["tracer"] >= DELAY
    assert "data_loader" not in {s.rule for s in advise(tr.run, CPU)}


class SlowRootHooks(Probe):
    """Another probe's forward hooks on the root module, slow: dsnotebook's work around the forward."""

    name = "slow-root"

    def attach(self, ctx) -> None:  # noqa: ANN001
        super().attach(ctx)
        model = ctx.model()
        self.handles = [model.register_forward_pre_hook(lambda *_: time.sleep(DELAY)),
                        model.register_forward_hook(lambda *_: time.sleep(DELAY))]

    def detach(self) -> None:
        for h in self.handles:
            h.remove()


def test_other_probes_root_hooks_are_tracer_not_data_or_forward():
    model = many_modules(4)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    batches = [torch.randn(4, 8) for _ in range(4)]
    with ModelTracer(model, opt, profile_every=1, probes=[SlowRootHooks()]) as tr:
        for x in batches:
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    sec, _ = phases(tr)
    assert (sec["data"] < DELAY / 2).all() and (sec["fwd"] < DELAY / 2).all(), sec
    assert (sec["other"] < DELAY / 2).all() and (sec["tracer"] >= 2 * DELAY).all(), sec


@pytest.mark.parametrize("given", [True, False], ids=["optimizers-given", "any-optimizer"])
def test_every_optimizer_of_the_step_is_in_opt(given):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    fast = torch.optim.SGD(model[0].parameters(), lr=0.01)
    slow = SlowStep(model[2].parameters())
    with ModelTracer(model, [fast, slow] if given else None, profile_every=1) as tr:
        for _ in range(4):
            fast.zero_grad()
            slow.zero_grad()
            model(torch.randn(4, 8)).pow(2).mean().backward()
            fast.step()
            slow.step()
    sec, calls = phases(tr)
    assert (sec["opt"] >= DELAY).all() and (calls["opt"] == 2).all(), sec
    assert (sec["other"] < DELAY / 2).all(), sec


def test_a_pass_between_two_optimizers_stays_in_its_step():
    """GAN-style: forward/backward, first optimizer, forward/backward, second (slow) optimizer.
    The slow update is this step's "opt", once; the next step does not start at the first optimizer."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    first = torch.optim.SGD(model[0].parameters(), lr=0.01)
    second = SlowStep(model[2].parameters())
    with ModelTracer(model, [first, second], profile_every=1) as tr:
        for _ in range(4):
            first.zero_grad()
            model(torch.randn(4, 8)).pow(2).mean().backward()
            first.step()
            second.zero_grad()
            model(torch.randn(4, 8)).pow(2).mean().backward()
            second.step()
    sec, calls = phases(tr)
    assert (sec["opt"] >= DELAY).all() and (sec["other"] < DELAY / 2).all(), sec
    assert (sec["step"] < 1.5 * DELAY + sec["tracer"]).all(), sec  # one slow update per step, not two
    assert (calls["fwd"] == 2).all() and (calls["bwd"] == 2).all() and (calls["opt"] == 2).all(), calls
    assert tr.module_hook_count == 0


class SlowBeforeLaterOptimizers(Probe):
    """A probe whose pre-step work is slow for every optimizer but the first of a step."""

    name = "slow"

    def pre_step(self, batch) -> None:  # noqa: ANN001
        if not batch.first:
            time.sleep(2 * DELAY)


@pytest.mark.parametrize("given", [True, False], ids=["optimizers-given", "any-optimizer"])
def test_dsnotebook_work_between_two_optimizers_is_tracer_not_opt(given):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    a = torch.optim.SGD(model[0].parameters(), lr=0.01)
    b = torch.optim.SGD(model[2].parameters(), lr=0.01)
    with ModelTracer(model, [a, b] if given else None, profile_every=1, probes=[SlowBeforeLaterOptimizers()]) as tr:
        for _ in range(3):
            a.zero_grad()
            b.zero_grad()
            model(torch.randn(4, 8)).pow(2).mean().backward()
            a.step()
            b.step()
    sec, _ = phases(tr)
    assert (sec["opt"] < DELAY).all() and (sec["other"] < DELAY).all(), sec
    assert (sec["tracer"] >= 2 * DELAY).all(), sec


def test_phase_rows_split_one_step_by_its_marks():
    """The split's rules on hand-made marks (seconds)."""
    st = StepMarks(3, begin=0.0)
    st.own = [(0.5, 1.5, True), (7.0, 7.5, False)]  # probes' root hooks before the first forward, after a later one
    st.root_fwd = [(2.0, 4.0), (11.0, 12.0)]
    st.root_bwd = [[4.0, 7.0], [12.0, 13.0]]
    st.bwd_done = 8.0
    st.opts = [OptimizerCall(entry=None, start=9.0, end=10.0, after=10.5),
               OptimizerCall(entry=13.5, start=14.0, end=16.0, after=17.0)]
    st.end = 17.0
    rows = {r["phase"]: r for r in phase_rows(st, lambda a, b: b - a)}
    sec = {k: r["seconds"] for k, r in rows.items()}
    assert sec == {"data": 1.0, "fwd": 3.0, "bwd": 4.0, "opt": 3.0, "comm": 0.0,
                   "tracer": 1.5 + 1.0 + 0.5 + 0.5 + 1.0, "other": 17.0 - 1.0 - 3.0 - 4.0 - 3.0 - 4.5, "step": 17.0}
    assert rows["opt"]["calls"] == 2 and rows["fwd"]["calls"] == 2
    by_hand = StepMarks(0, begin=0.0, root_fwd=[(1.0, 2.0)], root_bwd=[[2.0, 3.0]], bwd_done=4.0, end=6.0)
    sec = {r["phase"]: r["seconds"] for r in phase_rows(by_hand, lambda a, b: b - a)}
    assert sec["opt"] == 0.0 and sec["tracer"] == 2.0 and sec["other"] == 1.0  # tracer.step(): no optimizer hooks
