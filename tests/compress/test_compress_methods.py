"""Each compression method returns a working model whose outputs stay within a stated tolerance,
and does what it says (zeros where pruned, channels physically gone, int8 weights stored)."""
from __future__ import annotations

import copy
import importlib.util

import pytest
import torch
from torch import nn

from compress_models import FAST, Bottleneck, ConvNet, Residual
from dsnotebook import compress
from dsnotebook.compress import ChannelPrune, Context, Distill, DynamicInt8, Int8WeightOnly, MagnitudePrune, plan_groups


def _out(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def _dynamic_quantized(m: nn.Module) -> bool:
    return "quantized.dynamic" in type(m).__module__


def _rel_dev(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max())


# Tolerances stated: max |difference| relative to max |original output| on the example inputs.
@pytest.mark.parametrize("method, tol", [(DynamicInt8(backend="torch.ao"), 0.05), (Int8WeightOnly(backend="reference"), 0.02)])
def test_int8_within_tolerance(convnet, images, method, tol):
    ref = _out(convnet, images)
    res = method.apply(copy.deepcopy(convnet).eval(), Context((images,)))
    out = _out(res.model, images)
    assert out.shape == ref.shape
    assert 0 < _rel_dev(ref, out) <= tol  # changed (quantized), but within tolerance
    assert res.backend


def test_dynamic_int8_torch_ao_quantizes_linear_only(convnet, images):
    res = DynamicInt8(backend="torch.ao").apply(copy.deepcopy(convnet).eval(), Context((images,)))
    assert all(_dynamic_quantized(res.model.get_submodule(n)) for n in ("head.1", "head.3"))
    assert not any(type(m) is nn.Linear for m in res.model.modules())
    assert isinstance(res.model.features[0], nn.Conv2d)  # convs stay float and the note says so
    assert any("Conv2d" in n and "float" in n for n in res.notes)
    assert "fallback" in res.backend and "deprecated" in res.backend


def test_weight_only_reference_stores_int8(convnet, images):
    res = Int8WeightOnly(backend="reference").apply(copy.deepcopy(convnet).eval(), Context((images,)))
    int8 = [k for k, v in res.model.state_dict().items() if v.dtype == torch.int8]
    assert len(int8) == 4  # two convs and two linears
    assert "dequantized per call" in res.backend


@pytest.mark.skipif(importlib.util.find_spec("torchao") is None, reason="torchao not installed (optional extra)")
@pytest.mark.parametrize("method, tol", [(DynamicInt8(), 0.05), (Int8WeightOnly(), 0.02)])
def test_torchao_backend(convnet, images, method, tol):
    ref = _out(convnet, images)
    res = method.apply(copy.deepcopy(convnet).eval(), Context((images,)))
    assert res.backend.startswith("torchao")
    assert _rel_dev(ref, _out(res.model, images)) <= tol


def test_magnitude_prune_is_permanent_and_exact(convnet, images):
    res = MagnitudePrune(0.5).apply(copy.deepcopy(convnet).eval(), Context((images,)))
    m = res.model
    assert not any(hasattr(mod, "weight_mask") or mod._forward_pre_hooks for mod in m.modules())  # mask removed
    manual = copy.deepcopy(convnet).eval()
    for (name, new), (_, old) in zip(m.named_modules(), manual.named_modules()):
        if isinstance(new, (nn.Linear, nn.Conv2d)):
            w = old.weight.detach()
            k = w.numel() // 2  # the k smallest |w| are zero, every other weight unchanged
            thresh = w.abs().flatten().kthvalue(k).values
            zeroed = (new.weight == 0)
            assert int(zeroed.sum()) == k, name
            assert torch.equal(new.weight[~zeroed], w[~zeroed])
            assert float(w.abs()[zeroed].max()) <= float(thresh)
            with torch.no_grad():
                old.weight.copy_(new.weight)
    assert torch.equal(_out(m, images), _out(manual, images))
    assert res.info["sparse_format"] in ("csr", "bitmask") and res.info["sparse_bytes"] > 0
    assert any("stored densely" in n for n in res.notes)


def _zero_channels(layer: nn.Module, channels: list[int]) -> None:
    with torch.no_grad():
        layer.weight[channels] = 0
        layer.bias[channels] = 0


def test_channel_prune_removes_the_right_channels(convnet, images):
    """Channels whose filters are zero carry nothing: removing exactly those must leave the output
    unchanged, which checks the slicing of BatchNorm, conv inputs and the flatten -> Linear blocks."""
    m = copy.deepcopy(convnet).eval()
    _zero_channels(m.features[0], [0, 2, 4, 6])
    with torch.no_grad():
        m.features[1].weight[[0, 2, 4, 6]] = 0  # BN of a zero channel outputs its bias: zero it too
        m.features[1].bias[[0, 2, 4, 6]] = 0
    _zero_channels(m.features[3], list(range(0, 16, 2)))
    _zero_channels(m.head[1], list(range(16)))
    ref = _out(m, images)
    res = ChannelPrune(0.5).apply(copy.deepcopy(m), Context((images,)))
    p = res.model
    assert (p.features[0].out_channels, p.features[1].num_features, p.features[3].in_channels) == (4, 4, 4)
    assert (p.features[3].out_channels, p.head[1].in_features, p.head[1].out_features, p.head[3].in_features) == (8, 128, 16, 16)
    assert p.head[3].out_features == 10  # its channels are the model output: kept
    assert float((_out(p, images) - ref).abs().max()) < 1e-5
    assert any("head.3 kept whole" in n and "model output" in n for n in res.notes)


def test_channel_prune_shrinks_parameters_and_size(convnet, images):
    r = compress(convnet, ["channel_prune"], images, **FAST)
    row = r.table.loc["channel_prune"]
    assert row["params"] < 0.5 * r.table.loc["original", "params"]
    assert row["size_ratio"] < 0.5
    n_params = sum(p.numel() for p in r.models["channel_prune"].parameters())
    assert n_params < 0.5 * sum(p.numel() for p in convnet.parameters())


def test_channel_plan_leaves_coupled_layers_alone():
    m = Residual()
    groups = {g.producer: g for g in plan_groups(m, (torch.randn(4, 16),))}
    assert "combines" in groups["a"].skipped  # the residual add
    assert groups["b"].skipped == "" and groups["b"].consumers == [("c", 1)]
    assert groups["c"].skipped == "" and groups["c"].consumers == [("out", 1)]
    assert "model output" in groups["out"].skipped


def test_channel_plan_of_a_resnet_bottleneck(images):
    torch.manual_seed(0)
    m = Bottleneck().eval()
    x = torch.randn(4, 3, 8, 8)
    groups = {g.producer: g for g in plan_groups(m, (x,))}
    assert groups["stem"].skipped == "" and groups["stem"].batchnorms == ["bn"]
    assert sorted(c for c, _ in groups["stem"].consumers) == ["conv1", "downsample.0"]  # one input, two branches
    assert groups["conv1"].consumers == [("conv2", 1)] and groups["conv2"].consumers == [("conv3", 1)]
    assert "combines" in groups["conv3"].skipped and "combines" in groups["downsample.0"].skipped  # the += add
    ref = _out(m, x)
    res = ChannelPrune(0.5).apply(copy.deepcopy(m), Context((x,)))
    p = res.model
    assert (p.stem.out_channels, p.bn.num_features, p.conv1.in_channels, p.downsample[0].in_channels) == (4, 4, 4, 4)
    assert (p.conv1.out_channels, p.conv2.in_channels, p.conv2.out_channels, p.conv3.in_channels) == (2, 2, 2, 2)
    assert _out(p, x).shape == ref.shape


def test_distill_trains_a_smaller_student_under_the_tracer(convnet, images):
    torch.manual_seed(0)
    data = [(torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))) for _ in range(4)]
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    r = compress(convnet, [Distill(student=student, steps=12, lr=1e-2)], images, data=data, **FAST)
    s = r.models["distill"]
    assert s is not student and sum(p.numel() for p in s.parameters()) < sum(p.numel() for p in convnet.parameters())
    grads = r.tracers["distill"].to_dataframe("grads")
    assert grads["step"].nunique() == 12  # every training step of the student was traced
    assert set(grads["name"]) == {n for n, _ in s.named_parameters()}
    assert r.table.loc["distill", "status"] == "ok"
    assert "12 training steps" in " ".join(r.notes["distill"])


def test_distill_loss_decreases_and_default_student_is_pruned_teacher(convnet, images):
    torch.manual_seed(0)
    data = [torch.randn(16, 1, 8, 8) for _ in range(4)]
    method = Distill(steps=30, lr=1e-2, trace=False)
    res = method.apply(copy.deepcopy(convnet).eval(), Context((images,), data=data))
    losses = res.info["kd_losses"]
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:5]) / 5
    assert res.model.features[0].out_channels == 4  # half the channels of the teacher's first conv
    assert res.info["tracer"] is None


def test_chain_prunes_then_quantizes(convnet, images):
    r = compress(convnet, ["channel_prune+dynamic_int8"], images, **FAST)
    m = r.models["channel_prune+dynamic_int8"]
    int8 = _dynamic_quantized(m.head[1]) or "Int8" in type(m.head[1].weight).__name__  # torch.ao or torchao
    assert int8 and m.features[0].out_channels == 4
    assert r.table.loc["channel_prune+dynamic_int8", "size_ratio"] < r.table.loc["original", "size_ratio"] * 0.3
    assert " + " in r.table.loc["channel_prune+dynamic_int8", "backend"]
