"""Undo is exact: apply + undo leaves every setting as the user had it, from non-default starts too.

Regression: TF32 was switched with the legacy ``allow_tf32`` setters, so after apply and undo
``torch.backends.cuda.matmul.fp32_precision`` read 'ieee' where it read 'none', and after a
user's ``torch.set_float32_matmul_precision("medium")`` ``torch.get_float32_matmul_precision()``
raised; a model that was already channels_last came back contiguous.  Settings come from a
simulated GPU profile (``fake_gpu``), applied on this CPU.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from dsnotebook.advisor.variants import PrecisionState, set_tf32, to_channels_last
from dsnotebook.perf.hardware import has_fp32_precision_api, tf32_enabled
from fakes import fake_gpu

B = torch.backends


def _legacy_on():
    B.cuda.matmul.allow_tf32 = True
    B.cudnn.allow_tf32 = True


def _legacy_off():
    B.cuda.matmul.allow_tf32 = False
    B.cudnn.allow_tf32 = False


def _new_ieee():
    B.cuda.matmul.fp32_precision = "ieee"
    B.cudnn.conv.fp32_precision = "ieee"


def _mixed():  # legal in torch, and get_float32_matmul_precision() raises from here on
    torch.set_float32_matmul_precision("medium")
    B.cuda.matmul.allow_tf32 = False


STARTS = {"default": lambda: None, "medium": lambda: torch.set_float32_matmul_precision("medium"),
          "high": lambda: torch.set_float32_matmul_precision("high"), "legacy flags on": _legacy_on,
          "legacy flags off": _legacy_off, "fp32_precision ieee": _new_ieee, "mixed APIs": _mixed}
READINGS = ["fp32_precision", "cuda.matmul.fp32_precision", "cudnn.fp32_precision", "cudnn.conv.fp32_precision",
            "cudnn.rnn.fp32_precision", "mkldnn.fp32_precision", "mkldnn.matmul.fp32_precision",
            "cuda.matmul.allow_tf32", "cudnn.allow_tf32"]


def read_all() -> dict[str, object]:
    """What a user's code reads, under both APIs ("raises" where torch's getter raises)."""
    out: dict[str, object] = {}
    for path in READINGS:
        obj = B
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            out[path] = obj
        except AttributeError:
            continue
        except RuntimeError:
            out[path] = "raises"
    try:
        out["get_float32_matmul_precision"] = torch.get_float32_matmul_precision()
    except RuntimeError:
        out["get_float32_matmul_precision"] = "raises"
    return out


@pytest.fixture
def pristine():
    """Every test starts from, and leaves, torch's settings as they were."""
    state = PrecisionState.capture()
    yield
    state.restore()
    assert PrecisionState.capture() == state


def conv_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))


@pytest.mark.parametrize("start", list(STARTS))
def test_tf32_apply_then_undo_reads_exactly_as_before(start, pristine):
    STARTS[start]()
    before = read_all()
    model = conv_net()
    settings = dataclasses.replace(fake_gpu().get_optimal_settings(model), compile=False)
    assert settings.tf32
    undo = settings.apply(model, torch.optim.SGD(model.parameters(), lr=0.1))
    during = read_all()
    assert tf32_enabled("matmul") and tf32_enabled("conv")
    new_raises = {k for k, v in during.items() if v == "raises"} - {k for k, v in before.items() if v == "raises"}
    assert not new_raises, f"readers that raise while TF32 is on: {new_raises}"
    undo()
    assert read_all() == before


@pytest.mark.skipif(not has_fp32_precision_api(), reason="this torch has no fp32_precision API")
def test_tf32_uses_the_per_op_api_and_leaves_onednn_alone(pristine):
    torch.set_float32_matmul_precision("medium")  # oneDNN matmuls in bf16: the user's choice
    undo = set_tf32(True)
    try:
        assert B.cuda.matmul.fp32_precision == "tf32" and B.cudnn.conv.fp32_precision == "tf32"
        assert B.mkldnn.matmul.fp32_precision == "bf16"
    finally:
        undo()
    assert torch.get_float32_matmul_precision() == "medium" and B.cuda.matmul.fp32_precision == "tf32"


def test_tf32_undo_twice_and_nested(pristine):
    before = read_all()
    outer = set_tf32(True)
    inner = set_tf32(False)
    assert not tf32_enabled("matmul")
    inner()
    assert tf32_enabled("matmul")
    outer()
    outer()  # a second undo changes nothing
    assert read_all() == before


def _formats(model: nn.Module) -> dict[str, tuple[int, ...]]:
    out = {n: t.stride() for n, t in model.named_parameters()}
    out.update({n: t.stride() for n, t in model.named_buffers()})
    out.update({n + ".grad": p.grad.stride() for n, p in model.named_parameters() if p.grad is not None})
    return out


def test_channels_last_model_stays_channels_last_after_undo():
    model = conv_net().to(memory_format=torch.channels_last)
    model(torch.randn(2, 3, 8, 8).to(memory_format=torch.channels_last)).sum().backward()
    before, values = _formats(model), {k: v.clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    settings = dataclasses.replace(fake_gpu().get_optimal_settings(model), compile=False)
    assert settings.channels_last  # a fake GPU profile: channels_last is among the settings
    undo = settings.apply(model)
    undo()
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert _formats(model) == before
    assert list(model.parameters()) == params  # same Parameter objects: optimizers keep working
    assert all(torch.equal(values[k], v) for k, v in model.state_dict().items())


def test_channels_last_undo_restores_each_tensor_its_own_format():
    model = conv_net()
    model[3].weight.data = model[3].weight.data.to(memory_format=torch.channels_last)  # one layer NHWC already
    model.register_buffer("mask", torch.ones(1, 3, 4, 4))
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    before = _formats(model)
    undo = to_channels_last(model)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    undo()
    assert _formats(model) == before
    assert model[0].weight.is_contiguous() and model[3].weight.is_contiguous(memory_format=torch.channels_last)
    assert model.mask.is_contiguous() and model[0].weight.grad.is_contiguous()
