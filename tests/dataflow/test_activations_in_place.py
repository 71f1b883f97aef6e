"""Activation statistics of outputs that a later in-place op changes (ReLU(inplace=True) after a batch
norm, a rectifier's output scaled in place): dropped from the sample that finds them, summarised in the
hook from the next one on, never misreported as the in-place op's values."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dsnotebook import ModelTracer
from activation_refs import _batch, _plain, _reference_outputs, sampled_run


class InplaceNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.relu = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True)
        self.fc = nn.Linear(4 * 64, 10)

    def forward(self, x):
        return self.fc(self.relu(self.bn(self.conv(x))).flatten(1))


def test_outputs_changed_in_place_later_are_not_misreported():
    torch.manual_seed(0)
    model = InplaceNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with ModelTracer(model, opt, activations_every=1) as tracer:
        for i in range(3):
            x = _batch(i)[0]
            if i == 2:
                ref = _reference_outputs(model, x)["bn"]
            opt.zero_grad()
            F.cross_entropy(model(x), _batch(i)[1]).backward()
            opt.step()
    df = tracer.to_dataframe("activations")
    assert "bn" not in set(df[df.step == 0].module)  # its output was overwritten by ReLU(inplace) before the step end
    row = df[(df.step == 2) & (df.module == "bn")].iloc[0]  # reduced at hook time from then on
    np.testing.assert_allclose(row["mean"], _plain(ref)["mean"], atol=1e-6)
    assert row.zero_frac == 0.0 and row["mean"] == pytest.approx(0.0, abs=1e-2)  # batch norm, not ReLU


class HardtanhNet(nn.Module):
    """Unit 0 always exactly 0; unit 1 at most 0, negative for some inputs (its maximum is 0, yet it is alive:
    Hardtanh can go negative); unit 2 mixed.  The parent may scale the output in place, so that from the second
    sample on it is reduced at hook time."""

    def __init__(self, in_place: bool):
        super().__init__()
        self.fc, self.act, self.head, self.in_place = nn.Linear(4, 3), nn.Hardtanh(-1.0, 1.0), nn.Linear(3, 2), in_place
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.weight[1, 0] = -1.0
            self.fc.weight[2].fill_(1.0)
            self.fc.bias.zero_()

    def forward(self, x):
        h = self.act(self.fc(x))
        if self.in_place:
            h.mul_(1.0)
        return self.head(h)


@pytest.mark.parametrize("in_place", [False, True])
def test_dead_units_of_a_rectifier_that_goes_negative(in_place):
    """Hardtanh: a channel is silent only when its maximum and minimum are both 0 (a maximum of 0
    alone is a negative, live channel); the copied output keeps the original's rectifier kind."""
    torch.manual_seed(0)
    model = HardtanhNet(in_place)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with ModelTracer(model, opt, activations_every=1) as tracer:
        for i in range(3):
            opt.zero_grad()
            x = torch.randn(8, 4)
            x[:, 0] = x[:, 0].clamp(min=0.0)
            x[0, 0], x[1, 0] = 0.0, 1.0
            model(x).sum().backward()
            opt.step()
    df = tracer.to_dataframe("activations")
    rows = df[df.module == "act"]
    assert sorted(rows.step) == ([1, 2] if in_place else [0, 1, 2])  # in place: dropped once, reduced after
    for _, row in rows.iterrows():
        assert row.units == 3 and list(row.dead_indices) == [0]


def test_in_place_relu_after_batch_norm_reports_its_own_values():
    """Regression: ReLU(inplace=True) returns its input object with new values; it was reported as an alias
    of the batch norm's (pre-ReLU) output: zero fraction 0, mean of the batch norm."""
    torch.manual_seed(0)
    model = InplaceNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with ModelTracer(model, opt, activations_every=1) as tracer:
        for i in range(3):
            opt.zero_grad()
            F.cross_entropy(model(_batch(i)[0]), _batch(i)[1]).backward()
            opt.step()
    df = tracer.to_dataframe("activations").set_index(["step", "module"])
    for step in range(3):
        relu = df.loc[(step, "relu")]
        assert 0.3 < relu.zero_frac < 0.7 and relu["mean"] > 0.2 and relu.units == 4
    assert df.loc[(2, "bn")].zero_frac == 0.0


