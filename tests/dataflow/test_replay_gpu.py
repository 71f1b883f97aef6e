"""GPU: under fp16 autocast and GradScaler, a step GradScaler skips is replayed on the GPU and the
non-finite module is named at that step; training is unchanged by the replay."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dsnotebook import ModelTracer

pytestmark = pytest.mark.gpu

if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU: torch.cuda.is_available() is False", allow_module_level=True)

DEV = torch.device("cuda")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.drop, self.fc2, self.fc3 = nn.Linear(64, 128), nn.Dropout(0.2), nn.Linear(128, 128), nn.Linear(128, 10)
        self.poison_at = None
        self.step = 0

    def forward(self, x):
        h = self.drop(torch.relu(self.fc1(x)))
        h = self.fc2(h)
        if self.step == self.poison_at:
            h = h * float("inf")  # fc2's output overflows: in the parent's glue, named as the root's forward
        return self.fc3(torch.relu(h))


def _train(trace: bool, steps: int = 6, poison_at: int | None = 3):
    torch.manual_seed(0)
    model = Net().to(DEV)
    model.poison_at = poison_at
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler("cuda")
    g = torch.Generator(device=DEV).manual_seed(1)
    tracer = ModelTracer(model, opt, capture_graph=False) if trace else None
    if tracer:
        tracer.attach()
    losses = []
    for i in range(steps):
        model.step = i
        x, y = torch.randn(32, 64, device=DEV, generator=g), torch.randint(0, 10, (32,), device=DEV, generator=g)
        opt.zero_grad()
        with torch.autocast("cuda", dtype=torch.float16):
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(loss.detach().float().cpu())
    if tracer:
        tracer.detach()
    return torch.stack(losses), [p.detach().clone() for p in model.parameters()], tracer


def test_skipped_step_is_replayed_and_named_on_the_gpu():
    plain, plain_params, _ = _train(False)
    traced, params, tracer = _train(True)
    torch.testing.assert_close(traced, plain, rtol=0, atol=0, equal_nan=True)
    for a, b in zip(params, plain_params):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    ev = [e for e in tracer.run.events if e["kind"] == "nonfinite"]
    assert len(ev) == 1 and ev[0]["step"] == 3, ev
    assert ev[0]["module"] == "(root)" and "replaying" in ev[0]["detail"], ev
