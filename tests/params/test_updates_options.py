"""UpdateStatsProbe's cheaper options: ``stride`` (fewer steps) and ``carry`` (no snapshot when
the weights did not move between two comparisons).  CPU, with a stand-in backend that does what
the CUDA backend's ``carry`` does (the kernel itself is checked in tests/kernels)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dsnotebook import ModelTracer
from dsnotebook.params.updates import UpdateStatsProbe
from dsnotebook.stats.reference import TorchStatsBackend


class CarryBackend(TorchStatsBackend):
    """The reference backend plus carry: the comparison copies the new weights into the snapshot."""

    supports_carry = True

    def __init__(self) -> None:
        super().__init__()
        self.snapshots = 0

    def snapshot(self, tensors):
        self.snapshots += 1
        return torch.cat([t.detach().reshape(-1) for t in tensors])

    def update_stats(self, before, tensors, out=None, carry=False):
        res = self.update_stats_exact(before, tensors)
        if carry:
            before.copy_(torch.cat([t.detach().reshape(-1) for t in tensors]))
        return res


def _train(probe: UpdateStatsProbe, steps: int, between=None, backend=None) -> ModelTracer:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(16, 6), torch.randn(16, 3)
    tracer = ModelTracer(model, opt, track_updates=False, probes=[probe], capture_graph=False)
    if backend is not None:
        tracer._backends[torch.device("cpu")] = backend
    with tracer:
        for step in range(steps):
            opt.zero_grad(set_to_none=True)
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
            if between is not None:
                between(model, step)
    return tracer


def _updates(tracer: ModelTracer, steps: int) -> dict[int, np.ndarray]:
    out = {}
    for s in range(steps):
        rows = tracer.run.updates_at(s)
        if rows is not None:
            out[s] = rows.values
    return out


def test_stride_records_every_kth_step_with_the_same_numbers():
    full = _updates(_train(UpdateStatsProbe(1), 7), 7)
    thin = _updates(_train(UpdateStatsProbe(1, stride=3), 7), 7)
    assert sorted(full) == list(range(7)) and sorted(thin) == [0, 3, 6]
    for s in thin:
        np.testing.assert_array_equal(thin[s], full[s])
    with pytest.raises(ValueError):
        UpdateStatsProbe(1, stride=0)


def test_carry_skips_the_snapshot_and_gives_the_same_numbers():
    plain_backend, carry_backend = CarryBackend(), CarryBackend()
    plain = _updates(_train(UpdateStatsProbe(1), 6, backend=plain_backend), 6)
    probe = UpdateStatsProbe(1, carry=True)
    carried = _updates(_train(probe, 6, backend=carry_backend), 6)
    assert sorted(carried) == sorted(plain) == list(range(6))
    for s in plain:
        np.testing.assert_array_equal(carried[s], plain[s])
    assert probe.reused == 5 and carry_backend.snapshots == 1 and plain_backend.snapshots == 6


@pytest.mark.parametrize("change", ["no_grad_inplace", "data_assign"])
def test_carry_sees_weights_changed_between_steps(change):
    """A change between two steps (in place under no_grad: version counter; .data =: new
    pointer) must not be counted as the next update: the probe snapshots again."""
    def between(model, step):
        if step == 2:
            w = model[0].weight
            if change == "no_grad_inplace":
                with torch.no_grad():
                    w.mul_(0.5)
            else:
                w.data = w.data * 0.5

    plain = _updates(_train(UpdateStatsProbe(1), 5, between, backend=CarryBackend()), 5)
    probe = UpdateStatsProbe(1, carry=True)
    carried = _updates(_train(probe, 5, between, backend=CarryBackend()), 5)
    for s in plain:
        np.testing.assert_array_equal(carried[s], plain[s])
    assert probe.reused == 3  # steps 1, 2 and 4 reuse; step 3 follows the change


def test_carry_without_backend_support_is_the_plain_path():
    probe = UpdateStatsProbe(1, carry=True)
    carried = _updates(_train(probe, 4), 4)  # CPU reference backend: no carry
    plain = _updates(_train(UpdateStatsProbe(1), 4), 4)
    for s in plain:
        np.testing.assert_array_equal(carried[s], plain[s])
    assert probe.reused == 0
