"""ModelTracer: numbers, step clock, hook lifecycle, bounded memory, odd models, bad input."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import optimizer as optim_mod

from dsnotebook import ModelTracer, Run
from helpers import plain_grad_stats, tiny_cnn


def _data(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def _train(model, opt, steps, seed=0, grads_out=None):
    losses = []
    for i in range(steps):
        x, y = _data(seed=seed + i)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if grads_out is not None:
            grads_out.append([p.grad.clone() for p in model.parameters()])
        opt.step()
        losses.append(loss.detach())
    return losses


def _no_hooks_left(tracer, opt=None):
    assert tracer.hook_count == 0 and not tracer.attached
    assert not optim_mod._global_optimizer_pre_hooks and not optim_mod._global_optimizer_post_hooks
    if opt is not None:
        assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


def test_losses_bit_identical_and_stats_match_plain_math():
    torch.manual_seed(0)
    plain_model = tiny_cnn()
    traced_model = tiny_cnn()
    traced_model.load_state_dict(plain_model.state_dict())
    opt_a = torch.optim.Adam(plain_model.parameters(), lr=1e-2)
    opt_b = torch.optim.Adam(traced_model.parameters(), lr=1e-2)
    grads, weights = [], [[p.detach().clone() for p in plain_model.parameters()]]
    losses_a = []
    for i in range(20):
        losses_a += _train(plain_model, opt_a, 1, seed=i, grads_out=grads)
        weights.append([p.detach().clone() for p in plain_model.parameters()])
    with ModelTracer(traced_model, opt_b) as tracer:
        losses_b = _train(traced_model, opt_b, 20)
    assert all(torch.equal(a, b) for a, b in zip(losses_a, losses_b))
    for pa, pb in zip(plain_model.parameters(), traced_model.parameters()):
        assert torch.equal(pa, pb)
    df = tracer.to_dataframe("grads")
    assert sorted(df.step.unique()) == list(range(20)) and len(df) == 20 * 4
    for step in (0, 7, 19):
        for tid, g in enumerate(grads[step]):
            row = df[(df.step == step) & (df.tensor_id == tid)].iloc[0]
            ref = plain_grad_stats(g)
            for f in ("norm", "mean", "std", "absmax", "nonfinite", "zero_frac"):
                np.testing.assert_allclose(row[f], ref[f], rtol=1e-5, err_msg=f"{f} step {step} tensor {tid}")
    hist = tracer.to_dataframe("hist")
    counts = hist[(hist.step == 3)].groupby("tensor_id")["count"].sum()
    assert counts.tolist() == [p.numel() for p in traced_model.parameters()]
    upd = tracer.to_dataframe("updates")
    for step in (0, 19):
        for tid in range(4):
            w0, w1 = weights[step][tid].double(), weights[step + 1][tid].double()
            row = upd[(upd.step == step) & (upd.tensor_id == tid)].iloc[0]
            np.testing.assert_allclose(row.update_ratio, float((w1 - w0).norm() / w0.norm()), rtol=1e-5)
            np.testing.assert_allclose(row.changed_frac, float((w1 != w0).double().mean()), rtol=1e-6)


def test_hooks_removed_after_detach_exception_and_interrupt():
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    t = ModelTracer(model, opt).attach()
    assert t.hook_count == 2 and opt._optimizer_step_pre_hooks
    with pytest.warns(UserWarning, match="no training step"):
        t.detach()
    _no_hooks_left(t, opt)
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with ModelTracer(model) as t:  # global optimizer hooks
                _train(model, opt, 2)
                raise exc
        _no_hooks_left(t, opt)
        assert len(t.run.steps) == 2  # what was recorded before the error is kept


def test_keep_bounds_memory_and_dataframe_is_consistent():
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with ModelTracer(model, opt, keep=64) as tracer:
        sizes = []
        for i in range(500):
            _train(model, opt, 1, seed=i % 7)
            if i in (100, 499):
                sizes.append(tracer.run.nbytes())
    steps = tracer.run.steps
    assert 32 <= len(steps) <= 64 and steps[0] == 0 and steps[-1] == 499
    assert steps[-16:] == list(range(484, 500))  # recent steps at full resolution
    assert sizes[1] <= sizes[0] * 1.1  # bounded, not growing with the step count
    df = tracer.to_dataframe("grads")
    assert sorted(df.step.unique().tolist()) == steps
    assert len(df) == 4 * len(steps)
    upd = tracer.to_dataframe("updates")
    assert sorted(upd.step.unique().tolist()) == steps
    gaps = np.diff(steps[:-16])
    assert gaps.max() <= 4 * gaps.min()  # old steps thinned evenly, not dropped wholesale


def test_every_n_records_only_those_steps():
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with ModelTracer(model, opt, every=5) as tracer:
        _train(model, opt, 23)
    assert tracer.run.steps == [0, 5, 10, 15, 20]


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.block = nn.Linear(8, 8)
        self.out = nn.Linear(8, 20, bias=False)
        self.out.weight = self.emb.weight  # shared parameter

    def forward(self, idx):
        h = self.emb(idx)
        h = torch.relu(self.block(h))
        h = torch.relu(self.block(h))  # module called twice per step
        return self.out(h)


def test_shared_weights_and_module_called_twice():
    torch.manual_seed(0)
    model = Tied()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    idx = torch.randint(0, 20, (4, 5))
    with ModelTracer(model, opt) as tracer:
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(model(idx).reshape(-1, 20), idx.reshape(-1)).backward()
            grads = {n: p.grad.clone() for n, p in model.named_parameters()}
            opt.step()
    tensors = tracer.to_dataframe("tensors")
    assert tensors.name.tolist() == ["emb.weight", "block.weight", "block.bias"]
    assert tensors.aliases[0] == ["out.weight"]
    last = tracer.to_dataframe("grads").query("step == 2")
    np.testing.assert_allclose(last.norm.tolist(), [float(grads[n].double().norm()) for n in tensors.name], rtol=1e-5)


def test_frozen_layers_have_no_rows():
    model = tiny_cnn()
    for p in model[0].parameters():
        p.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    with ModelTracer(model, opt) as tracer:
        _train(model, opt, 3)
    df = tracer.to_dataframe("grads")
    assert set(df.name) == {"3.weight", "3.bias"}
    assert tracer.to_dataframe("tensors").trainable.tolist() == [False, False, True, True]


def test_lstm_and_gradient_accumulation():
    torch.manual_seed(0)
    model = nn.LSTM(6, 12, num_layers=2, batch_first=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with ModelTracer(model, opt) as tracer:
        for step in range(3):
            opt.zero_grad()
            for micro in range(4):  # 4 backward passes, one optimizer step
                out, _ = model(torch.randn(2, 5, 6))
                out.pow(2).mean().backward()
            accumulated = [p.grad.clone() for p in model.parameters()]
            opt.step()
    assert tracer.run.steps == [0, 1, 2]
    df = tracer.to_dataframe("grads").query("step == 2")
    assert len(df) == 8
    np.testing.assert_allclose(df.norm.tolist(), [float(g.double().norm()) for g in accumulated], rtol=1e-5)


def test_two_optimizers_and_param_groups():
    model = tiny_cnn()
    opt_a = torch.optim.SGD([{"params": model[0].weight}, {"params": model[0].bias, "lr": 0.5}], lr=0.1)
    opt_b = torch.optim.Adam(model[3].parameters(), lr=1e-3)
    with ModelTracer(model, [opt_a, opt_b]) as tracer:
        for i in range(4):
            x, y = _data(seed=i)
            opt_a.zero_grad(); opt_b.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt_a.step(); opt_b.step()
    assert tracer.run.steps == [0, 1, 2, 3]
    for table in ("grads", "updates"):
        df = tracer.to_dataframe(table)
        assert df.groupby("step").size().tolist() == [4, 4, 4, 4], table
    assert (tracer.to_dataframe("updates").update_ratio > 0).all()


def test_explicit_step_without_optimizer():
    model = tiny_cnn()
    with ModelTracer(model) as tracer:
        for i in range(3):
            x, y = _data(seed=i)
            model.zero_grad()
            F.cross_entropy(model(x), y).backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.1 * p.grad
            tracer.step()
    assert tracer.run.steps == [0, 1, 2]
    upd = tracer.to_dataframe("updates")
    assert sorted(upd.step.unique()) == [1, 2] and (upd.update_ratio > 0).all()


def test_nan_and_inf_gradients_are_recorded_not_fatal():
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with ModelTracer(model, opt) as tracer:
        x, y = _data()
        F.cross_entropy(model(x), y).backward()
        model[3].bias.grad[0] = float("nan")
        model[3].bias.grad[1] = float("inf")
        opt.step()
    row = tracer.to_dataframe("grads").query("name == '3.bias'").iloc[0]
    assert row.nonfinite == 2 and np.isfinite(row.norm)
    assert "non-finite" in tracer.summary()


def test_bad_input_messages():
    with pytest.raises(TypeError, match="got builtins.str"):
        ModelTracer("model")
    with pytest.raises(ValueError, match="no parameters"):
        ModelTracer(nn.ReLU())
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.warns(UserWarning, match="requires grad"):
        ModelTracer(frozen)
    with pytest.raises(ValueError, match="every"):
        ModelTracer(nn.Linear(2, 2), every=0)
    with pytest.raises(ValueError, match="backend"):
        ModelTracer(nn.Linear(2, 2), backend="gpu")
    with pytest.raises(TypeError, match="Optimizer"):
        ModelTracer(nn.Linear(2, 2), optimizer="adam")
    with pytest.warns(UserWarning, match="no training step"):
        with ModelTracer(nn.Linear(2, 2)):
            pass


def test_other_models_optimizer_is_ignored():
    model, other = tiny_cnn(), tiny_cnn()
    opt_other = torch.optim.SGD(other.parameters(), lr=0.1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with ModelTracer(model) as tracer:
        _train(other, opt_other, 2)
        _train(model, opt, 3)
    assert tracer.run.steps == [0, 1, 2]


def test_save_and_open_roundtrip(tmp_path):
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with ModelTracer(model, opt, keep=8) as tracer:
        _train(model, opt, 20)
    tracer.run.add_event(3, "warning", "3", "a <b>note</b>")
    path = tracer.run.save(tmp_path / "run")
    again = Run.open(path)
    assert again.steps == tracer.run.steps
    for table in ("grads", "updates", "hist", "tensors", "events"):
        a, b = tracer.run.to_dataframe(table), again.to_dataframe(table)
        assert a.astype(str).equals(b.astype(str)), table


class _SubSGD(torch.optim.SGD):
    """A subclass whose step() calls super().step(): torch fires the step hooks twice."""

    def step(self, closure=None):
        return super().step(closure)


class _RaisingSGD(torch.optim.SGD):
    fail = False

    def step(self, closure=None):
        if self.fail:
            raise RuntimeError("optimizer failed")
        return super().step(closure)


def test_regression_subclass_calling_super_step_counts_one_step():
    torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)  # a plain SGD patched first
    model = tiny_cnn()
    opt = _SubSGD(model.parameters(), lr=0.1)
    with ModelTracer(model, opt) as tracer:
        _train(model, opt, 3)
    assert tracer.run.steps == [0, 1, 2]
    assert tracer.to_dataframe("updates").groupby("step").size().tolist() == [4, 4, 4]


def test_regression_step_that_raised_does_not_stall_the_clock():
    model = tiny_cnn()
    opt = _RaisingSGD(model.parameters(), lr=0.1)
    with ModelTracer(model, opt) as tracer:
        _train(model, opt, 2)
        opt.fail = True
        with pytest.raises(RuntimeError):
            _train(model, opt, 1)
        opt.fail = False
        _train(model, opt, 2)
    assert tracer.run.steps == [0, 1, 2, 3, 4]


def test_steps_skipped_by_gradscaler_are_recorded():
    from dsnotebook.trace import gradscaler as _gradscaler

    original = torch.amp.GradScaler._maybe_opt_step
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu")
    with ModelTracer(model) as tracer:
        for i in range(4):
            x, y = _data(seed=i)
            opt.zero_grad()
            scaler.scale(F.cross_entropy(model(x), y)).backward()
            if i == 2:
                model[3].bias.grad[0] = float("inf")
            scaler.step(opt)
            scaler.update()
    assert torch.amp.GradScaler._maybe_opt_step is original and not _gradscaler._listeners
    assert tracer.run.steps == [0, 1, 2, 3]
    grads = tracer.to_dataframe("grads")
    assert grads.query("step == 2 and name == '3.bias'").nonfinite.item() == 1
    upd = tracer.to_dataframe("updates")
    assert (upd.query("step == 2").changed_frac == 0).all() and (upd.query("step == 3").changed_frac > 0).any()
    assert any("GradScaler skipped" in e["detail"] and e["step"] == 2 for e in tracer.run.events)


def test_update_every_records_updates_on_every_kth_recorded_step():
    """update_every=2 with every=2: grads on 0, 2, 4, 6; updates on 0 and 4; bad values are clear errors."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tracer = ModelTracer(model, opt, every=2, update_every=2, capture_graph=False)
    with tracer:
        for _ in range(8):
            opt.zero_grad()
            model(torch.randn(5, 3)).pow(2).mean().backward()
            opt.step()
    run = tracer.run
    assert [s for s in range(8) if run.has_grads(s)] == [0, 2, 4, 6]
    assert [s for s in range(8) if run.updates_at(s) is not None] == [0, 4]
    assert run.meta["update_every"] == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="update_every"):
            ModelTracer(model, opt, update_every=bad)
