"""StepCapture (the default non-finite mode's every-step part): what it keeps, and when it keeps nothing."""
import torch
from torch import nn

from dsnotebook.dataflow.replay import StepCapture


def _forward_backward(model, x):
    model(x).sum().backward()


def test_keeps_inputs_rng_and_output_gradients_where_a_replay_is_possible():
    model = nn.Linear(4, 2)
    cap = StepCapture(model, keep_output_grads=True)  # a CPU model: statistics arrive before the update
    cap.start()
    x = torch.randn(3, 4)
    _forward_backward(model, x)
    (fwd,) = cap.forwards
    assert fwd.kept and fwd.args[0] is x and fwd.rng_cpu is not None and 0 in fwd.grads
    assert cap.replayable() is None
    cap.stop()


def test_keeps_nothing_per_step_where_no_replay_can_happen():
    """CUDA without fp16 autocast (bf16, fp32): statistics arrive after the update, so no replay; the
    root hooks then keep no references (inputs, RNG states, output gradients) and do no tensor work."""
    model = nn.Linear(4, 2)
    cap = StepCapture(model, keep_output_grads=False)
    cap.start()
    x = torch.randn(3, 4)
    _forward_backward(model, x)
    (fwd,) = cap.forwards
    assert not fwd.kept and fwd.args == () and fwd.rng_cpu is None and fwd.versions == [] and not fwd.grads
    assert "not kept" in cap.replayable()
    with torch.autocast("cpu", dtype=torch.float16):  # fp16 autocast (GradScaler loops): kept again
        cap.new_step()
        _forward_backward(model, x)
    assert cap.forwards[0].kept and cap.forwards[0].args[0] is x
    cap.stop()
