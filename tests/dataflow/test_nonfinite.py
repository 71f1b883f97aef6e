"""First non-finite localisation: NaN/Inf injected at each of 10 modules, forward and backward."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dsnotebook import ModelTracer


class NanGrad(torch.autograd.Function):
    """Identity in forward; the gradient that flows back through it becomes NaN."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * float("nan")


def poisonable(cls):
    """``cls`` whose output can be made non-finite in forward, or its gradient in backward."""

    class Poisonable(cls):
        poison = None

        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            if self.poison == "nan":
                out = out * float("nan")
            elif self.poison == "inf":
                out = out * float("inf")
            elif self.poison == "backward":
                out = NanGrad.apply(out)
            return out

    Poisonable.__name__ = Poisonable.__qualname__ = cls.__name__
    return Poisonable


Conv, BN, ReLU, Linear = poisonable(nn.Conv2d), poisonable(nn.BatchNorm2d), poisonable(nn.ReLU), poisonable(nn.Linear)
LayerNorm, GELU, Pool = poisonable(nn.LayerNorm), poisonable(nn.GELU), poisonable(nn.AdaptiveAvgPool2d)


class Residual(nn.Module):
    poison = None

    def __init__(self, c):
        super().__init__()
        self.conv = Conv(c, c, 3, padding=1)
        self.act = ReLU()

    def forward(self, x):
        out = self.act(self.conv(x)) + x  # the block's own glue: the residual add
        if self.poison == "nan":
            out = out * float("nan")
        elif self.poison == "inf":
            out = out * float("inf")
        elif self.poison == "backward":
            out = NanGrad.apply(out)
        return out


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = Conv(1, 4, 3, padding=1)
        self.bn1 = BN(4)
        self.act1 = ReLU()
        self.res = Residual(4)
        self.pool = Pool(2)
        self.fc1 = Linear(16, 16)
        self.norm = LayerNorm(16)
        self.act2 = GELU()
        self.head = Linear(16, 10)

    def forward(self, x):
        h = self.res(self.act1(self.bn1(self.conv1(x))))
        h = self.pool(h).flatten(1)
        return self.head(self.act2(self.norm(self.fc1(h))))


TARGETS = ["conv1", "bn1", "act1", "res.conv", "res.act", "res", "pool", "fc1", "norm", "act2", "head"]


def skip_nonfinite(opt, args, kwargs):
    """Like AMP's GradScaler: a non-finite gradient does not reach the weights.  Registered
    after the tracer attached, so the tracer's own pre-step hook sees the gradients first."""
    for g in opt.param_groups:
        for p in g["params"]:
            if p.grad is not None:
                p.grad.nan_to_num_(0.0, 0.0, 0.0)


def _run(target, poison, mode, steps=4):
    torch.manual_seed(0)
    model = Net()
    model.get_submodule(target).poison = poison
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(1)
    with ModelTracer(model, opt, nonfinite=mode, capture_graph=False) as tracer:
        handle = opt.register_step_pre_hook(skip_nonfinite)
        for _ in range(steps):
            x, y = torch.randn(8, 1, 4, 4, generator=g), torch.randint(0, 10, (8,), generator=g)
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        handle.remove()
    assert tracer.module_hook_count == 0
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    return [e for e in tracer.run.events if e["kind"] == "nonfinite"]


@pytest.mark.parametrize("mode", ["strict", "cheap"])
@pytest.mark.parametrize("poison", ["nan", "inf", "backward"])
@pytest.mark.parametrize("target", TARGETS)
def test_injected_module_is_reported(target, poison, mode):
    events = _run(target, poison, mode)
    assert len(events) == 1, events  # one event per episode, not one per step
    ev = events[0]
    assert ev["module"] == target, ev
    assert ev["detail"].startswith("backward" if poison == "backward" else "forward"), ev
    assert ev["step"] == 0  # cheap mode replays the step before its update: named at the step too


