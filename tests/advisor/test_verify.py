"""A/B verification: exact state restore, a real difference on a sleep-bound loader, memory, stability."""
from __future__ import annotations

import random
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dsnotebook.advisor import Suggestion, Variant, advise, set_step_function, suggestions_of, verify_by_id
from dsnotebook.advisor.variants import checkpoint_modules, clip_gradients, scale_lr
from dsnotebook.advisor.verify import verify_variant
from fakes import HEALTHY_PHASES, H100, perf_run


def net(p_drop=0.2):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(p_drop), nn.Linear(32, 4))


def make_step(model, opt):
    def step(batch=None):
        x, y = batch if batch is not None else (torch.randn(8, 16), torch.randint(0, 4, (8,)))
        x = x + 0.01 * random.random() + 0.01 * float(np.random.rand())  # every RNG takes part
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def state_of(model, opt):
    return ([t.clone() for t in model.state_dict().values()], [p.grad.clone() if p.grad is not None else None
                                                               for p in model.parameters()],
            opt.state_dict(), torch.get_rng_state().clone(), random.getstate(), np.random.get_state())


def assert_same(a, b):
    pa, ga, oa, ta, ra, na = a
    pb, gb, ob, tb, rb, nb = b
    assert all(torch.equal(x, y) for x, y in zip(pa, pb))
    assert all((x is None and y is None) or torch.equal(x, y) for x, y in zip(ga, gb))
    assert oa["param_groups"] == ob["param_groups"]
    for k in oa["state"]:
        for name, v in oa["state"][k].items():
            assert torch.equal(v, ob["state"][k][name]), (k, name)
    assert torch.equal(ta, tb) and ra == rb
    assert all(np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y for x, y in zip(na, nb))


def test_state_restored_exactly_and_training_continues_undisturbed():
    model, twin = net(), net()
    opt, opt2 = torch.optim.Adam(model.parameters(), lr=1e-2), torch.optim.Adam(twin.parameters(), lr=1e-2)
    step, step2 = make_step(model, opt), make_step(twin, opt2)
    for s in (step, step2):  # some optimizer state to restore
        torch.manual_seed(1), random.seed(1), np.random.seed(1)
        for _ in range(3):
            s()
    torch.manual_seed(2), random.seed(2), np.random.seed(2)
    before = state_of(model, opt)
    res = verify_variant(Variant("lr x10", enter=lambda c: scale_lr(c.optimizer, 10.0)), step, model=model,
                         optimizer=opt, steps=4, pairs=2)
    assert_same(before, state_of(model, opt))
    assert res.loss_drift is not None and res.loss_drift != 0  # the variant did change training
    torch.manual_seed(2), random.seed(2), np.random.seed(2)
    assert_same(before, state_of(twin, opt2))
    after = [step().item() for _ in range(3)]
    torch.manual_seed(2), random.seed(2), np.random.seed(2)
    assert after == [step2().item() for _ in range(3)]  # bit-identical continuation


def test_noop_variant_sees_identical_losses():
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    res = verify_variant(Variant("nothing"), make_step(model, opt), model=model, optimizer=opt, steps=4, pairs=2)
    assert res.loss_drift == 0.0 and res.baseline_loss == res.variant_loss  # same weights, data and dropout masks
    assert res.baseline_saved_bytes == res.variant_saved_bytes > 0


