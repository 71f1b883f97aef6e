"""The tracer's CallsProbe: calls tied to training steps, the Run's calls table, its bounds."""
from __future__ import annotations

import torch
import torch.nn.functional as F

import dsnotebook
from dsnotebook import ModelTracer, Run
from dsnotebook.calls.probe import CallsProbe

trace = dsnotebook.trace


def _setup():
    torch.manual_seed(0)
    m = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    m.forward = trace(m.forward, name="fwd")
    return m, opt


def _step(m, opt):
    opt.zero_grad()
    F.mse_loss(m(torch.randn(4, 3)), torch.zeros(4, 2)).backward()
    opt.step()


def test_calls_carry_the_step_they_ran_in_and_reach_the_run_directory(tmp_path):
    m, opt = _setup()

    @trace
    def whole_step():
        _step(m, opt)

    with ModelTracer(m, opt, log_dir=tmp_path / "run") as tracer:
        for _ in range(4):
            whole_step()
    df = tracer.to_dataframe("calls")
    fwd = df[df["name"] == "fwd"]
    assert fwd["step"].tolist() == [0, 1, 2, 3]
    steps = df[df["name"].str.endswith("whole_step")]["step"].tolist()
    assert steps == [0, 1, 2, 3], "a call spanning the optimizer keeps the step it started in"
    assert trace.calls().empty, "nothing went to the default recorder while the tracer was attached"
    again = Run.open(tmp_path / "run").to_dataframe("calls")
    assert sorted(again["step"].tolist()) == sorted(df["step"].tolist())
    assert "calls_overhead" in tracer.run.meta


def test_manual_steps_and_the_default_recorder_after_detach():
    m, opt = _setup()
    with ModelTracer(m) as tracer:
        for _ in range(3):
            m(torch.randn(2, 3)).sum().backward()
            tracer.step()
    assert tracer.to_dataframe("calls")["step"].tolist() == [0, 1, 2]
    m(torch.randn(2, 3))
    assert len(trace.calls()) == 1 and trace.calls()["step"].isna().all()


def test_the_last_attached_tracer_gets_the_calls():
    m, opt = _setup()
    other = torch.nn.Linear(1, 1)
    with ModelTracer(m, opt) as first:
        with ModelTracer(other) as second:
            m(torch.randn(2, 3))
        m(torch.randn(2, 3))
    assert len(second.to_dataframe("calls")) == 1 and len(first.to_dataframe("calls")) == 1


def test_calls_per_step_are_bounded_with_a_warning():
    m, opt = _setup()
    probe = CallsProbe(max_calls_per_step=5)

    @trace
    def tiny():
        return 1

    with ModelTracer(m, opt, probes=[probe]) as tracer:
        assert [p for p in tracer.probes if isinstance(p, CallsProbe)] == [probe], "it replaces the default one"
        for _ in range(12):
            tiny()
        _step(m, opt)
    df = tracer.to_dataframe("calls")
    assert len(df[df["name"].str.endswith("tiny")]) <= 5 and probe.skipped >= 7
    assert any("more than 5 traced calls" in e["detail"] for e in tracer.run.events)
