"""Activation statistics on sampled steps: numbers, dead units, schedule, hooks, side effects."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from dsnotebook import ModelTracer, Run
from dsnotebook.examples import DigitsCNN, DigitsTransformer
from activation_refs import _batch, _plain, _reference_outputs, _step, sampled_run


def rectifier_outputs(model):
    """Names of module outputs whose values a ReLU made: ReLU modules, and outputs whose autograd node
    is a ReLU's (the transformer's feed-forward calls F.relu; its dropout(p=0) passes that on)."""
    names, handles = set(), []
    for name, m in model.named_modules():
        def hook(mod, args, out, _n=name or "(root)"):
            out = out[0] if isinstance(out, tuple) else out
            if isinstance(mod, nn.ReLU) or "Relu" in type(out.grad_fn).__name__:
                names.add(_n)
        handles.append(m.register_forward_hook(hook))
    model(_batch(0)[0])
    for h in handles:
        h.remove()
    return names


@pytest.mark.parametrize("make", [DigitsCNN, DigitsTransformer])
def test_statistics_match_plain_per_tensor_math(make):
    torch.manual_seed(0)
    model = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    refs = {}
    with ModelTracer(model, opt, activations_every=2) as tracer:
        for i in range(5):
            if i % 2 == 0:
                refs[i] = _reference_outputs(model, _batch(i)[0])  # same weights, same batch, no_grad
            _step(model, opt, i)
    df = tracer.to_dataframe("activations")
    assert sorted(df.step.unique()) == [0, 2, 4]
    rectified = rectifier_outputs(model)
    for step, outs in refs.items():
        rows = df[df.step == step].set_index("module")
        assert set(rows.index) == set(outs), step
        for name, t in outs.items():
            ref, row = _plain(t), rows.loc[name]
            for f in ("mean", "std", "absmax", "zero_frac"):
                np.testing.assert_allclose(row[f], ref[f], rtol=2e-5, atol=1e-6, err_msg=f"{name} {f} step {step}")
            assert row.nonfinite == ref["nonfinite"]
            if name not in rectified:  # dead units mean nothing there
                assert row.units == 0 and row.dead_units == 0 and row.dead_indices == [], name
                continue
            ch = 1 if t.dim() in (2, 4) else t.dim() - 1
            dims = [d for d in range(t.dim()) if d != ch]
            dead = torch.nonzero(~t.ne(0).any(dim=dims)).reshape(-1).tolist()
            assert row.units == t.shape[ch] and row.dead_indices == dead and row.dead_units == len(dead), name


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.act1 = nn.Linear(12, 6), nn.ReLU()
        self.conv, self.act2 = nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()
        self.fc2 = nn.Linear(6 + 4 * 16, 3)

    def forward(self, x, img):
        a = self.act1(self.fc1(x))
        b = self.act2(self.conv(img)).flatten(1)
        return self.fc2(torch.cat([a, b], 1))


def _dead_run(broken):
    torch.manual_seed(0)
    model = MLP()
    if broken:
        with torch.no_grad():
            model.fc1.bias[[1, 4]] = -100.0  # bad init: these ReLU units never fire
            model.conv.bias[2] = -100.0
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with ModelTracer(model, opt, activations_every=1) as tracer:
        for i in range(3):
            opt.zero_grad()
            model(torch.randn(32, 12), torch.randn(32, 1, 4, 4)).pow(2).mean().backward()
            opt.step()
    return tracer.to_dataframe("activations").set_index(["step", "module"])


def test_dead_units_found_on_a_broken_init_and_not_on_a_healthy_one():
    bad, good = _dead_run(True), _dead_run(False)
    for step in range(3):
        assert bad.loc[(step, "act1")].dead_indices == [1, 4] and bad.loc[(step, "act1")].units == 6
        assert bad.loc[(step, "act2")].dead_indices == [2] and bad.loc[(step, "act2")].units == 4  # channels (dim 1)
        assert bad.loc[(step, "fc1")].dead_units == 0  # before the ReLU: negative, not zero
    assert (good.dead_units == 0).all()


def test_hooks_only_on_sampled_steps_and_schedule():
    model = DigitsCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    counts = []
    with ModelTracer(model, opt, activations_every=3, capture_graph=False) as tracer:
        for i in range(7):
            counts.append(tracer.module_hook_count)  # hooks present during step i
            _step(model, opt, i)
            with torch.no_grad():  # an evaluation pass between steps is not sampled
                model(_batch(99)[0])
    n = 2 * len(list(model.modules()))
    capture = 2  # the default non-finite mode's two root hooks (inputs kept for a replay), every step
    assert counts == [capture + (n if i % 3 == 0 else 0) for i in range(7)]
    assert tracer.module_hook_count == 0
    df = tracer.to_dataframe("activations")
    assert sorted(df.step.unique()) == [0, 3, 6] and (df.call == 0).all()


def test_losses_bit_identical_with_sampling_graph_and_checks():
    def run(**kw):
        torch.manual_seed(0)
        model = DigitsTransformer()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        with ModelTracer(model, opt, **kw):
            losses = [_step(model, opt, i) for i in range(6)]
        return losses, model

    base, m0 = run(capture_graph=False, nonfinite="off")
    full, m1 = run(activations_every=1, nonfinite="strict", capture_graph=True)
    assert all(torch.equal(a, b) for a, b in zip(base, full))
    assert all(torch.equal(a, b) for a, b in zip(m0.parameters(), m1.parameters()))


class Checkpointed(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(checkpoint(self.block, x, use_reentrant=False))


def test_checkpoint_recomputation_is_not_recorded_twice():
    model = Checkpointed()
    tracer = sampled_run(model, lambda: torch.randn(4, 8), 2, lr=0.01, nonfinite="strict")
    df = tracer.to_dataframe("activations")
    assert df.groupby("step").module.apply(list).map(len).tolist() == [6, 6]
    assert (df.call == 0).all()
    assert not [e for e in tracer.run.events if e["kind"] in ("nonfinite", "warning")]


@pytest.mark.filterwarnings("ignore:no training step")
def test_hooks_removed_after_exception_in_a_sampled_step():
    model = DigitsCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(RuntimeError):
        with ModelTracer(model, opt, activations_every=1, nonfinite="strict") as tracer:
            _step(model, opt, 0)
            model(torch.randn(2, 3, 8, 8))  # wrong channel count: the conv raises mid-forward
    assert tracer.module_hook_count == 0
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert torch._C._len_torch_function_stack() == 0


def test_thinned_and_saved_like_other_tables(tmp_path):
    model = DigitsCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with ModelTracer(model, opt, activations_every=1, keep=8, capture_graph=False) as tracer:
        for i in range(40):
            _step(model, opt, i)
    df = tracer.to_dataframe("activations")
    assert sorted(df.step.unique().tolist()) == tracer.run.steps and len(tracer.run.steps) <= 8
    again = Run.open(tracer.run.save(tmp_path / "r"))
    assert again.to_dataframe("activations").astype(str).equals(df.astype(str))


def test_magic_options():
    import IPython
    from IPython.core.error import UsageError
    from IPython.testing.globalipapp import start_ipython

    ip = start_ipython() or IPython.get_ipython()
    ip.run_line_magic("load_ext", "dsnotebook")
    ip.user_ns.clear()
    ip.run_cell("import torch\nfrom torch import nn\nmodel = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1))\n"
                "opt = torch.optim.SGD(model.parameters(), lr=0.1)")
    train = ("for i in range(5):\n    opt.zero_grad()\n    model(torch.randn(4, 3)).pow(2).mean().backward()\n"
             "    opt.step()\n")
    try:
        ip.run_cell_magic("deepseek_trace", "--no-widget --activations-every 2 --nonfinite strict --no-graph", train)
        tracer = ip.user_ns["_trace"]
        assert sorted(tracer.to_dataframe("activations").step.unique()) == [0, 2, 4]
        assert tracer.run.graph is None and tracer.run.meta["nonfinite"] == "strict"
        ip.run_cell_magic("deepseek_trace", "--no-widget", train)
        assert ip.user_ns["_trace"].run.graph["nodes"] and ip.user_ns["_trace"].to_dataframe("activations").empty
        for line, msg in (("--activations-every 0", "--activations-every"), ("--nonfinite always", "--nonfinite")):
            with pytest.raises(UsageError, match=msg):
                ip.run_cell_magic("deepseek_trace", line, train)
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in ip.user_ns["model"].modules())
    finally:
        ip.user_ns.clear()


def test_bad_options_are_clear_errors():
    model = nn.Linear(2, 2)
    for bad in (0, -3, 1.5, True, "10"):
        with pytest.raises(ValueError, match="activations_every"):
            ModelTracer(model, activations_every=bad)
    with pytest.raises(ValueError, match="nonfinite must be one of"):
        ModelTracer(model, nonfinite="always")


def test_tracer_does_not_keep_the_model_alive():
    import gc
    import weakref

    model = DigitsCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with ModelTracer(model, opt, activations_every=1, nonfinite="strict") as tracer:
        _step(model, opt, 0)
        _step(model, opt, 1)
    ref = weakref.ref(model)
    del model, opt
    gc.collect()
    assert ref() is None and len(tracer.to_dataframe("activations")) > 0


class Block(nn.Module):
    """A custom block that ends in a functional ReLU: its output is a rectifier output."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 6)

    def forward(self, x):
        return F.relu(self.fc(x))


