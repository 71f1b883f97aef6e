"""Module calls inside traced calls, torch ops at "trace", and what is left behind: nothing."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as torch_module

import dsnotebook
from dsnotebook import ModelTracer
from dsnotebook.calls.modules import SKIP_AFTER_EMPTY

from calls_helpers import parent_of

trace = dsnotebook.trace


class Fusion(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3, padding=1)
        self.mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4))
        self.gate = nn.Linear(8, 2)

    @trace
    def forward(self, x):  # x: [batch, 4, length]
        a = self.conv(x).mean(-1)
        b = self.mlp(x.mean(-1))
        w = torch.softmax(self.gate(torch.cat([a, b], -1)), -1)
        return w[:, :1] * a + w[:, 1:] * b


def _no_global_hooks() -> bool:
    return not torch_module._global_forward_hooks and not torch_module._global_forward_pre_hooks


def test_modules_inside_a_traced_call_nest_under_it():
    m = Fusion()
    m(torch.randn(2, 4, 5))
    df = dsnotebook.trace.calls()
    mods = df[df["kind"] == "module"]
    assert set(mods["name"]) == {"conv", "mlp", "mlp.0", "mlp.1", "mlp.2", "gate"}
    assert parent_of(df, "mlp.1") == "mlp" and parent_of(df, "conv") == "Fusion.forward"
    assert _no_global_hooks() and dsnotebook.trace.active()["module_hooks"] == 0


def test_module_hooks_are_skipped_after_a_call_without_modules_and_forced_with_true():
    @trace
    def plain(x):
        return x + 1

    lin = nn.Linear(2, 2)

    @trace(modules=True)
    def always(x, use):
        return lin(x) if use else x

    @trace(modules=False)
    def never(x):
        return lin(x)

    for _ in range(3):
        plain(1)
    from dsnotebook.calls.wrap import _info_function  # noqa: F401 - the site is reachable through the closure

    site = next(c.cell_contents for c in plain.__closure__ if type(c.cell_contents).__name__ == "Site")
    assert site.skip_hooks == SKIP_AFTER_EMPTY - 2
    always(torch.ones(2), False)
    always(torch.ones(2), True)
    never(torch.ones(2))
    df = dsnotebook.trace.calls()
    mods = df[df["kind"] == "module"]
    assert len(mods) == 1 and parent_of(df, mods["name"].iloc[0]).endswith("always")


def test_hooks_and_modes_are_gone_after_an_exception():
    class Bad(nn.Module):
        def forward(self, x):
            raise RuntimeError("bad module")

    bad = Bad()

    @trace(level="trace", sample_every=1)
    def step(x):
        return bad(torch.relu(x))

    with pytest.raises(RuntimeError, match="bad module"):
        step(torch.ones(2))
    assert _no_global_hooks() and torch._C._len_torch_function_stack() == 0
    df = dsnotebook.trace.calls()
    assert set(df["name"]) >= {"Bad", "torch.relu"}
    assert df[df["name"] == "Bad"]["error"].iloc[0] == "RuntimeError: bad module"
    assert df[df["name"].str.endswith("step")]["error"].iloc[0] == "RuntimeError: bad module"
    assert dsnotebook.trace.active() == {"module_hooks": 0, "op_modes": 0, "sinks": 0}


def test_trace_level_records_ops_on_sampled_calls_only():
    @trace(level="trace", sample_every=3)
    def f(x, w):
        y = F.linear(x, w).relu()
        return y.sum(), y.shape, y.dim()

    x, w = torch.randn(4, 3), torch.randn(5, 3)
    for _ in range(6):
        f(x, w)
    df = dsnotebook.trace.calls()
    roots = df[df["parent"].isna()].sort_values("call")
    ops = df[df["kind"] == "op"]
    per_call = [int((ops["parent"] == c).sum()) for c in roots["call"]]
    assert per_call == [3, 0, 0, 3, 0, 0], "calls 1 and 4 sampled: linear, relu, sum (no shape/dim queries)"
    assert list(ops["name"].iloc[:3]) == ["F.linear", "Tensor.relu", "Tensor.sum"]
    assert ops.iloc[0]["outputs"][0]["shape"] == [4, 5]
    assert set(roots["level"]) == {"trace"}


def test_ops_of_a_module_nest_under_the_module():
    m = nn.Sequential(nn.Linear(3, 3), nn.Tanh())

    @trace(level="trace", sample_every=1)
    def run(x):
        return m(x) * 2

    run(torch.randn(2, 3))
    df = dsnotebook.trace.calls()
    assert parent_of(df, "F.linear") == "Sequential.0" and parent_of(df, "Tensor.mul").endswith("run")
    assert parent_of(df, "Sequential.0") == "Sequential"


def test_under_no_grad_and_inference_mode():
    m = Fusion()
    with torch.no_grad():
        a = m(torch.ones(1, 4, 3))
    with torch.inference_mode():
        b = m(torch.ones(1, 4, 3))
    assert torch.equal(a, b)
    assert (dsnotebook.trace.calls()["name"] == "Fusion.forward").sum() == 2


def _train(level: str | None, steps: int = 4, tracer: bool = False) -> list[float]:
    torch.manual_seed(0)
    m = Fusion()
    if level is not None:
        m.forward = trace(m.forward.__wrapped__.__get__(m), level=level, sample_every=2)
    else:
        m.forward = Fusion.forward.__wrapped__.__get__(m)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    losses = []

    def loop():
        for _ in range(steps):
            x, y = torch.randn(8, 4, 6, generator=g), torch.randn(8, 4, generator=g)
            opt.zero_grad()
            loss = F.mse_loss(m(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())

    if tracer:
        with ModelTracer(m, opt):
            loop()
    else:
        loop()
    return losses


def test_training_is_unchanged_with_tracing_on():
    base = _train(None)
    for level in ("info", "debug", "trace"):
        assert _train(level) == base, level
    assert _train("debug", tracer=True) == base
    assert dsnotebook.trace.active()["module_hooks"] == 0


def _graph_ops(level: str | None) -> list[str]:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    if level is not None:
        m.forward = trace(m.forward, level=level, name="net")
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    from dsnotebook.calls import wrap
    from dsnotebook.calls.state import OVERHEAD

    OVERHEAD.ready = OVERHEAD.ops_ready = False  # calibration runs inside the captured forward
    wrap._root_countdown[0] = 0
    with ModelTracer(m, opt, capture_graph=True) as tracer:
        opt.zero_grad()
        m(torch.randn(3, 4)).sum().backward()
        opt.step()
    return sorted(n["label"] for n in tracer.run.graph["nodes"])


def test_the_graph_capture_does_not_see_tracings_own_work():
    from dsnotebook.calls.state import OVERHEAD

    plain = _graph_ops(None)
    assert _graph_ops("debug") == plain and _graph_ops("trace") == plain
    assert OVERHEAD.ready and OVERHEAD.ops_ready, "calibrated inside the captured forwards"
