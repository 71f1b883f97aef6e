"""Settings and advice for machines beyond NVIDIA: an M-series Mac (MPS), an MI300X (ROCm, gfx942),
an Intel Data Center GPU Max (XPU), and their weaker cousins; apply/undo exact on each.

The profiles come from ``detect_gpu()`` against simulated device probes (``simulated_devices``);
settings are applied on this CPU, which exercises every flag, layout and optimizer change.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from dsnotebook.advisor import advise, verify as verify_mod
from dsnotebook.advisor.variants import PrecisionState, Variant
from dsnotebook.advisor.verify import verify_variant
from dsnotebook.perf.hardware import tf32_enabled
from fakes import HEALTHY_PHASES, perf_run
import simulated_devices as sim
from test_undo import STARTS, read_all

MAC = sim.apple()
MI300X = sim.amd()
MI50 = sim.amd(arch="gfx906", name="AMD Instinct MI50", mem_gib=32, cus=60, hip="6.2.41133")
MAX1550 = sim.intel()
ARC = sim.arc_a770()
GPUS = {"mac": MAC, "mi300x": MI300X, "mi50": MI50, "max1550": MAX1550, "arc": ARC}


@pytest.fixture
def pristine():
    state, bench = PrecisionState.capture(), torch.backends.cudnn.benchmark
    yield
    state.restore()
    torch.backends.cudnn.benchmark = bench
    assert PrecisionState.capture() == state


def conv_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))


def suggestions(hw, **run_kw):
    memory = {"params": 300 << 20, "grads": 300 << 20, "optimizer_state": 600 << 20,
              "peak_allocated": int(0.7 * hw.gpu_memory_bytes)}  # no headroom: keeps batch_size out
    run = perf_run(**{"memory": memory, **run_kw})
    return {s.rule: s for s in advise(run, hw)}


# -- settings -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(GPUS))
def test_never_cudnn_benchmark_or_nvidia_only_choices_off_nvidia(name):
    s = GPUS[name].get_optimal_settings(conv_net())
    assert not s.cudnn_benchmark and "fastest conv algorithm" not in s.reasons["cudnn_benchmark"]
    if GPUS[name].device == "mps":
        assert not s.tf32 and not s.pin_memory and not s.channels_last and not s.compile


def test_mac_settings():
    s = MAC.get_optimal_settings(conv_net())
    assert s.autocast_dtype == torch.bfloat16 and not s.grad_scaler  # native bf16 autocast: no GradScaler
    assert not s.tf32 and "Apple" in s.reasons["tf32"] and s.fused_optimizer
    assert s.dataloader_kwargs()["pin_memory"] is False and "unified memory" in s.reasons["num_workers"]
    older = sim.apple(torch_version="2.5.1")  # bf16 autocast from 2.6, MPS GradScaler from 2.8
    assert older.get_optimal_settings().autocast_dtype is None
    sonoma_less = sim.apple(macos14=False, torch_version="2.8.0")
    t = sonoma_less.get_optimal_settings()
    assert t.autocast_dtype == torch.float16 and t.grad_scaler


def test_amd_settings():
    s = MI300X.get_optimal_settings(conv_net())
    assert s.autocast_dtype == torch.bfloat16 and not s.grad_scaler and s.tf32 and s.compile
    assert s.pin_memory and s.fused_optimizer and not s.channels_last and "MIOpen" in s.reasons["cudnn_benchmark"]
    old = MI50.get_optimal_settings(conv_net())
    assert old.autocast_dtype == torch.float16 and old.grad_scaler and not old.tf32 and not old.compile
    mi250 = sim.amd(arch="gfx90a:sramecc+:xnack-", name="AMD Instinct MI250X", mem_gib=64, cus=110)
    assert not mi250.get_optimal_settings().tf32 and mi250.get_optimal_settings().autocast_dtype == torch.bfloat16


def test_intel_settings():
    s = MAX1550.get_optimal_settings(conv_net())
    assert s.autocast_dtype == torch.bfloat16 and not s.grad_scaler and s.tf32 and s.channels_last
    assert s.pin_memory and s.compile and "oneDNN" in s.reasons["tf32"]
    arc = ARC.get_optimal_settings(conv_net())
    assert arc.autocast_dtype == torch.bfloat16 and not arc.tf32
    igpu = sim.intel(name="Intel(R) Graphics", dpas=False, dpas_tf32=False, integrated=True)
    t = igpu.get_optimal_settings(conv_net())
    assert t.autocast_dtype is None and not t.pin_memory and not t.channels_last


# -- advice -------------------------------------------------------------------------------------
def test_mixed_precision_advice_per_device():
    fp32 = {"settings": {"autocast": None}}
    mac = suggestions(MAC, **fp32)["mixed_precision"]
    assert "autocast('mps', dtype=torch.bfloat16)" in mac.snippet and "GradScaler" not in mac.snippet + mac.title
    assert "memory" in mac.gain and "tensor cores" not in mac.gain
    mi = suggestions(MI300X, **fp32)["mixed_precision"]
    assert "autocast('cuda', dtype=torch.bfloat16)" in mi.snippet and "matrix cores" in mi.gain
    old = suggestions(MI50, **fp32)["mixed_precision"]
    assert "GradScaler('cuda')" in old.snippet and "float16" in old.snippet
    xpu = suggestions(MAX1550, **fp32)["mixed_precision"]
    assert "autocast('xpu', dtype=torch.bfloat16)" in xpu.snippet and "XMX" in xpu.gain
    older_mac = suggestions(sim.apple(torch_version="2.5.1"), **fp32)
    assert "mixed_precision" not in older_mac  # fp16 without a GradScaler is not advice


def test_tf32_advice_only_where_the_hardware_and_torch_have_it(pristine):
    off = {"settings": {"autocast": None, "tf32_matmul": False, "tf32_cudnn": False}}
    assert "tf32" not in suggestions(MAC, **off) and "tf32" not in suggestions(MI50, **off)
    assert "tf32" not in suggestions(ARC, **off)
    mi = suggestions(MI300X, **off)["tf32"]
    assert "hipBLASLt" in mi.gain and "fp32_precision" in mi.snippet
    xpu = suggestions(MAX1550, **off)["tf32"]
    assert "set_float32_matmul_precision" in xpu.snippet and "mkldnn" in xpu.snippet
    torch.set_float32_matmul_precision("high")  # oneDNN already in TF32: nothing to advise on the XPU
    assert tf32_enabled("matmul", "xpu") and "tf32" not in suggestions(MAX1550, **off)


def test_layout_compile_loading_and_memory_advice_per_device():
    convs = {"stem": (0.05, 0.09), "layers.0.fc": (0.001, 0.002)}
    cl = {"settings": {"channels_last": False}, "modules": convs}
    assert "channels_last" not in suggestions(MAC, **cl) and "channels_last" not in suggestions(MI300X, **cl)
    assert "x.to('xpu', memory_format=torch.channels_last)" in suggestions(MAX1550, **cl)["channels_last"].snippet
    tiny = {f"layers.{i}.{j}": (5e-6, 8e-6) for i in range(6) for j in range(4)}
    launch = {"phases": dict(HEALTHY_PHASES, fwd=0.0002, bwd=0.0003, opt=1e-5, data=1e-5, other=1e-5), "modules": tiny}
    assert "compile" not in suggestions(MAC, **launch)
    assert "CUDA graphs" in suggestions(MI300X, **launch)["compile"].title
    assert "CUDA graphs" not in suggestions(MAX1550, **launch)["compile"].title
    waits = {"phases": dict(HEALTHY_PHASES, data=0.100)}
    mac = suggestions(MAC, **waits)["data_loader"]
    assert "pin_memory=False" in mac.snippet and "non_blocking" not in mac.snippet
    assert "x.to('xpu', non_blocking=True)" in suggestions(MAX1550, **waits)["data_loader"].snippet
    low = {"params": 1 << 20, "grads": 1 << 20, "optimizer_state": 2 << 20, "peak_allocated": 10 << 30}
    for hw in (MAC, MAX1550, MI300X):
        assert "batch_size" in {s.rule for s in advise(perf_run(memory=low), hw)}


@pytest.mark.parametrize("name", list(GPUS))
def test_healthy_runs_get_no_advice_anywhere(name):
    assert suggestions(GPUS[name]) == {}


# -- apply / undo -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(GPUS))
@pytest.mark.parametrize("start", ["default", "medium", "mixed APIs", "fp32_precision ieee"])
def test_apply_then_undo_is_exact(name, start, pristine):
    STARTS[start]()
    before, bench = read_all(), torch.backends.cudnn.benchmark
    model = conv_net()
    opt = torch.optim.Adam(model.parameters())
    s = dataclasses.replace(GPUS[name].get_optimal_settings(model), compile=False)
    weights = [p.detach().clone() for p in model.parameters()]
    undo = s.apply(model, opt)
    try:
        assert torch.backends.cudnn.benchmark == bench  # never switched on off NVIDIA
        assert model[0].weight.is_contiguous(memory_format=torch.channels_last) == s.channels_last
        assert opt.param_groups[0]["fused"] is s.fused_optimizer
        if s.tf32 and start == "default":
            assert tf32_enabled("matmul", s.device) and tf32_enabled("conv", s.device)
        during = read_all()
        assert not {k for k, v in during.items() if v == "raises"} - {k for k, v in before.items() if v == "raises"}
    finally:
        undo()
    assert read_all() == before and torch.backends.cudnn.benchmark == bench
    assert model[0].weight.is_contiguous() and opt.param_groups[0]["fused"] in (None, False)
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))


def test_verify_synchronises_the_models_own_device(monkeypatch):
    """A/B blocks are timed after the device has finished: on MPS/XPU too, not only on CUDA."""
    calls = []
    monkeypatch.setattr(verify_mod, "_device_of", lambda model: torch.device("mps"))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append("mps"))
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 4)

    def step():
        opt.zero_grad()
        loss = model(x).square().mean()
        loss.backward()
        opt.step()
        return loss
    verify_variant(Variant("nothing"), step, model=model, optimizer=opt, steps=2, pairs=1)
    assert len(calls) >= 4 and set(calls) == {"mps"}  # before and after every timed block of both arms
