"""Hardware profile and the settings chosen for it (CPU here; fake GPU profiles for the choices)."""
from __future__ import annotations

import ast
import dataclasses
import json
import pathlib

import pytest
import torch
from torch import nn

import dsnotebook
from dsnotebook.advisor.settings import TuningProfile
from dsnotebook.advisor.variants import PrecisionState
from dsnotebook.perf.hardware import HardwareProfile, detect_gpu, tf32_enabled
from fakes import cpu_profile, fake_gpu


def conv_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 2))


def test_detect_on_this_machine():
    hw = detect_gpu()
    assert hw.cpu_cores >= 1 and hw.ram_bytes > 0 and hw.torch_version == torch.__version__
    if not torch.cuda.is_available():
        assert hw.device == "cpu" and hw.gpu_name is None and hw.compute_capability is None
        assert not hw.tf32 and not hw.fp8 and hw.gpu_count == 0
    json.dumps(hw.to_dict())
    assert "CPU cores" in repr(hw)
    public = dsnotebook.detect_gpu()  # exported lazily from the package: the facts, plus the advisor's settings
    assert isinstance(public, TuningProfile) and isinstance(public, HardwareProfile)
    assert public.to_dict() == hw.to_dict() and repr(public) == repr(hw)
    assert public.get_optimal_settings(conv_net()).device == hw.device


def test_perf_does_not_import_the_advisor():
    """The facts sit below the advisor: no perf module imports it, not even inside a function."""
    perf = pathlib.Path(dsnotebook.__file__).parent / "perf"
    for path in perf.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith("dsnotebook.advisor") for n in names), (path.name, names)
    assert not hasattr(HardwareProfile, "get_optimal_settings")


def test_cpu_settings_are_sensible():
    s = cpu_profile(bf16=False).get_optimal_settings(conv_net())
    assert s.autocast_dtype is None and not s.tf32 and not s.cudnn_benchmark and not s.channels_last
    assert not s.pin_memory and not s.compile and s.num_workers <= 2
    assert cpu_profile(bf16=True).get_optimal_settings().autocast_dtype == torch.bfloat16
    text = repr(s)
    assert text.startswith("OptimalSettings for cpu") and "num_workers" in text and "autocast" in text
    assert s.dataloader_kwargs()["pin_memory"] is False


@pytest.mark.parametrize("cc,dtype,scaler", [((9, 0), torch.bfloat16, False), ((8, 0), torch.bfloat16, False),
                                             ((7, 5), torch.float16, True), ((7, 0), torch.float16, True),
                                             ((6, 1), None, False)])
def test_autocast_choice_by_compute_capability(cc, dtype, scaler):
    s = fake_gpu(cc=cc).get_optimal_settings()
    assert s.autocast_dtype == dtype and s.grad_scaler == scaler
    assert s.tf32 == (cc >= (8, 0))
    assert s.reasons["autocast"]


def test_gpu_settings_workers_and_layout():
    hw = fake_gpu(cores=32, gpus=4)
    s = hw.get_optimal_settings(conv_net())
    assert s.channels_last and s.pin_memory and s.fused_optimizer and s.cudnn_benchmark
    assert s.num_workers == 7  # 8 cores per GPU, one for the training loop
    assert s.dataloader_kwargs() == {"num_workers": 7, "pin_memory": True, "persistent_workers": True,
                                     "prefetch_factor": 4}
    mlp = nn.Sequential(nn.Linear(4, 4))
    assert not hw.get_optimal_settings(mlp).channels_last  # no convolutions: nothing to gain
    assert "H100" in repr(hw) and "sm_90" in repr(hw)


def test_apply_and_undo_restore_everything():
    model, opt = conv_net(), None
    opt = torch.optim.Adam(model.parameters())
    s = dataclasses.replace(fake_gpu().get_optimal_settings(model), compile=False)
    flags = (PrecisionState.capture(), torch.backends.cudnn.benchmark)
    before = [p.detach().clone() for p in model.parameters()]
    undo = s.apply(model, opt)
    try:
        assert tf32_enabled("matmul") and tf32_enabled("conv") and torch.backends.cudnn.benchmark
        assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
        assert opt.param_groups[0]["fused"] is True and opt.param_groups[0]["foreach"] is False
    finally:
        undo()
    assert (PrecisionState.capture(), torch.backends.cudnn.benchmark) == flags
    assert model[0].weight.is_contiguous() and opt.param_groups[0]["fused"] in (None, False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_autocast_context_on_cpu():
    s = cpu_profile(bf16=True).get_optimal_settings()
    with s.autocast():
        y = nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16
    with cpu_profile(bf16=False).get_optimal_settings().autocast():
        assert nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32


@pytest.mark.gpu
def test_detect_real_gpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: torch.cuda.is_available() is False")
    hw = detect_gpu()
    props = torch.cuda.get_device_properties(0)
    assert hw.device == "cuda" and hw.gpu_name == props.name and hw.sm_count == props.multi_processor_count
    assert hw.compute_capability == (props.major, props.minor) and hw.gpu_memory_bytes == props.total_memory
    assert hw.bf16 == torch.cuda.is_bf16_supported()