def test_healthy_run_has_no_event_and_off_mode_does_nothing():
    assert _run("conv1", None, "strict") == []
    assert _run("conv1", None, "cheap") == []
    assert _run("conv1", "nan", "off") == []


class LogGlue(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.b(torch.log(self.a(x)))  # log of a negative value: NaN made by glue, not a submodule


def test_glue_code_in_parent_and_loss_are_named():
    torch.manual_seed(0)
    model = LogGlue()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with ModelTracer(model, opt, nonfinite="strict") as tracer:
        model(torch.randn(8, 4)).sum().backward()
        opt.step()
    ev = [e for e in tracer.run.events if e["kind"] == "nonfinite"][0]
    assert ev["module"] == "(root)" and "made the input of b non-finite" in ev["detail"]

    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with ModelTracer(model, opt, nonfinite="strict") as tracer:
        NanGrad.apply(model(torch.randn(8, 4))).sum().backward()  # a loss whose backward is NaN
        opt.step()
    ev = [e for e in tracer.run.events if e["kind"] == "nonfinite"][0]
    assert ev["module"] == "(loss)" and ev["detail"].startswith("backward")


class DropBN(nn.Module):
    """Dropout (RNG) and BatchNorm (buffers): what a replay must leave exactly as it found."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.drop, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Dropout(0.5), \
            Linear(64, 10)

    def forward(self, x):
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1))


def _train(trace: bool, poison_step: int = 2, steps: int = 6, optimizer=torch.optim.SGD):
    torch.manual_seed(0)
    model = DropBN()
    opt = optimizer(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(1)
    losses = []
    tracer = ModelTracer(model, opt, capture_graph=False) if trace else None
    if tracer is not None:
        tracer.attach()
    handle = opt.register_step_pre_hook(skip_nonfinite)
    for i in range(steps):
        model.fc.poison = "backward" if i == poison_step else None
        x, y = torch.randn(8, 1, 4, 4, generator=g), torch.randint(0, 10, (8,), generator=g)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    handle.remove()
    if tracer is not None:
        tracer.detach()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return losses, state, tracer


def test_replay_names_the_step_and_leaves_training_unchanged():
    """Regression: the default mode named the module one step late (or the first layer, once the
    update had written NaN into the weights).  The replay uses the step's own dropout mask and
    puts RNG and BatchNorm statistics back."""
    plain_losses, plain_state, _ = _train(False)
    losses, state, tracer = _train(True)
    assert losses == plain_losses
    for k in plain_state:
        assert torch.equal(state[k], plain_state[k]), k
    assert torch.equal(torch.get_rng_state(), _rng_after_plain_run())
    ev = [e for e in tracer.run.events if e["kind"] == "nonfinite"]
    assert len(ev) == 1 and ev[0]["step"] == 2 and ev[0]["module"] == "fc" and ev[0]["detail"].startswith("backward")
    assert "replaying" in ev[0]["detail"]


def _rng_after_plain_run():
    _train(False)
    return torch.get_rng_state()


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam])
@pytest.mark.parametrize("poison", ["nan", "backward"])
def test_unprotected_loop_first_bad_step_is_named(optimizer, poison):
    """No GradScaler, no guard: the bad step's update writes NaN into the weights right away."""
    torch.manual_seed(0)
    model = Net()
    opt = optimizer(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(1)
    with ModelTracer(model, opt, capture_graph=False) as tracer:
        for i in range(5):
            model.fc1.poison = poison if i == 3 else None
            x, y = torch.randn(8, 1, 4, 4, generator=g), torch.randint(0, 10, (8,), generator=g)
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    ev = [e for e in tracer.run.events if e["kind"] == "nonfinite"]
    assert len(ev) == 1, ev
    assert ev[0]["step"] == 3 and ev[0]["module"] == "fc1", ev
    assert ev[0]["detail"].startswith("backward" if poison == "backward" else "forward")