@pytest.fixture
def one_compute_thread():
    """Worker processes need cores: compute threads competing with them on a small, busy machine
    make the step itself erratic."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class SleepyDigits(Dataset):
    """A slow dataset: 40 ms per batch of 4 (decoding, network storage, ...)."""

    def __init__(self, n=64):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 16, generator=g), torch.randint(0, 4, (n,), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        time.sleep(0.01)
        return self.x[i], self.y[i]


def test_sleep_bound_loader_is_verified_faster_with_workers(one_compute_thread):
    model = net(0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(SleepyDigits(), batch_size=4, shuffle=True)
    run = perf_run(phases=dict(HEALTHY_PHASES, data=0.1))
    (s,) = [s for s in advise(run, H100, model=model, optimizer=opt, data=loader) if s.rule == "data_loader"]
    assert s.can_verify
    before = state_of(model, opt)
    t0 = time.time()
    seen = []
    res = s.verify(make_step(model, opt), steps=10, pairs=5, progress=lambda d, n, m: seen.append((d, n)))
    assert time.time() - t0 < 10
    assert s.status == "verified" and res.verdict == "verified", str(res)
    assert res.speedup > 1.3 and res.baseline_s > 0.04
    assert res.loss_drift == 0.0  # same batches in the same order, just loaded in parallel
    assert seen[-1][0] == seen[-1][1] == 12
    assert_same(before, state_of(model, opt))
    rec = run.to_dataframe("suggestions").set_index("id").loc["data_loader"]
    assert rec["status"] == "verified" and rec["result"]["speedup"] == pytest.approx(res.speedup)


def test_prefetch_thread_for_plain_iterables():
    class SlowIterable:
        def __iter__(self):
            g = torch.Generator().manual_seed(0)
            for _ in range(20):
                time.sleep(0.05)
                yield torch.randn(4, 16, generator=g), torch.randint(0, 4, (4,), generator=g)

    from dsnotebook.advisor.variants import faster_loading

    model = net(0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def slow_step(batch):  # compute that the loading can overlap with
        time.sleep(0.05)
        return make_step(model, opt)(batch)

    res = verify_variant(Variant("prefetch", make_data=faster_loading(2, False)), slow_step, model=model,
                         optimizer=opt, data=SlowIterable(), steps=8, pairs=4)
    assert res.verdict == "verified" and res.speedup > 1.1, str(res)


def test_checkpointing_verified_by_memory():
    class Blocks(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(nn.Sequential(nn.Linear(32, 256), nn.GELU(), nn.Linear(256, 32))
                                        for _ in range(4))

        def forward(self, x):
            for b in self.layers:
                x = x + b(x)
            return x.sum(dim=1)

    torch.manual_seed(0)
    model = Blocks()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        loss = model(torch.randn(64, 32)).pow(2).mean()
        loss.backward()
        opt.step()
        return loss

    res = verify_variant(Variant("ckpt", enter=lambda c: checkpoint_modules(c.model.layers)), step, model=model,
                         optimizer=opt, steps=2, pairs=1, target="memory")
    assert res.verdict == "verified" and res.variant_saved_bytes < 0.5 * res.baseline_saved_bytes
    assert abs(res.loss_drift) < 1e-6  # recomputation gives the same numbers
    assert all("forward" not in m.__dict__ for m in model.layers)  # undone


def test_clipping_verified_on_exploding_training():
    model = net(0.0)
    opt = torch.optim.SGD(model.parameters(), lr=50.0)

    def step():
        opt.zero_grad()
        loss = model(torch.randn(8, 16)).pow(2).mean() * 1e3
        loss.backward()
        opt.step()
        return loss

    res = verify_variant(Variant("clip 1.0", enter=lambda c: clip_gradients(c.optimizer, 1.0)), step, model=model,
                         optimizer=opt, steps=6, pairs=1, target="stability")
    assert res.verdict == "verified" and not opt._optimizer_step_pre_hooks, str(res)


def test_widget_entry_points():
    model = net(0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    run = perf_run(phases=dict(HEALTHY_PHASES, opt=0.05))
    sugg = advise(run, H100, model=model, optimizer=opt)
    assert "fused_optimizer" in suggestions_of(run)
    with pytest.raises(ValueError, match="step function"):
        verify_by_id(run, "fused_optimizer")
    set_step_function(run, make_step(model, opt))
    with pytest.raises(KeyError):
        verify_by_id(run, "nope")
    events = []
    # fused SGD may not exist on this build: either a verdict or a recorded error
    try:
        rec = verify_by_id(run, "fused_optimizer", steps=2, progress=lambda d, n, m: events.append(m))
        assert rec["status"] in ("verified", "refuted") and rec["result"]["pairs"] == 2
    except Exception:
        rec = run.to_dataframe("suggestions").set_index("id").loc["fused_optimizer"]
        assert rec["status"] == "error" and rec["result"]["error"]
    assert any(s.id == "fused_optimizer" for s in sugg)


def test_suggestion_without_variant_refuses_to_verify():
    s = Suggestion(rule="x", title="t", category="training", evidence={}, gain="", snippet="", verify_hint="by hand")
    with pytest.raises(ValueError, match="no automatic variant"):
        s.verify(lambda: None, model=net())


@pytest.mark.gpu
def test_autocast_and_tf32_verified_on_gpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: torch.cuda.is_available() is False")
    from dsnotebook.advisor.variants import set_tf32

    model = nn.Sequential(*[nn.Linear(2048, 2048) for _ in range(4)]).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad()
        loss = model(torch.randn(1024, 2048, device="cuda")).pow(2).mean()
        loss.backward()
        opt.step()
        return loss

    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        amp = verify_variant(Variant("bf16", step_context=lambda: torch.autocast("cuda", dtype=torch.bfloat16)),
                             step, model=model, optimizer=opt, steps=10)
        tf32 = verify_variant(Variant("tf32", enter=lambda c: set_tf32(True)), step, model=model, optimizer=opt,
                              steps=10)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    for r in (amp, tf32):
        assert r.baseline_peak_bytes and r.variant_peak_bytes and r.speedup > 0 and r.verdict
        assert r.loss_drift is not None and abs(r.loss_drift) < 0.05


def test_apply_for_real_and_undo():
    model = net(0.0)
    opt = torch.optim.SGD(model.parameters(), lr=1e-9)
    s = Suggestion(rule="update_ratio", title="", category="training", evidence={}, gain="", snippet="",
                   verify_hint="", variant=Variant("lr x10", enter=lambda c: scale_lr(c.optimizer, 10.0)))
    applied = s.bind(model=model, optimizer=opt).apply()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-8)
    with applied.context():
        pass
    applied.undo()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-9)
    loader = DataLoader(SleepyDigits(8), batch_size=4)
    from dsnotebook.advisor.variants import faster_loading

    s2 = Suggestion(rule="data_loader", title="", category="speed", evidence={}, gain="", snippet="",
                    verify_hint="", variant=Variant("workers", make_data=faster_loading(2, False)))
    assert s2.apply(data=loader).data.num_workers == 2


def test_verify_pauses_an_attached_tracer():
    from dsnotebook import ModelTracer

    model = net(0.0)
    opt = torch.optim.SGD(model.parameters(), lr=1e-9)
    with ModelTracer(model, opt, profile_every=1) as tr:
        step = make_step(model, opt)
        for _ in range(3):
            step()
        (s,) = [s for s in tr.advise() if s.rule == "update_ratio"]
        n_steps = tr.step_count
        s.verify(step, steps=2, pairs=1)
        assert tr.attached and tr.step_count == n_steps  # A/B steps did not land in the Run
        assert {r["step"] for r in tr.run.records.tables["timings"]} == {0, 1, 2}
        step()
    assert tr.step_count == n_steps + 1
    assert {r["step"] for r in tr.run.records.tables["timings"]} == {0, 1, 2, 3}  # profiling went on
