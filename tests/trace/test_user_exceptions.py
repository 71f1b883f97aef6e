"""The user's own exception reaches them unchanged, whatever the tracer records.

Regression: a forward that raised while graph capture was on together with strict
non-finite checks, activation sampling or profiling surfaced as torch's
"OrderedDict mutated during iteration" (hooks removed inside an always-called hook).
"""
from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from dsnotebook import ModelTracer


class UserBug(Exception):
    pass


class Boom(nn.Module):
    """Raises the given exception object in forward (or in backward) once armed."""

    def __init__(self, where: str, exc: BaseException) -> None:
        super().__init__()
        self.where, self.exc, self.armed = where, exc, True

    def forward(self, x):
        if self.armed and self.where == "forward":
            raise self.exc
        if self.armed and self.where == "backward":
            return _RaiseInBackward.apply(x, self.exc)
        return x


class _RaiseInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, exc):
        ctx.exc = exc
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        raise ctx.exc


def model(where: str, exc: BaseException) -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(Boom(where, exc), nn.Linear(8, 2)))


FEATURES = list(itertools.product([True, False], ["cheap", "strict", "off"], [None, 1], [None, 1]))


def _no_hooks(m: nn.Module) -> bool:
    return all(not mod._forward_hooks and not mod._forward_pre_hooks and not mod._backward_hooks
               for mod in m.modules())


@pytest.mark.parametrize("graph,nonfinite,act,prof", FEATURES)
@pytest.mark.parametrize("where", ["forward", "backward"])
@pytest.mark.parametrize("healthy_first", [False, True])
def test_exception_unchanged(where, healthy_first, graph, nonfinite, act, prof):
    exc = UserBug(f"shape bug in {where}")
    m = model(where, exc)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    m[2][0].armed = not healthy_first
    tracer = ModelTracer(m, opt, capture_graph=graph, nonfinite=nonfinite, activations_every=act, profile_every=prof)
    with pytest.raises(UserBug) as info:
        with tracer:
            for _ in range(2):  # the bug at once, or after a healthy step
                opt.zero_grad()
                m(torch.randn(3, 4)).sum().backward()
                opt.step()
                m[2][0].armed = True
    assert info.value is exc
    assert _no_hooks(m) and tracer.module_hook_count == 0 and not tracer.attached


@pytest.mark.parametrize("graph,nonfinite,act,prof", FEATURES[::3])
def test_first_forward_raises_then_training_goes_on(graph, nonfinite, act, prof):
    """The bug is in the very first traced forward; caught inside the cell, training continues."""
    exc = UserBug("first forward")
    m = model("forward", exc)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with ModelTracer(m, opt, capture_graph=graph, nonfinite=nonfinite, activations_every=act,
                     profile_every=prof) as tracer:
        with pytest.raises(UserBug) as info:
            m(torch.randn(3, 4))
        assert info.value is exc
        m[2][0].armed = False
        for _ in range(3):
            opt.zero_grad()
            m(torch.randn(3, 4)).sum().backward()
            opt.step()
    assert _no_hooks(m)
    assert tracer.to_dataframe("grads").step.nunique() == 3
