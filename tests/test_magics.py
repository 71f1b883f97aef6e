"""%%deepseek_trace through IPython's in-process shell."""
import pytest
import torch
from IPython.core.error import UsageError
import IPython
from IPython.testing.globalipapp import start_ipython
from torch.optim import optimizer as optim_mod

TRAIN = """
for i in range(6):
    opt.zero_grad()
    loss = model(torch.randn(4, 3)).pow(2).mean()
    loss.backward()
    opt.step()
"""


@pytest.fixture
def ip():
    shell = start_ipython() or IPython.get_ipython()
    shell.run_line_magic("load_ext", "dsnotebook")
    shell.user_ns.clear()
    shell.run_cell("import torch\nfrom torch import nn\nmodel = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1))\n"
                   "opt = torch.optim.SGD(model.parameters(), lr=0.1)\nhead = model[2]")
    yield shell
    shell.user_ns.clear()


def _no_global_hooks():
    return not optim_mod._global_optimizer_pre_hooks and not optim_mod._global_optimizer_post_hooks


def test_auto_discovery_and_tracer_left_behind(ip, capsys):
    ip.run_cell_magic("deepseek_trace", "--no-widget", TRAIN)
    tracer = ip.user_ns["_trace"]
    assert tracer.run.steps == list(range(6)) and not tracer.attached and _no_global_hooks()
    assert "tensor" in capsys.readouterr().out  # text summary printed
    ip.run_cell_magic("deepseek_trace", "--no-widget --every 2 --name tr --keep 16", TRAIN)
    assert ip.user_ns["tr"].run.steps == [0, 2, 4] and ip.user_ns["tr"].run.keep == 16


def test_optimizer_created_inside_the_cell(ip):
    del ip.user_ns["opt"]
    ip.run_cell_magic("deepseek_trace", "--no-widget", "opt = torch.optim.Adam(model.parameters())\n" + TRAIN)
    assert len(ip.user_ns["_trace"].run.steps) == 6


def test_trailing_expression_is_returned(ip):
    assert ip.run_cell_magic("deepseek_trace", "--no-widget", TRAIN + "loss.item() * 0 + 42") == 42


def test_ambiguous_models_list_candidates(ip):
    ip.run_cell("other = nn.Linear(2, 2)")
    with pytest.raises(UsageError, match=r"several models: model, other.*--model"):
        ip.run_cell_magic("deepseek_trace", "--no-widget", TRAIN)
    ip.run_cell_magic("deepseek_trace", "--no-widget --model model --optimizer opt", TRAIN)
    assert len(ip.user_ns["_trace"].run.steps) == 6


@pytest.mark.parametrize("line, message", [
    ("--every 0", "--every"), ("--every abc", "expected a number of steps or auto"), ("--bogus", "unrecognized arguments: --bogus"), ("--keep 2", "--keep"),
    ("--model nothere", "no variable named 'nothere'"), ("--model opt", "not a torch.nn.Module"),
    ("--optimizer model", "not a torch.optim.Optimizer"), ("--backend gpu", "--backend"),
    ("--name 1x", "identifier"), ("--update-every 0", "--update-every"), ("--update-every x", "invalid int value"),
])
def test_bad_options_raise_usage_error(ip, line, message):
    with pytest.raises(UsageError, match=message):
        ip.run_cell_magic("deepseek_trace", line, TRAIN)
    assert _no_global_hooks()


def test_no_model_is_a_usage_error(ip):
    ip.user_ns.clear()
    with pytest.raises(UsageError, match="no torch.nn.Module"):
        ip.run_cell_magic("deepseek_trace", "", "pass")


@pytest.mark.parametrize("exc", ["ValueError('bad batch')", "KeyboardInterrupt()"])
def test_exception_in_cell_removes_hooks_and_propagates(ip, exc):
    with pytest.raises((ValueError, KeyboardInterrupt)):
        ip.run_cell_magic("deepseek_trace", "--no-widget", TRAIN + f"raise {exc}")
    tracer = ip.user_ns["_trace"]
    assert not tracer.attached and _no_global_hooks() and len(tracer.run.steps) == 6


def test_widget_mode_keeps_state_after_an_error(ip):
    with pytest.raises(RuntimeError):
        ip.run_cell_magic("deepseek_trace", "", TRAIN + "raise RuntimeError('stop')")
    tracer = ip.user_ns["_trace"]
    assert _no_global_hooks() and len(tracer.run.steps) == 6


def test_help_documents_options(ip):
    doc = ip.find_cell_magic("deepseek_trace").__doc__
    for opt in ("--model", "--optimizer", "--every", "--keep", "--no-widget", "--name", "--backend"):
        assert opt in doc


def test_every_auto_and_budget(ip):
    ip.run_cell_magic("deepseek_trace", "--every auto --budget 5% --no-widget --no-graph", _AUTO_CELL)
    tracer = ip.user_ns["_trace"]
    assert tracer.run.meta["every"] == "auto" and tracer.run.meta["budget"] == 0.05
    assert tracer.run.meta["schedule"]["budget"] == 0.05
    for bad in ("--every sometimes", "--budget lots", "--budget 150%", "--every 0"):
        with pytest.raises(UsageError):
            ip.run_cell_magic("deepseek_trace", bad, _AUTO_CELL)


_AUTO_CELL = """
for _ in range(5):
    opt.zero_grad(); model(torch.randn(4, 3)).sum().backward(); opt.step()
"""



def test_update_every(ip):
    """--update-every 3: gradient statistics every step, update statistics on steps 0, 3 (of 0..5)."""
    ip.run_cell_magic("deepseek_trace", "--no-widget --no-graph --update-every 3", TRAIN)
    run = ip.user_ns["_trace"].run
    assert run.steps == list(range(6))
    assert [s for s in run.steps if run.updates_at(s) is not None] == [0, 3]
    assert all(run.has_grads(s) for s in run.steps)