class LaterInPlace(nn.Module):
    """Outputs that a later in-place op changes, of every kind the sampler reduces at hook time: a 3-D batch
    norm (Conv1d layout) before ReLU(inplace), a Hardsigmoid output (a rectifier that cannot go negative)
    scaled in place afterwards (dead channel 2),
    and an output with NaN, +Inf, -Inf and zeros that is then multiplied in place."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.relu = nn.Conv1d(2, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU(inplace=True)
        self.act = nn.Hardsigmoid()
        self.poison = Poison()
        self.fc = nn.Linear(4 * 10, 3)
        with torch.no_grad():
            self.conv.bias[2] = -50.0

    def forward(self, x):
        h = self.relu(self.bn(self.conv(x)))
        r = self.act(self.conv(x))
        r.mul_(1.0)
        p = self.poison(h + r)
        p.mul_(2.0)
        return self.fc(torch.nan_to_num(p, 0.0, 0.0, 0.0).flatten(1))


class Poison(nn.Module):
    def forward(self, x):
        y = x.clone()
        y[0, 0, 0], y[1, 1, 1], y[2, 2, 2], y[3, 3] = float("nan"), float("inf"), float("-inf"), 0.0
        return y


def test_outputs_changed_in_place_are_reduced_when_produced():
    """From the second sample on, outputs that a later in-place op changes are summarised in the hook
    (no copy kept): the same numbers as plain math on the output at that moment, dead units included."""
    torch.manual_seed(0)
    model = LaterInPlace()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    xs = [torch.randn(8, 2, 10) for _ in range(3)]
    refs = {}
    with ModelTracer(model, opt, activations_every=1, nonfinite="off") as tracer:
        for i, x in enumerate(xs):
            refs[i] = _reference_outputs(model, x)
            opt.zero_grad()
            model(x).sum().backward()
            opt.step()
    df = tracer.to_dataframe("activations")
    later = {"bn", "act", "poison"}
    assert not later & set(df[df.step == 0].module)  # dropped on the first sample: changed in place later
    (note,) = [e for e in tracer.run.events if "modified in place" in e["detail"]]  # one warning for all
    assert note["step"] == 0 and all(f" {n}" in note["detail"] for n in later), note
    for step in (1, 2):
        rows = df[df.step == step].set_index("module")
        assert later <= set(rows.index), (step, sorted(rows.index))
        for name in later | {"relu", "conv"}:
            ref, row = _plain(refs[step][name]), rows.loc[name]
            if row.ndim == 2:
                row = row.iloc[0]  # conv runs twice: its first call
            for f in ("mean", "std", "absmax", "zero_frac"):
                np.testing.assert_allclose(row[f], ref[f], rtol=1e-5, atol=1e-6, err_msg=f"{name} {f} step {step}")
            assert row.nonfinite == ref["nonfinite"], name
        assert rows.loc["poison"].nonfinite == 3 and rows.loc["poison"].units == 0
        assert rows.loc["act"].units == 4 and list(rows.loc["act"].dead_indices) == [2]
        assert rows.loc["bn"].units == 0 and rows.loc["relu"].units == 4  # a batch norm has no dead units


def test_reduced_outputs_keep_no_copy():
    """The sampler holds a few numbers per reduced output, not a tensor of the output's size."""
    from dsnotebook.dataflow.activations import ActivationSampler

    model = InplaceNet()
    sampler = ActivationSampler(model, reduce_modules={"bn"})
    sampler.arm()
    model(_batch(0)[0]).sum().backward()
    (bn,) = [t for name, _, t, *_ in sampler._raw if name == "bn"]
    assert not isinstance(bn, torch.Tensor) and bn.stats.numel() == 5 and bn.peak is None
    sampler.disarm()


class OddOutputs(nn.Module):
    """A complex output and an empty one, both changed in place later."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.cplx = ToComplex()
        self.empty = Empty()

    def forward(self, x):
        z = self.cplx(self.fc(x))
        z.mul_(2.0)
        e = self.empty(x)
        e.add_(1.0)
        return z.abs().sum() + e.sum()


class ToComplex(nn.Module):
    def forward(self, h):
        return torch.complex(h, h * 0.5)


class Empty(nn.Module):
    def forward(self, x):
        return x[:0] * 1.0


def test_complex_and_empty_outputs_changed_in_place():
    tracer = sampled_run(OddOutputs(), lambda: torch.randn(5, 4), 3, loss=lambda out: out, nonfinite="off")
    df = tracer.to_dataframe("activations")
    assert sorted(df[df.module == "cplx"].step) == [1, 2]  # copied (not reduced) from the second sample on
    assert "empty" not in set(df.module)
    # real and imaginary parts are values of their own: fc's output h gives parts h and h / 2
    for step in (1, 2):
        row = df[(df.module == "cplx") & (df.step == step)].iloc[0]
        h = df[(df.module == "fc") & (df.step == step)].iloc[0]
        assert row["absmax"] == pytest.approx(h["absmax"], rel=1e-6)
        assert row["mean"] == pytest.approx(0.75 * h["mean"], rel=1e-5, abs=1e-7)
