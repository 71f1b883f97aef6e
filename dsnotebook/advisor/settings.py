"""Hardware facts -> recommended settings, with a reason for each, and a way to switch them on and back off.

``dsnotebook.detect_gpu()`` returns a :class:`TuningProfile`: the machine's facts
(:class:`~dsnotebook.perf.hardware.HardwareProfile`) plus ``get_optimal_settings(model)``.
The choice follows the hardware: bf16 where the GPU has bf16 tensor cores (Ampere, sm_80,
and newer), fp16 with a GradScaler on Volta/Turing, TF32 matmuls on Ampere+, channels_last
for conv nets on tensor-core GPUs, DataLoader workers from the CPU cores each GPU gets.
Beyond NVIDIA: AMD GPUs by gfx architecture (bf16 on matrix-core GPUs, TF32 only where torch
maps it to hipBLASLt's xf32, never cudnn.benchmark: under ROCm it means MIOpen's exhaustive
search), Apple GPUs through MPS (bf16 autocast without a GradScaler on torch >= 2.6 and
macOS 14, no TF32, no pinned memory: the memory is unified), Intel GPUs through XPU (bf16
and TF32 where the device has XMX/DPAS, TF32 through oneDNN's precision settings).

>>> hw = detect_gpu(); hw
>>> s = hw.get_optimal_settings(model); s          # readable table with reasons
>>> undo = s.apply(model, optimizer)              # flags, memory format, fused optimizer
>>> with s.autocast(): loss = loss_fn(model(x), y)
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterator

import torch
from torch import nn

from dsnotebook.advisor import variants
from dsnotebook.perf import hardware
from dsnotebook.perf.hardware import HardwareProfile, has_conv, yes_no


def torch_at_least(hw: HardwareProfile, version: tuple[int, int]) -> bool:
    """Whether the profiled machine's torch is at least ``version`` (major, minor)."""
    parts = []
    for p in hw.torch_version.split("+")[0].split(".")[:2]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts) >= version


def _mps_autocast(hw: HardwareProfile) -> tuple[torch.dtype | None, bool, str]:
    if hw.bf16 and torch_at_least(hw, (2, 6)):
        return (torch.bfloat16, False, "MPS has bf16 autocast (torch >= 2.6, macOS 14+): fp32 range, no loss "
                                       "scaling; halves activation memory")
    if torch_at_least(hw, (2, 8)):
        return torch.float16, True, "MPS without bf16 (macOS 13): fp16 autocast with torch.amp.GradScaler('mps')"
    return None, False, ("fp16 autocast on MPS needs a GradScaler (torch >= 2.8), bf16 autocast needs torch >= 2.6 "
                         "and macOS 14: upgrade torch first")


def autocast_choice(hw: HardwareProfile) -> tuple[torch.dtype | None, bool, str]:
    """(dtype, needs GradScaler, reason) for mixed precision on this machine."""
    if hw.device == "mps":
        return _mps_autocast(hw)
    if hw.vendor == "amd":
        if hw.bf16:
            return torch.bfloat16, False, f"{hw.arch} has bf16 matrix cores: fp32 range, no loss scaling"
        return torch.float16, True, f"{hw.arch} has fast fp16 (packed math) but no bf16 hardware: fp16 + GradScaler"
    if hw.device == "xpu":
        if hw.bf16:
            return torch.bfloat16, False, "Intel GPU with XMX (DPAS): bf16 matmuls are native, no loss scaling"
        return None, False, "Intel GPU without XMX: autocast would gain little"
    if hw.device == "cuda":
        cc = hw.compute_capability or (0, 0)
        if hw.bf16:
            return torch.bfloat16, False, f"sm_{cc[0]}{cc[1]} has bf16 tensor cores: fp32 range, no loss scaling"
        if cc >= (7, 0):
            return torch.float16, True, f"sm_{cc[0]}{cc[1]} has fp16 tensor cores but no bf16: fp16 + GradScaler"
        return None, False, f"sm_{cc[0]}{cc[1]} has no tensor cores: mixed precision gains little"
    if hw.bf16:
        return torch.bfloat16, False, "CPU has AVX512-BF16/AMX: bf16 matmuls are native"
    return None, False, "CPU without native bf16 math: autocast would emulate it (slower)"


def discrete_gpu(hw: HardwareProfile) -> bool:
    """A GPU with its own memory: host->device copies benefit from pinned memory."""
    return hw.device in ("cuda", "xpu") and not hw.unified_memory


