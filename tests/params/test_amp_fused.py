"""Fused optimizers under GradScaler unscale inside their own step: the recorded gradients
must be the true (unscaled) ones, as for a plain optimizer."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dsnotebook import ModelTracer
from helpers import plain_grad_stats


def _run(fused: bool, unscale_first: bool = False):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    truth = []
    with ModelTracer(model, opt) as tracer:
        for i in range(3):
            x = torch.randn(8, 16, generator=torch.Generator().manual_seed(i))
            opt.zero_grad()
            scaler.scale(model(x).square().mean()).backward()
            if unscale_first:
                scaler.unscale_(opt)
                truth.append([p.grad.detach().clone() for p in model.parameters()])
            else:
                s = scaler.get_scale()
                truth.append([p.grad.detach() / s for p in model.parameters()])
            scaler.step(opt)
            scaler.update()
    return tracer.to_dataframe("grads"), tracer.to_dataframe("hist"), truth


@pytest.mark.parametrize("fused,unscale_first", [(True, False), (False, False), (True, True)])
def test_recorded_gradients_are_unscaled(fused, unscale_first):
    grads, hist, truth = _run(fused, unscale_first)
    assert sorted(grads.step.unique()) == [0, 1, 2]
    for step, tensors in enumerate(truth):
        rows = grads[grads.step == step].sort_values("tensor_id")
        for tid, g in enumerate(tensors):
            ref = plain_grad_stats(g)
            row = rows[rows.tensor_id == tid].iloc[0]
            np.testing.assert_allclose(row.norm, ref["norm"], rtol=1e-5)
            np.testing.assert_allclose(row.absmax, ref["absmax"], rtol=1e-5)
            np.testing.assert_allclose(row["mean"], ref["mean"], rtol=1e-4, atol=1e-12)
            counts = hist[(hist.step == step) & (hist.tensor_id == tid)].sort_values("bin")["count"].to_numpy()
            np.testing.assert_array_equal(counts, ref["hist"])