def test_dead_units_only_on_rectifier_outputs():
    """Regression: Flatten over images with blank borders showed 'dead 16%' (a property of the data)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.MaxPool1d(1), Block(), nn.Linear(6, 3))
    with torch.no_grad():
        model[1].bias[:3], model[1].bias[3:] = -100.0, 100.0  # three ReLU units never fire, the others always
        model[4].fc.weight.mul_(1e-4)
        model[4].fc.bias[:2], model[4].fc.bias[2:] = -100.0, 100.0  # two units of the block never fire
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x = torch.rand(32, 1, 4, 4)
    x[:, :, 0, :] = 0.0  # a blank border row: four input pixels zero in every image
    with ModelTracer(model, opt, activations_every=1) as tracer:
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
    df = tracer.to_dataframe("activations").set_index("module")
    assert df.loc["0", "units"] == 0 and df.loc["0", "dead_units"] == 0  # Flatten: the data's blank pixels
    assert df.loc["2", "dead_indices"] == [0, 1, 2] and df.loc["2", "units"] == 8  # the ReLU
    assert df.loc["3", "units"] == 0  # max-pool after the ReLU: not counted twice
    assert df.loc["4", "dead_indices"] == [0, 1] and df.loc["4", "units"] == 6  # block ending in F.relu
    assert df.loc["1", "units"] == 0 and df.loc["5", "units"] == 0  # Linear outputs
    assert df.loc["(root)", "units"] == 0