def channels_last_helps(hw: HardwareProfile) -> bool:
    """NHWC convolutions pay off: NVIDIA tensor cores (Volta+), oneDNN on Intel GPUs with XMX.
    Not MPS, and not AMD, where MIOpen's NHWC kernels are not generally faster."""
    if hw.nvidia:
        return (hw.compute_capability or (0, 0)) >= (7, 0)
    return hw.device == "xpu" and hw.bf16


def compile_helps(hw: HardwareProfile) -> bool:
    """torch.compile's GPU backend (Triton) is mature here: NVIDIA Volta+, AMD CDNA2+/RDNA3+, Intel XPU.
    Inductor's MPS backend is still a prototype."""
    if hw.nvidia:
        return (hw.compute_capability or (0, 0)) >= (7, 0)
    if hw.vendor == "amd":
        return (hw.arch or "").startswith(("gfx90a", "gfx94", "gfx95", "gfx11", "gfx12"))
    return hw.device == "xpu"


def fused_optimizer_helps(hw: HardwareProfile) -> bool:
    """Fused optimizer kernels exist for this GPU type (torch's own list: CUDA/ROCm, XPU, MPS)."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        supported = set(_get_fused_kernels_supported_devices())
    except Exception:
        supported = {"cuda"}
    return hw.device != "cpu" and hw.device in supported


def dataloader_workers(hw: HardwareProfile) -> tuple[int, str]:
    if hw.device == "mps":
        n = max(1, min(4, hw.cpu_cores // 2))
        return n, (f"{hw.cpu_cores} cores shared with the GPU's memory: {n} loader processes (macOS spawns them: "
                   "keep them persistent)")
    if hw.device in ("cuda", "xpu"):
        per_gpu = max(1, hw.cpu_cores // max(1, hw.gpu_count))
        n = max(1, min(8, per_gpu - 1))
        return n, f"{hw.cpu_cores} cores for {hw.gpu_count} GPU(s): {n} loader processes each, one core for the loop"
    n = max(0, min(4, hw.cpu_cores // 4))
    return n, f"CPU training uses the cores for compute too: {n} of {hw.cpu_cores} cores for loading"


def _tf32_reason(hw: HardwareProfile) -> str:
    if not hw.tf32:
        return {"mps": "no TF32 on Apple GPUs", "cpu": "no TF32 on this device"}.get(
            hw.device, f"no TF32 on {hw.arch or hw.gpu_name or hw.device}")
    if hw.vendor == "amd":
        return f"{hw.arch}: fp32 GEMMs through hipBLASLt's xf32 when TF32 is allowed"
    if hw.device == "xpu":
        return "XMX runs fp32 matmuls/convs in TF32 through oneDNN (torch.set_float32_matmul_precision('high'))"
    return "Ampere+ runs fp32 matmuls/convs on tensor cores with TF32 (10-bit mantissa)"


def _benchmark_reason(hw: HardwareProfile) -> str:
    if hw.nvidia:
        return "fixed input shapes: let cuDNN pick the fastest conv algorithm"
    if hw.vendor == "amd":
        return "off: under ROCm it switches MIOpen to exhaustive search, minutes of tuning per new shape"
    return "no cuDNN on this device" if hw.device != "cpu" else "CPU"


@dataclass
class OptimalSettings:
    """Recommended settings, each with a reason (``reasons[name]``); see :meth:`apply`."""

    device: str
    autocast_dtype: torch.dtype | None
    grad_scaler: bool
    tf32: bool
    cudnn_benchmark: bool
    channels_last: bool
    compile: bool
    num_workers: int
    pin_memory: bool
    persistent_workers: bool
    fused_optimizer: bool
    reasons: dict[str, str] = field(default_factory=dict)

    def dataloader_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``torch.utils.data.DataLoader``."""
        kw: dict[str, Any] = {"num_workers": self.num_workers, "pin_memory": self.pin_memory}
        if self.num_workers > 0:
            kw.update(persistent_workers=self.persistent_workers, prefetch_factor=4)
        return kw

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Mixed precision around forward + loss (no-op when no autocast dtype is recommended)."""
        if self.autocast_dtype is None:
            yield
        else:
            with torch.autocast(self.device, dtype=self.autocast_dtype):
                yield

    def grad_scaler_or_none(self) -> Any:
        return torch.amp.GradScaler(self.device) if self.grad_scaler else None

    def apply(self, model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None) -> Callable[[], None]:
        """Set TF32 (CUDA/ROCm: cuBLAS/cuDNN flags; XPU: oneDNN's) and cudnn flags, channels_last on
        ``model``, fused optimizer kernels; returns ``undo``,
        which puts every flag, memory format and optimizer setting back exactly as it was.

        Autocast is a context (:meth:`autocast`) and DataLoader settings are arguments
        (:meth:`dataloader_kwargs`): neither can be switched on from outside the loop.
        ``compile`` is applied with ``model.compile()`` (in place) when recommended.
        """
        undos = []
        if self.tf32:
            undos.append(variants.set_tf32(True, device=self.device))
        if self.cudnn_benchmark:
            undos.append(variants.set_cudnn_benchmark(True))
        if model is not None and self.channels_last and has_conv(model):
            undos.append(variants.to_channels_last(model, optimizer))
        if optimizer is not None and self.fused_optimizer:
            undos.append(variants.set_optimizer_impl(optimizer, "fused"))
        if model is not None and self.compile:
            undos.append(variants.compile_in_place(model))

        def undo() -> None:
            for u in reversed(undos):
                u()
        return undo

    def __repr__(self) -> str:
        rows = [("autocast", str(self.autocast_dtype).replace("torch.", "") if self.autocast_dtype else "off"),
                ("GradScaler", yes_no(self.grad_scaler)), ("TF32", yes_no(self.tf32)),
                ("cudnn.benchmark", yes_no(self.cudnn_benchmark)), ("channels_last", yes_no(self.channels_last)),
                ("torch.compile", yes_no(self.compile)),
                ("DataLoader", f"num_workers={self.num_workers}, pin_memory={self.pin_memory}"),
                ("fused optimizer", yes_no(self.fused_optimizer))]
        keys = ["autocast", "grad_scaler", "tf32", "cudnn_benchmark", "channels_last", "compile", "num_workers",
                "fused_optimizer"]
        lines = [f"OptimalSettings for {self.device}:"]
        for (label, value), key in zip(rows, keys):
            lines.append(f"  {label:<16} {value:<34} {self.reasons.get(key, '')}")
        return "\n".join(lines)


def optimal_settings(hw: HardwareProfile, model: nn.Module | None = None) -> OptimalSettings:
    dtype, scaler, why_amp = autocast_choice(hw)
    workers, why_workers = dataloader_workers(hw)
    conv = has_conv(model)
    channels_last = channels_last_helps(hw) and (model is None or conv)
    pin = discrete_gpu(hw)
    compiled = compile_helps(hw)
    fused = fused_optimizer_helps(hw)
    reasons = {
        "autocast": why_amp,
        "grad_scaler": "fp16 gradients underflow without loss scaling" if scaler else "not needed",
        "tf32": _tf32_reason(hw),
        "cudnn_benchmark": _benchmark_reason(hw),
        "channels_last": ("NHWC convs run without layout transposes" if channels_last else
                          "no conv layers" if model is not None and not conv else
                          "no gain from NHWC convolutions on this device"),
        "compile": "fuses elementwise ops and cuts kernel launches (first steps compile)" if compiled
        else ("Inductor's MPS backend is a prototype" if hw.device == "mps"
              else "on CPU/older GPUs compile time rarely pays off in a notebook"),
        "num_workers": why_workers + ("; pinned memory for async host-to-device copies" if pin else
                                      "; unified memory: nothing to pin" if hw.unified_memory else ""),
        "fused_optimizer": "one fused kernel per parameter group instead of one per tensor" if fused
        else "foreach (torch's CPU default) is already multi-tensor",
    }
    return OptimalSettings(device=hw.device, autocast_dtype=dtype, grad_scaler=scaler, tf32=hw.tf32,
                           cudnn_benchmark=hw.nvidia, channels_last=channels_last, compile=compiled,
                           num_workers=workers, pin_memory=pin, persistent_workers=workers > 0,
                           fused_optimizer=fused, reasons=reasons)


class TuningProfile(HardwareProfile):
    """The machine's facts plus the settings the advisor recommends for them."""

    def get_optimal_settings(self, model: nn.Module | None = None) -> OptimalSettings:
        """Settings the advisor would pick on this machine (``model`` refines channels_last)."""
        return optimal_settings(self, model)


def tuning_profile(hw: HardwareProfile) -> TuningProfile:
    """``hw`` (facts only) as a :class:`TuningProfile`."""
    if isinstance(hw, TuningProfile):
        return hw
    return TuningProfile(**{f.name: getattr(hw, f.name) for f in fields(hw)})


def detect_gpu(device: int | str | torch.device | None = None) -> TuningProfile:
    """Describe the machine (the CUDA GPU ``device``, default: current, and the host); the profile
    also answers ``get_optimal_settings(model)``."""
    return tuning_profile(hardware.detect_gpu(device))
