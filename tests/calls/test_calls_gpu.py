"""GPU: device time from real CUDA events (read once per step), debug statistics through the
tracer's CUDA backend, training unchanged."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import dsnotebook
from dsnotebook import ModelTracer
from dsnotebook.calls.device import DEVICE

from helpers import plain_grad_stats

pytestmark = pytest.mark.gpu

if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU: torch.cuda.is_available() is False", allow_module_level=True)

DEV = torch.device("cuda")
trace = dsnotebook.trace


def test_device_time_of_traced_calls_on_cuda():
    from dsnotebook.calls import wrap

    wrap._root_countdown[0] = 0
    a = torch.randn(2048, 2048, device=DEV)

    @trace
    def mm(x):
        return x @ x

    @trace
    def two(x):
        return mm(mm(x))

    for _ in range(3):
        two(a)
    df = trace.calls()
    assert df["device_s"].notna().all() and (df["device_s"] > 0).all()
    for cid, row in df.set_index("call").iterrows():
        kids = df[df["parent"] == cid]
        if len(kids):
            assert kids["device_s"].sum() <= row["device_s"] * 1.05 + 1e-5
    flops_s = 2 * 2048**3 / df[df["name"].str.endswith("mm")]["device_s"].median()
    # measured on the device: neither a host launch time (absurdly fast) nor a per-call sync stall
    assert 1e11 < flops_s < 1e15, flops_s
    assert DEVICE.free == DEVICE.size
    assert trace.overhead()["device_events"] is True


def test_debug_statistics_on_cuda_equal_a_reference():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.GELU(), torch.nn.Linear(64, 10)).to(DEV)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.forward = trace(model.forward, level="debug", name="net")
    x = torch.randn(32, 64, device=DEV)
    x[0, 0] = float("nan")
    with ModelTracer(model, opt) as tracer:
        for _ in range(3):
            opt.zero_grad()
            out = model(x)
            F.cross_entropy(torch.nan_to_num(out), torch.zeros(32, dtype=torch.long, device=DEV)).backward()
            opt.step()
    df = tracer.to_dataframe("calls")
    row = df[df["name"] == "net"].iloc[-1]
    ref = plain_grad_stats(x.cpu())
    got = row["inputs"][0]
    for f in ("mean", "std", "absmax", "nonfinite", "zero_frac", "norm"):
        a, b = got[f], ref[f]
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-5), f
    assert row["device_s"] > 0 and set(df["step"]) == {0, 1, 2}


def test_training_unchanged_on_cuda():
    def run(traced):
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).to(DEV)
        if traced:
            m.forward = trace(m.forward, level="trace", sample_every=2)
        opt = torch.optim.Adam(m.parameters())
        g = torch.Generator(device=DEV).manual_seed(1)
        losses = []
        for _ in range(5):
            x = torch.randn(16, 32, device=DEV, generator=g)
            opt.zero_grad()
            loss = m(x).pow(2).mean()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    assert run(True) == run(False)
