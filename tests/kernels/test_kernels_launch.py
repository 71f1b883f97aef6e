"""CPU check of what CupyStatsBackend hands cuLaunchKernel: the parameter buffer (_Params) must hold,
slot by slot, exactly the kernel's arguments -- table, block map, the current pointer table (whose
entries are the tensors' data pointers), chunk length, buffers, output -- after every call,
including calls with new tensor objects and moved storage.  A wrong slot would make the GPU read
the wrong memory, so this is checked here, without cupy or a GPU: tensors stand in for device
memory and a fake launcher reads the buffer back through ctypes."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch

from dsnotebook.kernels import backend as B
from dsnotebook.kernels import layout as L


class FakeCuda(torch.Tensor):
    """A CPU tensor that says it is on the GPU (enough for the backend's host side)."""

    @property
    def is_cuda(self) -> bool:  # type: ignore[override]
        return True


class FakeLauncher:
    def __init__(self, log: list):
        self.log = log

    def packed(self, grid: int, params: B._Params, stream_ptr: int) -> None:
        n = len(params.vals)
        addrs = np.ctypeslib.as_array((ctypes.c_uint64 * n).from_address(params.addr))
        self.log.append((grid, [ctypes.c_int64.from_address(int(a)).value for a in addrs], stream_ptr))


@pytest.fixture()
def fake(monkeypatch):
    log: list = []
    monkeypatch.setattr(B, "_supported", lambda ts: all(t.dtype in L.DTYPE_CODES for t in ts))
    monkeypatch.setattr(B, "_upload", lambda host, device: host.clone())
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch._C, "_cuda_getDevice", lambda: 0, raising=False)
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda idx: 4321, raising=False)
    be = B.CupyStatsBackend()
    monkeypatch.setitem(B._modules, (0, (), None), {k: FakeLauncher(log) for k in
                                                   ("dsn_grad_stats", "dsn_snapshot", "dsn_update_stats",
                                                    "dsn_update_carry")})
    return be, log


def _table(addr: int, n: int) -> list[int]:
    return list(np.ctypeslib.as_array((ctypes.c_int64 * n).from_address(addr)))


def _tensors(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g).as_subclass(FakeCuda) for s in [(64, 3, 7, 7), (64,), (100, 20), (3,)]]


def test_grad_stats_parameters_every_call(fake):
    be, log = fake
    base = _tensors(0)
    for step in range(4):
        ts = [t.detach() for t in base] if step % 2 else _tensors(step)  # new objects; moved storage
        out = be.grad_stats(ts)
        plan, dptrs = be._grad_plans.get(ts)
        grid, vals, stream = log[-1]
        assert grid == plan.nblocks and stream == 4321
        assert vals == [plan.meta.data_ptr(), plan.bmap.data_ptr(), dptrs[1], plan.chunk, plan.gpart_f.data_ptr(),
                        plan.gaccu.data_ptr(), plan.gtickets.data_ptr(), out.data_ptr()]
        assert _table(vals[2], len(ts)) == [t.data_ptr() for t in ts]
    assert be._grad_plans.builds == 1
    other = torch.empty(len(base), 69, dtype=torch.float64)
    be.grad_stats(base, out=other)
    assert log[-1][1][7] == other.data_ptr()
    be.grad_stats(base)
    assert log[-1][1][7] == be._grad_plans.get(base)[0].grad_out.data_ptr()  # back to the plan's buffer


@pytest.mark.parametrize("carry", [False, True])
def test_snapshot_and_update_parameters(fake, carry):
    be, log = fake
    ws = _tensors(1)
    snap = be.snapshot(ws)
    plan = snap.plan
    grid, vals, _ = log[-1]
    assert vals == [plan.meta.data_ptr(), plan.bmap.data_ptr(), snap.dptrs[1], plan.chunk, plan.snap.data_ptr()]
    assert _table(vals[2], len(ws)) == [t.data_ptr() for t in ws]
    out = be.update_stats(snap, ws, carry=carry)
    grid, vals, _ = log[-1]
    assert vals == [plan.meta.data_ptr(), plan.bmap.data_ptr(), snap.dptrs[1], plan.chunk, plan.snap.data_ptr(),
                    plan.upart_f.data_ptr(), plan.uaccu.data_ptr(), plan.utickets.data_ptr(), out.data_ptr()]
    assert ("dsn_update_carry" if carry else "dsn_update_stats") in plan.params
    moved = [w.clone().as_subclass(FakeCuda) for w in ws]  # same layout, new storage: a new pointer table
    be.update_stats(snap, moved)
    assert _table(log[-1][1][2], len(ws)) == [t.data_ptr() for t in moved]
