"""The "debug" level: inputs and outputs (shapes, dtypes, devices) and their statistics."""
from __future__ import annotations

import math

import pytest
import torch

import dsnotebook
from dsnotebook import ModelTracer

from helpers import plain_grad_stats

trace = dsnotebook.trace
FIELDS = ("norm", "mean", "std", "absmax", "nonfinite", "zero_frac")


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-6, abs=1e-12)


def _check(summary: dict, t: torch.Tensor) -> None:
    ref = plain_grad_stats(t)
    assert summary["shape"] == list(t.shape) and summary["dtype"] == str(t.dtype).replace("torch.", "")
    assert summary["device"] == str(t.device)
    for f in FIELDS:
        assert _close(summary[f], ref[f]), (summary["name"], f, summary[f], ref[f])


@trace(level="debug")
def fuse(x, mask, scale=1.0, *, extra=None):
    return {"y": x * scale, "parts": (x.sum(), mask.long())}


def test_debug_statistics_equal_a_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 33, generator=g) * 3
    x[0, 0], x[1, 1], x[2, 2] = float("nan"), float("inf"), 0.0
    mask = torch.rand(64, generator=g) > 0.5
    extra = [torch.linspace(-1, 1, 7, dtype=torch.float64)]
    out = fuse(x, mask, 2.0, extra=extra)
    row = trace.calls().iloc[-1]
    ins = {d["name"]: d for d in row["inputs"]}
    assert set(ins) == {"x", "mask", "extra[0]"}
    _check(ins["x"], x)
    _check(ins["extra[0]"], extra[0])
    assert ins["mask"]["dtype"] == "bool" and "mean" not in ins["mask"], "no statistics of non-float tensors"
    outs = {d["name"]: d for d in row["outputs"]}
    assert set(outs) == {"out.y", "out.parts[0]", "out.parts[1]"}
    _check(outs["out.y"], out["y"])
    _check(outs["out.parts[0]"], out["parts"][0])
    assert outs["out.parts[1]"]["dtype"] == "int64"


def test_one_batched_backend_call_per_call(monkeypatch):
    from dsnotebook.calls.recorder import DEFAULT

    seen = []
    real = DEFAULT.stats
    monkeypatch.setattr(DEFAULT, "stats", lambda ts: seen.append(len(ts)) or real(ts))
    fuse(torch.randn(4, 4), torch.ones(4, dtype=torch.bool), extra=[torch.ones(2), torch.zeros(3)])
    assert seen == [5], "x, extra[0], extra[1], out.y, out.parts[0] in one call"


def test_an_input_modified_in_place_is_marked():
    @trace(level="debug")
    def relu_(x):
        return x.clamp_(min=0)

    x = torch.tensor([-1.0, 2.0])
    relu_(x)
    d = trace.calls().iloc[-1]["inputs"][0]
    assert d["modified"] is True and d["mean"] == pytest.approx(1.0)


def test_debug_under_no_grad_inference_mode_and_autograd():
    @trace(level="debug")
    def f(x):
        return (x * 2).sum()

    x = torch.randn(5, requires_grad=True)
    with torch.no_grad():
        f(x)
    with torch.inference_mode():
        f(torch.ones(3))
    y = f(x)
    y.backward()
    assert torch.equal(x.grad, torch.full((5,), 2.0)), "autograd untouched"
    rows = trace.calls()
    assert len(rows) == 3 and rows["error"].isna().all()
    assert rows.iloc[1]["outputs"][0]["mean"] == pytest.approx(6.0)


def test_debug_statistics_through_the_tracers_backend():
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    wrapped = trace(model.forward, level="debug", name="model")
    calls = []
    with ModelTracer(model, opt, backend="torch") as tracer:
        real = tracer.probes[[p.name for p in tracer.probes].index("calls")].stats
        probe = tracer.probes[[p.name for p in tracer.probes].index("calls")]
        probe.stats = lambda ts: calls.append(len(ts)) or real(ts)
        x = torch.randn(3, 6)
        out = wrapped(x)
        out.sum().backward()
        opt.step()
    df = tracer.to_dataframe("calls")
    root = df[df["name"] == "model"].iloc[0]
    _check(root["inputs"][0], x)
    _check(root["outputs"][0], out.detach())
    assert calls and calls[-1] == 2, "the tracer's backend got the root call's tensors in one call"
    mods = df[df["kind"] == "module"]
    assert set(mods["name"]) == {"0", "1", "2"}, "modules named by their path in the traced model"
    assert mods.iloc[0]["outputs"][0]["shape"] == [3, 4]
