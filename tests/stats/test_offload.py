"""CPU statistics computed in the helper process: the same numbers as here, in order, never
touching the user's tensors; failures become warnings; a dead helper loses nothing."""
from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dsnotebook import ModelTracer
from dsnotebook.core.transfer import Deferred, HostCopier
from dsnotebook.stats import helper as helper_mod
from dsnotebook.stats import offload
from dsnotebook.stats.reference import COL_ABSMAX, TorchStatsBackend
from helpers import tiny_cnn

pytestmark = pytest.mark.skipif(not helper_mod.supported(), reason="the helper process needs Linux (memfd)")


@pytest.fixture(scope="module")
def helper():
    h = helper_mod.HelperProcess()
    deadline = time.monotonic() + 30
    while not h.available():
        assert time.monotonic() < deadline, "helper did not start"
        time.sleep(0.01)
    yield h
    h.close()


def _set(seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    shapes = [(16, 1, 3, 3), (16,), (300, 70), (1,), (7, 5, 3), (4096,)]
    scales = [1e-3, 1.0, 1e-6, 3.0, 1e-12, 50.0]
    out = [(torch.randn(s, generator=g) * sc).to(dtype) for s, sc in zip(shapes, scales)]
    out[2][:10] = 0.0
    out[2][10, :5] = 1e-40  # subnormal in float32
    out[4] = out[4].transpose(0, 2)  # non-contiguous
    return out


def _finite_extremes():
    """Every finite corner of the fast path: huge, tiny, subnormal, signed zeros, bin edges."""
    vals = [0.0, -0.0, 1e-45, -1e-44, 1e-40, 2.0 ** -46, 2.0 ** -47, 2.0 ** -45 * 1.5, 2.0 ** 15.5, 2.0 ** 16,
            65504.0, 3.0e38, -3.3e38, 1.0, -1.0, 1e-30, 1e30]
    return [torch.tensor(vals), torch.full((33,), 3.0e38), torch.zeros(5)]


def _backend(helper):
    b = TorchStatsBackend()
    b.use_helper(helper)
    return b


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_helper_and_here_give_identical_numbers(helper, dtype):
    tensors = _set(0, dtype)
    here = TorchStatsBackend().grad_stats(tensors)
    got = _backend(helper).grad_stats(tensors)
    assert isinstance(got, Deferred)
    assert torch.equal(got.wait(), here)
    exact = TorchStatsBackend().grad_stats_exact(tensors)
    assert torch.equal(here[:, COL_ABSMAX:], exact[:, COL_ABSMAX:])  # abs-max, counts, histogram: exact
    torch.testing.assert_close(here, exact, rtol=1e-12, atol=0)


def test_finite_extremes_match_the_exact_path(helper):
    tensors = _finite_extremes()
    got = _backend(helper).grad_stats(tensors).wait()
    exact = TorchStatsBackend().grad_stats_exact(tensors)
    assert torch.equal(got[:, COL_ABSMAX:], exact[:, COL_ABSMAX:])
    torch.testing.assert_close(got, exact, rtol=1e-12, atol=0)


def test_non_finite_gradients_are_decided_at_once_on_the_exact_path(helper):
    tensors = _set(1)
    tensors[1][3] = float("nan")
    got = _backend(helper).grad_stats(tensors)
    assert isinstance(got, torch.Tensor)  # not deferred: the non-finite probe sees it before the update
    assert torch.equal(got, TorchStatsBackend().grad_stats_exact(tensors))


@pytest.mark.parametrize("nan_weight", [False, True])
def test_update_stats_identical_and_user_tensors_untouched(helper, nan_weight):
    weights = _set(2)
    if nan_weight:
        weights[0][0, 0, 0, 0] = float("nan")  # the exact path decides, on the helper's copies
    deltas = [1e-3 * (torch.arange(w.numel()) % 3 == 0).reshape(w.shape) for w in weights]
    results = []
    for b in (TorchStatsBackend(), _backend(helper)):
        ws = [w.clone() for w in weights]
        before = b.snapshot(ws)
        for w, d in zip(ws, deltas):
            w += d
        after = [w.clone() for w in ws]
        got = b.update_stats(before, ws)
        for w in ws:  # the user changes the weights again before the result is taken
            w.mul_(2.0)
        results.append(got.wait() if isinstance(got, Deferred) else got)
        assert all(torch.equal(w, 2 * a) for w, a in zip(ws, after) if not nan_weight)
    assert torch.equal(results[0], results[1])
    ref = TorchStatsBackend().update_stats_exact(torch.cat([w.reshape(-1) for w in weights]),
                                                 [w + d for w, d in zip(weights, deltas)])
    torch.testing.assert_close(results[1], ref, rtol=1e-9, atol=0)


def test_gradients_read_at_submission_even_if_changed_after(helper):
    tensors = _set(3)
    expect = TorchStatsBackend().grad_stats(tensors)
    got = _backend(helper).grad_stats(tensors)
    for t in tensors:
        t.add_(1.0)  # e.g. the next backward accumulates into .grad
    assert torch.equal(got.wait(), expect)


def test_host_copier_keeps_submission_order_and_reports_errors():
    class Late(Deferred):
        def __init__(self, value, fail=False):
            self.value, self.fail, self.ready = value, fail, False

        def done(self):
            return self.ready

        def wait(self):
            if self.fail:
                raise RuntimeError("boom")
            return torch.tensor([self.value])

    got, errors = [], []
    copier = HostCopier(on_error=errors.append)
    a, b = Late(1.0), Late(2.0, fail=True)
    copier.submit(a, lambda h: got.append(float(h[0])))
    copier.submit(b, lambda h: got.append(float(h[0])))
    assert copier.poll() == 0 and got == []
    b.ready = True
    assert copier.poll() == 0  # b is done, but a is still in front
    a.ready = True
    copier.submit(torch.tensor([3.0]), lambda h: got.append(float(h[0])))  # a CPU tensor: after everything before it
    assert got == [1.0, 3.0] and len(errors) == 1 and "boom" in str(errors[0]) and len(copier) == 0


def test_helper_error_becomes_an_exception_of_the_job(helper):
    b = _backend(helper)
    tensors = _set(4)
    b.grad_stats(tensors).wait()  # registers the layout
    region = b._host(tensors).region
    slot = region.free.pop()
    job = offload.HelperJob(helper, region, slot, b"G", None)
    assert helper.submit(job, b"G", 999_999, slot)  # a layout the helper never saw
    with pytest.raises(RuntimeError, match="KeyError"):
        job.wait()
    assert slot in region.free  # the slot is back


def test_jobs_in_flight_survive_a_dead_helper():
    h = helper_mod.HelperProcess()
    deadline = time.monotonic() + 30
    while not h.available():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    b = _backend(h)
    tensors = _set(5)
    expect = TorchStatsBackend().grad_stats(tensors)
    jobs = [b.grad_stats(tensors) for _ in range(3)]
    h.proc.kill()
    h.proc.wait()
    assert all(torch.equal(j.wait(), expect) for j in jobs)  # computed here, from the shared copies
    assert not h.ready
    h.close()


def test_full_slots_fall_back_to_computing_here(helper):
    b = _backend(helper)
    tensors = _set(6)
    expect = TorchStatsBackend().grad_stats(tensors)
    out = [b.grad_stats(tensors) for _ in range(offload.SLOTS + 3)]  # never taken: slots run out
    assert sum(isinstance(o, Deferred) for o in out) == offload.SLOTS
    assert all(torch.equal(o.wait() if isinstance(o, Deferred) else o, expect) for o in out)


def _train(tracer_kw, helper, steps=12):
    torch.manual_seed(0)
    model = tiny_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    losses = []
    tracer = ModelTracer(model, opt, **tracer_kw) if tracer_kw is not None else None
    if tracer is not None:
        tracer.attach()
        tracer._backend(torch.device("cpu")).use_helper(helper)
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    if tracer is not None:
        tracer.detach()  # drains what the helper still computes
    return losses, tracer


def test_a_traced_run_records_the_same_numbers_with_and_without_the_helper(helper):
    plain, _ = _train(None, None)
    here_losses, here = _train({}, None)
    sent = helper.sent
    off_losses, off = _train({}, helper)
    assert helper.sent - sent >= 20  # gradients and updates of (nearly) every step went to the helper
    assert plain == here_losses == off_losses  # training unchanged, bit for bit
    assert here.run.steps == off.run.steps == list(range(12))
    for s in range(12):
        a, b = here.run.grads_at(s), off.run.grads_at(s)
        assert np.array_equal(a.values, b.values, equal_nan=True) and np.array_equal(a.hist, b.hist)
        ua, ub = here.run.updates_at(s), off.run.updates_at(s)
        assert np.array_equal(ua.values, ub.values, equal_nan=True)


def test_worker_failure_is_a_warning_not_an_exception(helper, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("helper broke")

    monkeypatch.setattr(offload.HelperJob, "_take", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        losses, tracer = _train({}, helper, steps=3)
    assert [e for e in tracer.run.events if "helper broke" in e["detail"]]
    assert any("helper broke" in str(w.message) for w in caught)


def test_tracers_offload_only_when_asked(monkeypatch):
    model = tiny_cnn()
    monkeypatch.delenv("DSNOTEBOOK_STATS_HELPER", raising=False)
    assert ModelTracer(model)._backend(torch.device("cpu")).helper is None
    monkeypatch.setenv("DSNOTEBOOK_STATS_HELPER", "1")
    assert ModelTracer(model)._backend(torch.device("cpu")).helper is helper_mod.shared_helper()
