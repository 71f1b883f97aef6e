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
from dsnotebook.perf.hardware import HardwareProfile, amd_features, detect_gpu, tf32_enabled
from fakes import cpu_profile, fake_gpu
import simulated_devices


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


# -- beyond NVIDIA: profiles built by detect_gpu() against simulated device probes --------------------
def test_apple_m_series_through_mps():
    hw = simulated_devices.apple()
    assert (hw.device, hw.vendor, hw.gpu_name, hw.sm_count, hw.gpu_count) == ("mps", "apple", "Apple M3 Max", 40, 1)
    assert hw.unified_memory and not hw.fp64 and hw.gpu_memory_bytes == 96 * 2**30
    assert hw.bf16 and not hw.tf32 and not hw.fp8 and hw.compute_capability is None and hw.cudnn_version is None
    assert not hw.nvidia and "unified memory" in repr(hw) and "no float64" in repr(hw)
    assert not simulated_devices.apple(macos14=False).bf16  # MPS has bf16 from macOS 14 (Sonoma)


def test_mi300x_through_rocm():
    hw = simulated_devices.amd()
    assert (hw.device, hw.vendor, hw.arch, hw.gpu_name) == ("cuda", "amd", "gfx942", "AMD Instinct MI300X")
    assert hw.compute_capability is None  # ROCm's major/minor is not a CUDA compute capability
    assert hw.bf16 and hw.tf32 and hw.fp8 and hw.fp64 and not hw.unified_memory
    assert (hw.sm_count, hw.gpu_count, hw.gpu_memory_bytes) == (304, 8, 192 * 2**30)
    assert hw.runtime == "ROCm 6.4.43482" and hw.cuda_version is None and not hw.nvidia
    text = repr(hw)
    assert "gfx942" in text and "304 CUs" in text and "sm_" not in text


@pytest.mark.parametrize("arch,hip,bf16,tf32,fp8", [
    ("gfx942:sramecc+:xnack-", "6.0", True, True, True),  # MI300X/A: xf32 and fp8 (FNUZ)
    ("gfx90a:sramecc+:xnack-", "6.4", True, False, False),  # MI250X: bf16 matrix cores only
    ("gfx908", "6.4", True, False, False),  # MI100
    ("gfx906", "6.4", False, False, False),  # MI50: no matrix cores
    ("gfx1030", "6.4", False, False, False),  # RDNA2
    ("gfx1100", "6.4", True, False, False),  # RDNA3 WMMA
    ("gfx1201", "6.2", True, False, False), ("gfx1201", "6.3", True, False, True),  # RDNA4: fp8 from ROCm 6.3
    ("gfx950", "6.4", True, True, False), ("gfx950", "7.0", True, True, True),  # MI355X: fp8 from ROCm 6.5
])
def test_amd_features_by_architecture(arch, hip, bf16, tf32, fp8):
    assert amd_features(arch, hip) == {"bf16": bf16, "tf32": tf32, "fp8": fp8}
    hw = simulated_devices.amd(arch=arch, hip=hip)
    assert (hw.bf16, hw.tf32, hw.fp8, hw.arch) == (bf16, tf32, fp8, arch.split(":")[0])


def test_intel_gpus_through_xpu():
    hw = simulated_devices.intel()
    assert (hw.device, hw.vendor, hw.sm_count, hw.gpu_memory_bytes) == ("xpu", "intel", 128, 128 * 2**30)
    assert hw.bf16 and hw.tf32 and hw.fp64 and not hw.fp8 and not hw.unified_memory
    assert "Max 1550" in repr(hw) and "Xe-cores" in repr(hw)
    arc = simulated_devices.arc_a770()
    assert arc.bf16 and not arc.tf32 and not arc.fp64 and "no float64" in repr(arc)
    igpu = simulated_devices.intel(name="Intel(R) Graphics", dpas=False, dpas_tf32=False, integrated=True)
    assert not igpu.bf16 and igpu.unified_memory


@pytest.mark.parametrize("make", [simulated_devices.apple, simulated_devices.amd, simulated_devices.intel])
def test_profiles_round_trip_through_run_metadata(make):
    from dsnotebook import Run
    from dsnotebook.advisor import hardware_of

    hw = make()
    d = json.loads(json.dumps(hw.to_dict()))
    assert hardware_of(Run([], {"hardware_profile": d})) == hw


def test_profiles_recorded_before_vendors_still_load():
    from dsnotebook import Run
    from dsnotebook.advisor import hardware_of

    old = {k: v for k, v in fake_gpu().to_dict().items()
           if k not in ("vendor", "arch", "unified_memory", "fp64", "runtime")}
    hw = hardware_of(Run([], {"hardware_profile": old}))
    assert hw.nvidia and hw.fp64 and hw.get_optimal_settings().cudnn_benchmark


def test_detection_touches_nothing_when_no_gpu_is_there():
    """The simulations are scoped: afterwards this machine is a CPU machine again."""
    simulated_devices.amd()
    simulated_devices.apple()
    assert torch.version.hip is None and detect_gpu().device == ("cuda" if torch.cuda.is_available() else "cpu")


def test_tf32_reading_per_device():
    assert not tf32_enabled("matmul", "mps") and not tf32_enabled("conv", "cpu")
    with pytest.raises(ValueError):
        tf32_enabled("rnn")
